#!/usr/bin/env bash
# Benchmark of a deploy to ECS on the emulator: N services (default 10) move to another
# release, with `ferry commit`, with the AWS CLI the usual way (register-task-definition and
# update-service per service, then one `aws ecs wait services-stable`), and with `ecs deploy`
# (PyPI ecs-deploy, one service per run, as it works), against the same moto server.
# Reports medians over RUNS runs (default 3) of the wall time, the API requests each tool
# sent (from the server's request log) and its peak RSS (the largest of its processes).
#
# The server is moto with a small service scheduler (scripts/bench-ecs-server.py): an
# update makes a new deployment whose tasks run BENCH_ROLLOUT_DELAY seconds later (default
# 3), as ECS would some time after the call. moto alone never completes a rollout.
#
#   scripts/bench-ecs.sh [RUNS]      # N=10, FERRY=path/to/ferry (default: a debug build)
#   SKIP_ECS_DEPLOY=1 BENCH_ROLLOUT_DELAY=60 scripts/bench-ecs.sh 3   # ferry and the CLI only
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
N=${N:-10}
PY=$PWD/target/py-venv/bin/python
if [[ ! -x $PY ]]; then
  echo "no test venv: run the ECS tests once (cargo test --test integration ecs) to create target/py-venv" >&2
  exit 1
fi
# The tools compared live in a venv of their own, so they never change the test venv's
# boto3/botocore, which moto depends on.
TOOLS=$PWD/target/bench-venv
AWS=$TOOLS/bin/aws ECS=$TOOLS/bin/ecs
if [[ ! -x $AWS || ! -x $ECS ]]; then
  python3 -m venv "$TOOLS"
  "$TOOLS/bin/python" -m pip install -q awscli ecs-deploy
fi
FERRY=${FERRY:-}
if [[ -z "$FERRY" ]]; then
  cargo build --quiet
  FERRY=$PWD/target/debug/ferry
fi
WORK=$(mktemp -d)
export BENCH_REQUEST_LOG=$WORK/requests.log
: >"$BENCH_REQUEST_LOG"
coproc SERVER { exec "$PY" scripts/bench-ecs-server.py 2>"$WORK/server.log"; }
SERVER_PID=$SERVER_PID
cleanup() { kill "$SERVER_PID" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
read -r -t 120 PORT <&"${SERVER[0]}" || { cat "$WORK/server.log"; exit 1; }

export AWS_ENDPOINT_URL=http://127.0.0.1:$PORT AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
export AWS_REGION=eu-central-1 AWS_DEFAULT_REGION=eu-central-1 AWS_EC2_METADATA_DISABLED=true
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
unset AWS_PROFILE AWS_SESSION_TOKEN

# Two clusters (one per tool), the default VPC's network, one repository with two images;
# the CLI's N services created at release 1 (ferry creates its own with a first commit).
read -r SUBNET GROUP URI D1 D2 < <("$PY" - "$N" <<'PY'
import boto3, hashlib, json, sys
n = int(sys.argv[1])
ec2, ecs, ecr = boto3.client("ec2"), boto3.client("ecs"), boto3.client("ecr")
vpc = [v for v in ec2.describe_vpcs()["Vpcs"] if v["IsDefault"]][0]["VpcId"]
subnet = sorted(s["SubnetId"] for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"])[0]
group = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc]}, {"Name": "group-name", "Values": ["default"]}])["SecurityGroups"][0]["GroupId"]
for c in ("bench-ferry", "bench-cli", "bench-ecs-deploy"):
    ecs.create_cluster(clusterName=c)
uri = ecr.create_repository(repositoryName="bench/app")["repository"]["repositoryUri"]
digests = []
for v in ("1", "2"):
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 7, "digest": "sha256:" + v * 64},
        "layers": []})
    digest = "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()
    ecr.put_image(repositoryName="bench/app", imageManifest=manifest, imageTag="v" + v, imageDigest=digest)
    digests.append(digest)
print(subnet, group, uri, *digests)
PY
)

