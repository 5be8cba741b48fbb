#!/usr/bin/env bash
# Benchmark of `ferry preview`: `preview up` of a 3-app template against the same first
# commit of the template stage itself (both from nothing running, so both start 3 apps),
# and `preview list` of 200 recorded previews. Medians over RUNS runs (default 5); the
# targets are up ≤ 1.5× the commit and list < 100 ms. Local runtime, 127.0.0.1 only; every
# preview and the agent are removed at the end.
#
#   scripts/bench-preview.sh [RUNS]      # FERRY=path/to/ferry to use another build
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
FERRY=${FERRY:-}
if [[ -z "$FERRY" ]]; then
  cargo build --release --quiet
  FERRY=$PWD/target/release/ferry
fi
WORK=$(mktemp -d)
cleanup() {
  "$FERRY" -C "$WORK/p" preview down 1 >/dev/null 2>&1 || true
  "$FERRY" -C "$WORK/p" down >/dev/null 2>&1 || true
  # The registry the project started on first use outlives `down`.
  "$FERRY" -C "$WORK/p" image registry --stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# The app: a tiny std-only Rust HTTP server (cheap to start: the bench measures ferry, not
# an interpreter), serving 200 after 300 ms.
cat >"$WORK/server.rs" <<'RS'
use std::io::{Read, Write};
fn main() {
    std::thread::sleep(std::time::Duration::from_millis(300));
    let port: u16 = std::env::var("PORT").expect("PORT").parse().expect("port");
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind");
    for conn in listener.incoming() {
        let Ok(mut c) = conn else { continue };
        let mut buf = [0u8; 4096];
        let _ = c.read(&mut buf);
        let _ = c.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
    }
}
RS
rustc -O -C strip=symbols -o "$WORK/server" "$WORK/server.rs"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2))}'; }
ms() { echo $((($2 - $1) / 1000000)); }

P=$WORK/p
mkdir -p "$P/stages" "$P/img"
cp "$WORK/server" "$P/img/server"
first=$(($(free_port) % 20000 + 30000))
printf '[project]\nname = "bench"\n\n[pipeline.preview]\ntemplate = "dev"\nports = "%s-%s"\n' "$first" "$((first + 500))" >"$P/ferry.toml"
# The app is a host binary: the process driver, as before the Docker driver existed.
printf '[runtime]\nkind = "local"\ndriver = "process"\n' >"$P/stages/dev.toml"
for app in web api worker; do
  d=$("$FERRY" -C "$P" image push "$P/img" --repo "$app" 2>/dev/null)
  cat >>"$P/stages/dev.toml" <<TOML

[apps.$app]
image = "$app"
active = 1
scale = 1
command = ["./server"]
port = $(free_port)
[apps.$app.releases]
1 = "$d"
[apps.$app.health]
path = "/"
interval = "100ms"
timeout = "100ms"
healthy_threshold = 1
grace_period = "5s"
[apps.$app.deploy]
drain = "100ms"
timeout = "60s"
TOML
done

commit=(); up=()
for _ in $(seq 1 "$RUNS"); do
  t0=$(date +%s%N); "$FERRY" -C "$P" commit --yes --progress plain >/dev/null 2>"$WORK/log" || { cat "$WORK/log"; exit 1; }; t1=$(date +%s%N)
  commit+=("$(ms "$t0" "$t1")")
  "$FERRY" -C "$P" down -s dev >/dev/null 2>&1
  t0=$(date +%s%N); "$FERRY" -C "$P" preview up 1 --yes >/dev/null 2>"$WORK/log" || { cat "$WORK/log"; exit 1; }; t1=$(date +%s%N)
  up+=("$(ms "$t0" "$t1")")
  "$FERRY" -C "$P" preview down 1 >/dev/null 2>&1
done
mc=$(printf '%s\n' "${commit[@]}" | median)
mu=$(printf '%s\n' "${up[@]}" | median)
echo "commit of the 3-app template stage: ${commit[*]} ms (median $mc ms)"
echo "preview up of the same 3 apps:      ${up[*]} ms (median $mu ms)"
awk -v a="$mu" -v b="$mc" 'BEGIN { printf "ratio: %.2fx (target <= 1.5x)\n", a / b }'

# 200 recorded previews, written as `preview up` records them.
python3 - "$P" <<'PY'
import json, sys
now = "2026-01-01T00:00:00Z"
previews = {}
for pr in range(1, 201):
    previews[str(pr)] = {
        "pr": pr, "stage": f"pr-{pr}", "template": "dev", "status": "up",
        "ports": {"api": 40000 + 3 * pr, "web": 40001 + 3 * pr, "worker": 40002 + 3 * pr},
        "images": {"web": "sha256:" + "ab" * 32},
        "branch": f"feature/{pr}", "sha": "0123456789abcdef", "url": f"http://127.0.0.1:{40001 + 3 * pr}",
        "created_at": now, "updated_at": now,
    }
json.dump({"previews": previews}, open(sys.argv[1] + "/.ferry/previews.json", "w"), indent=2)
PY
list=(); json=()
for _ in $(seq 1 20); do
  t0=$(date +%s%N); "$FERRY" -C "$P" preview list >/dev/null; t1=$(date +%s%N); list+=("$(ms "$t0" "$t1")")
  t0=$(date +%s%N); "$FERRY" -C "$P" preview list --json >/dev/null; t1=$(date +%s%N); json+=("$(ms "$t0" "$t1")")
done
echo "preview list of 200 previews: median $(printf '%s\n' "${list[@]}" | median) ms (target < 100 ms); --json: median $(printf '%s\n' "${json[@]}" | median) ms"
rm -f "$P/.ferry/previews.json"
