#!/usr/bin/env bash
# The Docker Engine's own floor for the Docker-driver commit benchmark (bench-commit.sh with
# APP=docker), without ferry: N containers of the same busybox-httpd image made from nothing,
# all at once through the Engine API (curl on the socket, as bollard talks to it) with the
# driver's settings (init, port published on 127.0.0.1, labels): create + start + first HTTP
# 200 on the published port ("up"), then stop (t=1) + remove ("down"). One container and
# N=20 alternate, RUNS times (default 3). Also reports the CPU time the engine's long-lived
# processes (dockerd, containerd, and the shims, runc, fuse-overlayfs, docker-proxy alive at
# both ends) took: a lower bound, as the short-lived ones are not counted.
#
#   scripts/bench-docker-engine.sh [RUNS]
#
# Containers and the image carry the label `ferry.bench=1` and are removed at the end.
set -euo pipefail
RUNS=${1:-3}
N=20
SOCK=${DOCKER_SOCK:-/var/run/docker.sock}
IMAGE=ferry-bench-engine:1
WORK=$(mktemp -d)
cleanup() {
  local ids
  ids=$(docker ps -aq --filter label=ferry.bench.engine=1)
  # shellcheck disable=SC2086 # one argument per id
  [[ -z "$ids" ]] || docker rm -f $ids >/dev/null 2>&1 || true
  docker rmi -f "$IMAGE" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

mkdir -p "$WORK/bin" "$WORK/srv"
cp /bin/busybox "$WORK/bin/busybox"
echo ok >"$WORK/srv/index.html"
printf 'FROM scratch\nCOPY bin /bin\nCOPY srv /srv\n' >"$WORK/Dockerfile"
docker build -q --label ferry.bench=1 -t "$IMAGE" "$WORK" >/dev/null 2>&1

api() { curl -s --unix-socket "$SOCK" -H 'Content-Type: application/json' "$@"; }
engine_ticks() {
  local t=0 p
  for p in $(pgrep -f 'dockerd|containerd|runc|fuse-overlayfs|docker-proxy|docker-init'); do
    t=$((t + $(awk '{print $14 + $15 + $16 + $17}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$t"
}
TICK_MS=$((1000 / $(getconf CLK_TCK)))

# The bench app: sleeps 300 ms, then serves 200 (as bench-commit.sh's APP=docker).
body='{"Image":"'"$IMAGE"'","Cmd":["/bin/busybox","sh","-c","/bin/busybox sleep 0.3; exec /bin/busybox httpd -f -p 8080 -h /srv"],"Labels":{"ferry.bench":"1","ferry.bench.engine":"1"},"ExposedPorts":{"8080/tcp":{}},"HostConfig":{"Init":true,"PortBindings":{"8080/tcp":[{"HostIp":"127.0.0.1","HostPort":"0"}]}}}'

one_container() {
  local id port
  id=$(api -X POST -d "$body" http://engine/containers/create | sed 's/.*"Id":"\([0-9a-f]*\)".*/\1/')
  api -X POST "http://engine/containers/$id/start"
  port=$(api "http://engine/containers/$id/json" | grep -o '"HostPort":"[0-9]*"' | tail -1 | grep -o '[0-9]\+')
  # Polls every 50 ms, as the bench app's health check (100 ms) would, a bit finer.
  until curl -sf -o /dev/null "http://127.0.0.1:$port/"; do sleep 0.05; done
}

# round COUNT: prints "up-ms down-ms engine-cpu-ms".
round() {
  local n=$1 e0 e1 t0 t1 t2 id
  e0=$(engine_ticks)
  t0=$(date +%s%N)
  for _ in $(seq 1 "$n"); do one_container & done
  wait
  t1=$(date +%s%N)
  for id in $(docker ps -aq --filter label=ferry.bench.engine=1); do
    (api -X POST "http://engine/containers/$id/stop?t=1" && api -X DELETE "http://engine/containers/$id?force=true") &
  done
  wait
  t2=$(date +%s%N)
  e1=$(engine_ticks)
  echo "$(((t1 - t0) / 1000000)) $(((t2 - t1) / 1000000)) $(((e1 - e0) * TICK_MS))"
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2))}'; }

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
: >"$WORK/one"
: >"$WORK/many"
for _ in $(seq 1 "$RUNS"); do
  round 1 >>"$WORK/one"
  round "$N" >>"$WORK/many"
done
for f in one many; do
  up=$(cut -d' ' -f1 "$WORK/$f" | median)
  down=$(cut -d' ' -f2 "$WORK/$f" | median)
  cpu=$(cut -d' ' -f3 "$WORK/$f" | median)
  echo "$f: up $(cut -d' ' -f1 "$WORK/$f" | tr '\n' ' ')ms (median $up), down median $down ms, engine CPU median $cpu ms"
  eval "total_$f=$((up + down))"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
# shellcheck disable=SC2154 # set by the eval above
awk -v a="$total_many" -v b="$total_one" 'BEGIN { printf "ratio (up + down): %.2fx\n", a / b }'
