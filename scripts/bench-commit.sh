#!/usr/bin/env bash
# Benchmark of `ferry commit`: 20 apps whose tasks turn healthy about 300 ms after start,
# all changed in one commit, against one app alone. Reports medians over RUNS runs (default
# 3) and the ratio, which should stay within 1.5× (all apps roll out at once, not 20× and not
# in batches). Local runtime, 127.0.0.1 only; the agent is stopped at the end.
#
#   scripts/bench-commit.sh [RUNS]        # FERRY=path/to/ferry to use another build
#   APP=socket scripts/bench-commit.sh    # a Python app on a plain socket
#   APP=http scripts/bench-commit.sh      # the heavier Python app (http.server, site packages)
#   BOOST=1 scripts/bench-commit.sh       # as root: nice -10 for the bench's and the agents' sessions
#   APP=docker scripts/bench-commit.sh    # containers (the Docker driver): busybox httpd, FROM nothing
#
# Every app but `docker` runs on the process driver (`driver = "process"`), as before the
# Docker driver existed; `docker` needs a Docker Engine and the static busybox
# (`busybox-static`), and labels its containers `ferry.bench=1`.
#
# The kernel shares CPU between sessions (autogroups) before processes, and the agent runs
# in a session of its own: on a machine busy with other sessions' work (builds), BOOST=1
# gives the benchmark's session and each agent's session autogroup nice -10, so the figures
# come closer to an idle machine's. Compare builds with the same setting.
# The app must be cheap to start, or the benchmark measures the app rather than ferry: 20
# starts of `python3` through a pyenv shim with http.server cost ≈ 4 s of CPU, 2 s on two
# cores; the interpreter itself without site packages (-S) on a plain socket still costs
# 20-50 ms of CPU per start. So the default app (APP=native) is a tiny std-only Rust HTTP
# server, compiled once per run with `rustc -O` (≈ 1 ms of CPU per start). Each case also
# reports the CPU time of `ferry commit`, of the agent, of the tasks, and how busy the whole
# machine was, to tell waiting from computing.
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
export FERRY_CONTAINER_LABELS=ferry.bench=1
# `down` stops the tasks; the registry a project started on first use is stopped on its own.
cleanup() {
  for p in many one; do
    "$FERRY" -C "$WORK/$p" down >/dev/null 2>&1 || true
    "$FERRY" -C "$WORK/$p" image registry --stop >/dev/null 2>&1 || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
[[ -n "${KEEP_LOG:-}" ]] && trap 'cp "$WORK/last.log" "$KEEP_LOG"; cleanup' EXIT

# The app: sleeps 300 ms, then serves 200 on every path.
APP=${APP:-native}
app_native='use std::io::{Read, Write};
fn main() {
    std::thread::sleep(std::time::Duration::from_millis(300));
    let port = std::env::var("PORT").expect("PORT");
    let listener = std::net::TcpListener::bind(("127.0.0.1", port.parse::<u16>().expect("port"))).expect("bind");
    for conn in listener.incoming() {
        let Ok(mut c) = conn else { continue };
        let mut buf = [0u8; 4096];
        let _ = c.read(&mut buf);
        let _ = c.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
    }
}'
PYTHON=$(python3 -c 'import sys; print(sys.executable)')
app_socket='import os, socket, time
time.sleep(0.3)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(os.environ["PORT"])))
s.listen(64)
while True:
    c, _ = s.accept()
    c.recv(65536)
    c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    c.close()'
app_http='import http.server, os, time
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
  local command
  for v in 1 2; do
    case $APP in
      native) cp "$WORK/server" "$dir/img$v/server"; command='["./server"]' ;;
      socket) printf '%s' "$app_socket" >"$dir/img$v/app.py"; command="[\"$PYTHON\", \"-S\", \"app.py\"]" ;;
      http) printf '%s' "$app_http" >"$dir/img$v/app.py"; command='["python3", "app.py"]' ;;
      docker)
        mkdir -p "$dir/img$v/bin" "$dir/img$v/srv"; cp /bin/busybox "$dir/img$v/bin/busybox"; echo ok >"$dir/img$v/srv/index.html"
        command='["/bin/busybox", "sh", "-c", "/bin/busybox sleep 0.3; exec /bin/busybox httpd -f -p $PORT -h /srv"]' ;;
      *) echo "APP must be native, socket, http or docker" >&2; exit 2 ;;
    esac
    echo "$v" >"$dir/img$v/v.txt"
  done
  : >"$dir/stages/dev.toml"
  echo '[runtime]' >>"$dir/stages/dev.toml"; echo 'kind = "local"' >>"$dir/stages/dev.toml"
  if [[ $APP == docker ]]; then echo 'driver = "docker"' >>"$dir/stages/dev.toml"; else echo 'driver = "process"' >>"$dir/stages/dev.toml"; fi
  for i in $(seq 1 "$n"); do
    local d1 d2
    d1=$("$FERRY" -C "$dir" image push "$dir/img1" --repo "app$i" 2>/dev/null)
    d2=$("$FERRY" -C "$dir" image push "$dir/img2" --repo "app$i" 2>/dev/null)
    cat >>"$dir/stages/dev.toml" <<TOML

