#!/usr/bin/env bash
# `ferry plan` against `terraform plan` at equal size, measured interleaved in the same
# minutes so machine load hits both alike:
#
#   ferry:     the plan benchmark's stage (1,000 apps × 20 releases), nothing to change,
#              every app changing, and never applied (no state: every app to add);
#   terraform: 1,000 built-in `terraform_data` resources (no provider to download), with no
#              state (everything to create) and after an apply (nothing to change).
#
# Reports, per case, the median wall time, median CPU time (user+sys) and peak RSS, and the
# ratios terraform / ferry. Needs `terraform` on PATH; offline is fine.
#
#   scripts/bench-vs-terraform.sh [RUNS]      # default 11; FERRY=path to use another build
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-11}"
command -v terraform >/dev/null || { echo "error: terraform is not on PATH" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "error: GNU time (/usr/bin/time) is needed for CPU and RSS" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if [[ -z "${FERRY:-}" ]]; then
  cargo build --release --quiet --bin ferry
  FERRY="$PWD/target/release/ferry"
fi
cargo bench --quiet --bench plan -- --generate "$work" >/dev/null

# Terraform at equal size: 1,000 resources, each with an image and a scale, like an app.
tf_config() {
  local dir=$1
  mkdir -p "$dir"
  for i in $(seq 0 999); do
    printf 'resource "terraform_data" "app%04d" {\n  input = {\n    image = "registry.example.com/app%d@sha256:%064x"\n    scale = 2\n  }\n}\n\n' "$i" "$i" "$i"
  done >"$dir/main.tf"
  (cd "$dir" && TF_IN_AUTOMATION=1 terraform init -input=false >/dev/null 2>&1) || { echo "error: terraform init failed in $dir" >&2; exit 1; }
}
tf_config "$work/tf-no-state"
tf_config "$work/tf-no-change"
(cd "$work/tf-no-change" && TF_IN_AUTOMATION=1 terraform apply -auto-approve -input=false >/dev/null 2>&1)

# One run of a case: "wall_ms cpu_ms rss_kb" (CPU and peak RSS from GNU time, whose clock
# has only 10 ms resolution, so the wall time is taken around it in nanoseconds).
measure() {
  local dir=$1; shift
  local start end usage
  start=$(date +%s%N)
  usage=$(cd "$dir" && /usr/bin/time -f '%U %S %M' "$@" 2>&1 >/dev/null | tail -1)
  end=$(date +%s%N)
  echo "$usage" | awk -v wall=$(( (end - start) / 1000000 )) '{printf "%d %d %d\n", wall, ($1 + $2) * 1000, $3}'
}

declare -A cmd dirs
cmd[ferry-no-change]="$FERRY plan --offline";                 dirs[ferry-no-change]="$work/no-change"
cmd[ferry-all-change]="$FERRY plan --offline";                dirs[ferry-all-change]="$work/all-change"
cmd[ferry-no-state]="$FERRY plan --offline";                  dirs[ferry-no-state]="$work/no-state"
cmd[terraform-no-change]="terraform plan -input=false -lock=false"; dirs[terraform-no-change]="$work/tf-no-change"
cmd[terraform-no-state]="terraform plan -input=false -lock=false";  dirs[terraform-no-state]="$work/tf-no-state"
cases=(ferry-no-change terraform-no-change ferry-all-change ferry-no-state terraform-no-state)

for c in "${cases[@]}"; do measure "${dirs[$c]}" ${cmd[$c]} >/dev/null; done # warm caches
for _ in $(seq "$runs"); do
  for c in "${cases[@]}"; do measure "${dirs[$c]}" ${cmd[$c]} >>"$work/$c.runs"; done
done

median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
declare -A wall cpu rss
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); $runs runs each, interleaved"
printf '%-22s %10s %10s %10s\n' case "wall ms" "CPU ms" "peak MB"
for c in "${cases[@]}"; do
  wall[$c]=$(cut -d' ' -f1 "$work/$c.runs" | median)
  cpu[$c]=$(cut -d' ' -f2 "$work/$c.runs" | median)
  rss[$c]=$(cut -d' ' -f3 "$work/$c.runs" | median)
  printf '%-22s %10s %10s %10.1f\n' "$c" "${wall[$c]}" "${cpu[$c]}" "$(awk -v kb="${rss[$c]}" 'BEGIN { print kb / 1024 }')"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.0f×", a / b; else print "n/a (ferry under 10 ms CPU)" }'; }
echo "nothing to change: terraform / ferry = $(ratio "${wall[terraform-no-change]}" "${wall[ferry-no-change]}") wall, $(ratio "${cpu[terraform-no-change]}" "${cpu[ferry-no-change]}") CPU"
echo "no state: terraform / ferry = $(ratio "${wall[terraform-no-state]}" "${wall[ferry-no-state]}") wall, $(ratio "${cpu[terraform-no-state]}" "${cpu[ferry-no-state]}") CPU"
echo "everything changes: terraform (no state) / ferry (all change) = $(ratio "${wall[terraform-no-state]}" "${wall[ferry-all-change]}") wall, $(ratio "${cpu[terraform-no-state]}" "${cpu[ferry-all-change]}") CPU"