# The task definition the CLI registers for app I at digest D (what ferry renders, give or take tags).
td_json() {
  cat <<JSON
{"family": "bench-cli-app$1", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"], "cpu": "256",
 "memory": "512", "executionRoleArn": "arn:aws:iam::123456789012:role/ecsTaskExecutionRole",
 "containerDefinitions": [{"name": "app$1", "image": "$URI@$2", "essential": true, "memory": 512,
   "portMappings": [{"containerPort": 8080, "protocol": "tcp"}],
   "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "/bench", "awslogs-region": "eu-central-1", "awslogs-stream-prefix": "ferry"}}}]}
JSON
}
NET="awsvpcConfiguration={subnets=[$SUBNET],securityGroups=[$GROUP],assignPublicIp=DISABLED}"
SERVICES=()
for i in $(seq 1 "$N"); do
  td_json "$i" "$D1" >"$WORK/td-$i-1.json"
  td_json "$i" "$D2" >"$WORK/td-$i-2.json"
  arn=$("$AWS" ecs register-task-definition --cli-input-json "file://$WORK/td-$i-1.json" --query taskDefinition.taskDefinitionArn --output text)
  for cluster in bench-cli bench-ecs-deploy; do
    "$AWS" ecs create-service --cluster $cluster --service-name "app$i" --task-definition "$arn" --desired-count 1 \
      --launch-type FARGATE --network-configuration "$NET" >/dev/null
  done
  SERVICES+=("app$i")
done

# Ferry's project: the same N apps, release 1 active, first commit unmeasured.
P=$WORK/project
mkdir -p "$P/stages"
printf '[project]\nname = "bench"\n' >"$P/ferry.toml"
cat >"$P/stages/bench.toml" <<TOML
[runtime]
kind = "ecs"
region = "eu-central-1"
cluster = "bench-ferry"
subnets = ["$SUBNET"]
security_groups = ["$GROUP"]
execution_role = "arn:aws:iam::123456789012:role/ecsTaskExecutionRole"
TOML
for i in $(seq 1 "$N"); do
  cat >>"$P/stages/bench.toml" <<TOML

[apps.app$i]
image = "$URI"
active = 1
scale = 1
cpu = 256
memory = 512
port = 8080
[apps.app$i.releases]
1 = "$D1"
2 = "$D2"
[apps.app$i.deploy]
timeout = "120s"
TOML
done
"$FERRY" -C "$P" commit --yes --progress plain >/dev/null 2>"$WORK/ferry.log" || { cat "$WORK/ferry.log"; exit 1; }

now_ms() { echo $(($(date +%s%N) / 1000000)); }
lines() { wc -l <"$BENCH_REQUEST_LOG"; }
# requests CLIENT FROM: requests by CLIENT in the log after line FROM.
requests() { tail -n +"$(($2 + 1))" "$BENCH_REQUEST_LOG" | grep -c "^$1	" || true; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# timed KB_FILE COMMAND…: run it under GNU time, appending its peak RSS in KB to KB_FILE.
timed() { local kb=$1; shift; /usr/bin/time -a -o "$kb" -f '%M' "$@"; }
peak_mb() { sort -n "$1" | tail -1 | awk '{printf "%.1f", $1 / 1024}'; }

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
FERRY_MS=() FERRY_REQ=() CLI_MS=() CLI_REQ=() ED_MS=() ED_REQ=()
for run in $(seq 1 "$RUNS"); do
  to=$((run % 2 + 1)) # release 2, 1, 2, …
  sed -i "s/^active = .*/active = $to/" "$P/stages/bench.toml"
  from=$(lines) t0=$(now_ms)
  timed "$WORK/ferry.kb" "$FERRY" -C "$P" commit --yes --progress plain >/dev/null 2>"$WORK/ferry.log" || { cat "$WORK/ferry.log"; exit 1; }
  FERRY_MS+=($(($(now_ms) - t0))) FERRY_REQ+=("$(requests ferry "$from")")
  tail -n +"$((from + 1))" "$BENCH_REQUEST_LOG" | grep "^ferry	" | cut -f2 | sed 's/^AmazonEC2ContainerServiceV20141113\.//; s/^AmazonEC2ContainerRegistry_V20150921\./ecr:/; s/^Logs_20140328\./logs:/' | sort | uniq -c | sort -rn | awk '{printf "%s %s, ", $2, $1}' | sed 's/, $//' >"$WORK/ferry-actions-$run"

  digest=$([[ $to == 2 ]] && echo 2 || echo 1)
  from=$(lines) t0=$(now_ms)
  for i in $(seq 1 "$N"); do
    arn=$(timed "$WORK/cli.kb" "$AWS" ecs register-task-definition --cli-input-json "file://$WORK/td-$i-$digest.json" --query taskDefinition.taskDefinitionArn --output text)
    timed "$WORK/cli.kb" "$AWS" ecs update-service --cluster bench-cli --service "app$i" --task-definition "$arn" >/dev/null
  done
  timed "$WORK/cli.kb" "$AWS" ecs wait services-stable --cluster bench-cli --services "${SERVICES[@]}"
  CLI_MS+=($(($(now_ms) - t0))) CLI_REQ+=("$(requests aws-cli "$from")")

  # ecs-deploy: one service per run; it copies the service's task definition with the new
  # image, updates the service and polls until the deployment is done. SKIP_ECS_DEPLOY=1
  # leaves it out (ten runs of a 60 s rollout take ten minutes).
  if [[ -n ${SKIP_ECS_DEPLOY:-} ]]; then
    ED_MS+=(0) ED_REQ+=(0)
    echo "run $run: ferry ${FERRY_MS[-1]} ms, ${FERRY_REQ[-1]} requests; aws cli ${CLI_MS[-1]} ms, ${CLI_REQ[-1]} requests" >&2
    continue
  fi
  image=$([[ $to == 2 ]] && echo "$D2" || echo "$D1")
  from=$(lines) t0=$(now_ms)
  for i in $(seq 1 "$N"); do
    timed "$WORK/ecs-deploy.kb" "$ECS" deploy bench-ecs-deploy "app$i" --image "app$i" "$URI@$image" --timeout 120 \
      --no-deregister --region eu-central-1 >"$WORK/ecs-deploy.log" 2>&1 || { cat "$WORK/ecs-deploy.log"; exit 1; }
  done
  ED_MS+=($(($(now_ms) - t0))) ED_REQ+=("$(requests boto3 "$from")")
  echo "run $run: ferry ${FERRY_MS[-1]} ms, ${FERRY_REQ[-1]} requests; aws cli ${CLI_MS[-1]} ms, ${CLI_REQ[-1]} requests; ecs-deploy ${ED_MS[-1]} ms, ${ED_REQ[-1]} requests" >&2
done

echo "ECS deploy of $N services on the emulator (rollout delay ${BENCH_ROLLOUT_DELAY:-3}s), medians of $RUNS runs:"
printf '  %-34s %8s ms  %4s requests  %6s MB peak RSS\n' "ferry commit" "$(median "${FERRY_MS[@]}")" "$(median "${FERRY_REQ[@]}")" "$(peak_mb "$WORK/ferry.kb")"
printf '  %-34s %8s ms  %4s requests  %6s MB peak RSS\n' "aws ecs update-service + wait" "$(median "${CLI_MS[@]}")" "$(median "${CLI_REQ[@]}")" "$(peak_mb "$WORK/cli.kb")"
[[ -n ${SKIP_ECS_DEPLOY:-} ]] || printf '  %-34s %8s ms  %4s requests  %6s MB peak RSS\n' "ecs deploy (one per service)" "$(median "${ED_MS[@]}")" "$(median "${ED_REQ[@]}")" "$(peak_mb "$WORK/ecs-deploy.kb")"
echo "ferry's requests by action (run 1 registers new task definitions, later runs reuse them):"
for run in $(seq 1 "$RUNS"); do echo "  run $run (to release $((run % 2 + 1))): $(cat "$WORK/ferry-actions-$run")"; done
echo "load average before: $LOAD_BEFORE; after: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores"