[apps.app$i]
image = "app$i"
active = 1
scale = 1
command = $command
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
  "$FERRY" -C "$dir" commit --yes >/dev/null 2>"$WORK/last.log" || { cat "$WORK/last.log"; exit 1; }
}

# CPU clock ticks (user + system) of the agent of DIR itself, and of its reaped children
# (the tasks it stopped); of the whole machine: busy and idle.
TICK_MS=$((1000 / $(getconf CLK_TCK)))
agent_ticks() { awk '{print $14 + $15, $16 + $17}' "/proc/$(cat "$1/.ferry/agent/agent.pid")/stat"; }
machine_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8, $5 + $6}' /proc/stat; }

# commit_time DIR: flip every app to the other release and time the commit (ms). Appends
# "commit-ms agent-ms tasks-ms busy-ms idle-ms" of CPU time to DIR/cpu: of the `ferry commit`
# process, of the agent, of the tasks (those the commit replaced: what one generation of
# tasks costs), and of the whole machine, busy and idle.
commit_time() {
  local dir=$1
  if grep -q '^active = 1' "$dir/stages/dev.toml"; then sed -i 's/^active = 1/active = 2/' "$dir/stages/dev.toml"
  else sed -i 's/^active = 2/active = 1/' "$dir/stages/dev.toml"; fi
  local t0 t1 a0 c0 b0 i0 a1 c1 b1 i1
  read -r a0 c0 < <(agent_ticks "$dir")
  read -r b0 i0 < <(machine_ticks)
  t0=$(date +%s%N)
  # GNU time: CPU seconds and the peak RSS (KB) of the `ferry commit` process.
  /usr/bin/time -o "$WORK/time" -f '%U %S %M' "$FERRY" -C "$dir" commit --yes --progress plain >/dev/null 2>"$WORK/last.log" ||
    { cat "$WORK/last.log"; exit 1; }
  t1=$(date +%s%N)
  read -r a1 c1 < <(agent_ticks "$dir")
  read -r b1 i1 < <(machine_ticks)
  local commit_ms
  commit_ms=$(tail -1 "$WORK/time" | awk '{printf "%d", ($1 + $2) * 1000}')
  tail -1 "$WORK/time" | awk '{print $3}' >>"$dir/commit-rss-kb"
  echo "$commit_ms $(((a1 - a0) * TICK_MS)) $(((c1 - c0) * TICK_MS)) $(((b1 - b0) * TICK_MS)) $(((i1 - i0) * TICK_MS))" >>"$dir/cpu"
  echo $(((t1 - t0) / 1000000))
}

# cpu_summary DIR: medians of the CPU figures.
cpu_summary() {
  local col name out=""
  for col in 1 2 3 4 5; do
    name=$(echo "commit agent tasks machine-busy machine-idle" | cut -d' ' -f"$col")
    out+="$name $(cut -d' ' -f"$col" "$1/cpu" | median) ms, "
  done
  echo "${out%, }"
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2))}'; }

if [[ $APP == native ]]; then
  printf '%s\n' "$app_native" >"$WORK/server.rs"
  rustc -O -C strip=symbols -o "$WORK/server" "$WORK/server.rs"
fi
echo "app: $APP${BOOST:+, boosted}; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
boost() { [[ -z "${BOOST:-}" ]] || echo -10 >"/proc/$1/autogroup"; }
boost $$
make_project "$WORK/one" 1
make_project "$WORK/many" "$APPS"
boost "$(cat "$WORK/one/.ferry/agent/agent.pid")"
boost "$(cat "$WORK/many/.ferry/agent/agent.pid")"
: >"$WORK/one/cpu"; : >"$WORK/many/cpu"
one=(); many=()
for _ in $(seq 1 "$RUNS"); do
  one+=("$(commit_time "$WORK/one")")
  many+=("$(commit_time "$WORK/many")")
done
m1=$(printf '%s\n' "${one[@]}" | median)
m20=$(printf '%s\n' "${many[@]}" | median)
echo "one app:  ${one[*]} ms (median $m1 ms): time to healthy + drain"
echo "          CPU per commit (medians): $(cpu_summary "$WORK/one")"
echo "$APPS apps: ${many[*]} ms (median $m20 ms)"
echo "          CPU per commit (medians): $(cpu_summary "$WORK/many")"
# Peak memory: of the `ferry commit` processes (largest run), and the agent's high-water mark.
peak() { echo "ferry commit $(sort -n "$1/commit-rss-kb" | tail -1 | awk '{printf "%.1f", $1 / 1024}') MB, agent $(awk '/^VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$(cat "$1/.ferry/agent/agent.pid")/status") MB"; }
echo "peak RSS: one app: $(peak "$WORK/one"); $APPS apps: $(peak "$WORK/many")"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
awk -v a="$m20" -v b="$m1" 'BEGIN { printf "ratio:    %.2fx (target <= 1.5x)\n", a / b }'
