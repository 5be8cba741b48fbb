#!/usr/bin/env bash
# Time the whole `ferry plan` process on the benchmark's large stage (1,000 apps × 20
# releases), with nothing to change, with every app changing and never applied (no state),
# and measure its peak RSS.
# Targets: median < 50 ms, peak RSS < 64 MB.
#
# Usage: scripts/bench-plan.sh [RUNS]   (default 30; uses hyperfine when installed)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-30}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cargo build --release --quiet --bin ferry
cargo bench --quiet --bench plan -- --generate "$work" >/dev/null
ferry="$PWD/target/release/ferry"

median_ms() { # command… → median wall time in ms over $runs runs
  local times=()
  for _ in $(seq "$runs"); do
    local start end
    start=$(date +%s%N)
    "$@" >/dev/null
    end=$(date +%s%N)
    times+=($(( (end - start) / 1000 )))
  done
  printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {m = (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2; printf "%.1f", m / 1000}'
}

cpu_ms() { # command… → median user+sys CPU time in ms over $runs runs: on a loaded machine
  # wall time mostly measures waiting for a core; CPU time (10 ms resolution) does not
  [ -x /usr/bin/time ] || { echo "n/a"; return; }
  for _ in $(seq "$runs"); do
    /usr/bin/time -f '%U %S' "$@" 2>&1 >/dev/null | tail -1
  done | awk '{print ($1 + $2) * 1000}' | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'
}

peak_rss_mb() { # command… → peak RSS in MB
  if [ -x /usr/bin/time ]; then
    /usr/bin/time -v "$@" 2>&1 >/dev/null | awk -F: '/Maximum resident set size/ {printf "%.1f", $2 / 1024}'
  else
    # Without GNU time: VmHWM of the process, read just before it exits is not possible
    # from outside, so fall back to the kernel's accounting of the finished child.
    python3 -c 'import resource,subprocess,sys; subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL); print("%.1f" % (resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024))' "$@"
  fi
}

for case in no-change all-change no-state; do
  dir="$work/$case"
  state="$dir/.ferry/state/bench.json"
  echo "== ferry plan, $case ($(wc -l < "$dir/stages/bench.toml") stage-file lines, $([ -f "$state" ] && echo "$(du -k "$state" | cut -f1) KB state" || echo "no state"))"
  if command -v hyperfine >/dev/null; then
    hyperfine --warmup 3 --runs "$runs" -N --export-json "$work/$case.json" "$ferry -C $dir plan --offline" >/dev/null
    median=$(python3 -c 'import json,sys; print("%.1f" % (json.load(open(sys.argv[1]))["results"][0]["median"] * 1000))' "$work/$case.json")
  else
    "$ferry" -C "$dir" plan --offline >/dev/null # warm the page cache
    median=$(median_ms "$ferry" -C "$dir" plan --offline)
  fi
  echo "median: ${median} ms over $runs runs"
  echo "CPU (user+sys) median: $(cpu_ms "$ferry" -C "$dir" plan --offline) ms"
  echo "peak RSS: $(peak_rss_mb "$ferry" -C "$dir" plan --offline) MB"
  for fmt in --json --markdown; do
    echo "  $fmt median: $(median_ms "$ferry" -C "$dir" plan --offline $fmt) ms"
  done
done
