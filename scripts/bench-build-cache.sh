#!/usr/bin/env bash
# Benchmark of `ferry release create APP --source DIR` with an unchanged source (the Docker
# build cache hit), against the same build and push run by hand in the same run:
#
#   by hand:  docker build -t REGISTRY/REPO:COMMIT DIR && docker push REGISTRY/REPO:COMMIT
#   ferry:    ferry release create web --source DIR
#
# The source is a small Dockerfile app (FROM scratch, the static busybox and a page) in a git
# checkout of its own, so both tag the image with its commit; both push to the project's
# local registry (which ferry starts on 127.0.0.1), the same repository and tag. One warm-up
# of each, then RUNS (default 5) of each, alternating; prints every time and the medians. The
# target (issue 20): ferry's median at most 1 s above the hand-run's.
#
#   scripts/bench-build-cache.sh [RUNS]     # FERRY=path/to/ferry to use another build
#
# Needs a Docker Engine, the `docker` CLI, `docker-registry` and `busybox-static`. The
# registry is stopped and the work folder removed at the end; the images stay in the engine's
# cache (`docker image ls '127.0.0.1:*/*/web'`).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
FERRY=${FERRY:-}
if [[ -z "$FERRY" ]]; then
  cargo build --release --quiet --bin ferry
  FERRY=$PWD/target/release/ferry
fi
WORK=$(mktemp -d)
cleanup() { "$FERRY" -C "$WORK/project" image registry --stop >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT

mkdir -p "$WORK/project/stages" "$WORK/src"
printf '[project]\nname = "bench-build"\n\n[state]\nbackend = "local"\n' >"$WORK/project/ferry.toml"
cat >"$WORK/project/stages/dev.toml" <<'TOML'
[runtime]
kind = "local"
driver = "docker"

[apps.web]
image = "web"
port = 8080
TOML
cp /usr/bin/busybox "$WORK/src/busybox"
echo '<h1>build cache</h1>' >"$WORK/src/index.html"
cat >"$WORK/src/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY busybox /bin/busybox
COPY index.html /srv/index.html
CMD ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/srv"]
DOCKERFILE
git -C "$WORK/src" init -q
git -C "$WORK/src" add -A
git -C "$WORK/src" -c user.name=bench -c user.email=bench@example.invalid commit -qm source
COMMIT=$(git -C "$WORK/src" rev-parse HEAD)

# The project's registry, as `ferry image registry` prints it: http://127.0.0.1:PORT/NAMESPACE.
REGISTRY=$("$FERRY" -C "$WORK/project" image registry)
IMAGE="${REGISTRY#http://}/web:$COMMIT"

ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }
by_hand() {
  local t0
  t0=$(date +%s%N)
  # (stderr kept for a failure: the legacy builder's deprecation notice is noise otherwise)
  docker build -q -t "$IMAGE" "$WORK/src" >/dev/null 2>"$WORK/hand.log" || { cat "$WORK/hand.log" >&2; exit 1; }
  docker push "$IMAGE" >/dev/null 2>"$WORK/hand.log" || { cat "$WORK/hand.log" >&2; exit 1; }
  ms_since "$t0"
}
with_ferry() {
  local t0
  t0=$(date +%s%N)
  "$FERRY" -C "$WORK/project" release create web --source "$WORK/src" >/dev/null 2>"$WORK/last.log" ||
    { cat "$WORK/last.log" >&2; exit 1; }
  ms_since "$t0"
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2))}'; }

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
# Warm-up: the first ferry run builds and pushes for real and adds release 1; after it every
# run of either is a cache hit whose blobs the registry already has.
with_ferry >/dev/null
by_hand >/dev/null
hand=(); ferry=()
for _ in $(seq 1 "$RUNS"); do
  hand+=("$(by_hand)")
  ferry+=("$(with_ferry)")
done
grep -q 'unchanged' "$WORK/last.log" || { echo "ferry's last run was not a cache hit:" >&2; cat "$WORK/last.log" >&2; exit 1; }
mh=$(printf '%s\n' "${hand[@]}" | median)
mf=$(printf '%s\n' "${ferry[@]}" | median)
echo "by hand (docker build + docker push): ${hand[*]} ms (median $mh ms)"
echo "ferry release create --source:        ${ferry[*]} ms (median $mf ms)"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "ferry - by hand: $((mf - mh)) ms (target <= 1000 ms)"
