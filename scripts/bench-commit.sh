#!/usr/bin/env bash
# Benchmark of `ferry commit`: 20 apps whose tasks turn healthy about 300 ms after start,
# all changed in one commit, against one app alone. Reports medians over RUNS runs (default
# 3) and the ratio, which should stay within 1.5× (all apps roll out at once, not 20× and not
# in batches). Local runtime, 127.0.0.1 only; the agent is stopped at the end.
#
#   scripts/bench-commit.sh [RUNS]        # FERRY=path/to/ferry to use another build
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
APPS=20
FERRY=${FERRY:-}
if [[ -z "$FERRY" ]]; then
  cargo build --release --quiet
  FERRY=$PWD/target/release/ferry
fi
WORK=$(mktemp -d)
cleanup() { "$FERRY" -C "$WORK/many" down >/dev/null 2>&1 || true; "$FERRY" -C "$WORK/one" down >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT
[[ -n "${KEEP_LOG:-}" ]] && trap 'cp "$WORK/last.log" "$KEEP_LOG"; cleanup' EXIT

# The app: sleeps 300 ms, then serves 200 on every path.
app_py='import http.server, os, time
time.sleep(0.3)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()'

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# make_project DIR N: a project of N apps, releases 1 and 2 pushed, release 1 active.
make_project() {
  local dir=$1 n=$2
  mkdir -p "$dir/stages" "$dir/img1" "$dir/img2"
  printf '[project]\nname = "bench"\n' >"$dir/ferry.toml"
  for v in 1 2; do printf '%s' "$app_py" >"$dir/img$v/app.py"; echo "$v" >"$dir/img$v/v.txt"; done
  : >"$dir/stages/dev.toml"
  echo '[runtime]' >>"$dir/stages/dev.toml"; echo 'kind = "local"' >>"$dir/stages/dev.toml"
  for i in $(seq 1 "$n"); do
    local d1 d2
    d1=$("$FERRY" -C "$dir" image push "$dir/img1" --repo "app$i")
    d2=$("$FERRY" -C "$dir" image push "$dir/img2" --repo "app$i")
    cat >>"$dir/stages/dev.toml" <<TOML

[apps.app$i]
image = "app$i"
active = 1
scale = 1
command = ["python3", "app.py"]
port = $(free_port)
[apps.app$i.releases]
1 = "$d1"
2 = "$d2"
[apps.app$i.health]
path = "/"
interval = "100ms"
timeout = "100ms"
healthy_threshold = 1
grace_period = "5s"
[apps.app$i.deploy]
drain = "100ms"
timeout = "60s"
TOML
  done
  "$FERRY" -C "$dir" commit --yes >/dev/null 2>&1
}

# commit_time DIR: flip every app to the other release and time the commit (ms).
commit_time() {
  local dir=$1
  if grep -q '^active = 1' "$dir/stages/dev.toml"; then sed -i 's/^active = 1/active = 2/' "$dir/stages/dev.toml"
  else sed -i 's/^active = 2/active = 1/' "$dir/stages/dev.toml"; fi
  local t0 t1
  t0=$(date +%s%N)
  "$FERRY" -C "$dir" commit --yes --progress plain >/dev/null 2>"$WORK/last.log" || { cat "$WORK/last.log"; exit 1; }
  t1=$(date +%s%N)
  echo $(((t1 - t0) / 1000000))
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2))}'; }

make_project "$WORK/one" 1
make_project "$WORK/many" "$APPS"
one=(); many=()
for _ in $(seq 1 "$RUNS"); do
  one+=("$(commit_time "$WORK/one")")
  many+=("$(commit_time "$WORK/many")")
done
m1=$(printf '%s\n' "${one[@]}" | median)
m20=$(printf '%s\n' "${many[@]}" | median)
echo "one app:  ${one[*]} ms (median $m1 ms): time to healthy + drain"
echo "$APPS apps: ${many[*]} ms (median $m20 ms)"
awk -v a="$m20" -v b="$m1" 'BEGIN { printf "ratio:    %.2fx (target <= 1.5x)\n", a / b }'
