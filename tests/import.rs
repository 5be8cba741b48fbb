//! `ferry import` against the moto emulator: services created with boto3 in the shapes
//! teams have (behind a load balancer with a sidecar and secrets from SSM and Secrets
//! Manager, on a tag; a worker without a load balancer, pinned by digest, autoscaled on CPU
//! and memory, with a health check and a rolling deployment with a bake time, its circuit
//! breaker and a CloudWatch alarm) are imported, adopted and updated in place; and an AWS
//! Copilot workspace written for the test converts (an autoscaled count, a recreating
//! deployment), with what does not map reported.
//!
//! The commit of a new release needs tasks that run, registered in the service's target
//! group: the test runs the ECS emulator of its own (`Moto::start_emulator`, moto with the
//! service scheduler of `tests/support/ecs_emulator.py`). (moto
//! 5.2.5's RunTask fails with a 500 on a container without container-level `memory`, so
//! every container here states one.)

use serde_json::Value;

use crate::ecs_runtime::{python_json, unique, SETUP_CLUSTER, SETUP_REPOSITORY};
use crate::support::moto::{Moto, REGION};
use crate::support::{Run, TestProject};

/// Creates the two services of the test in cluster `argv[1]`: `legacy-web` (image `argv[2]`
/// by tag `prod`, behind two target groups — the app's and its envoy sidecar's — with two
/// secrets, its own task role, logs, ARM64, 40 GiB of storage, a capacity provider strategy,
/// ECS Exec, a tag, a grace period and a CPU policy of its own name) and
/// `billing-worker` (image `argv[3]` by digest, no load balancer, a health check, an
/// autoscaling target with a CPU policy of its own name and ferry's memory policy, a rolling
/// deployment of 50–150 % with a bake time, a circuit breaker without rollback and an alarm).
/// Prints the ARNs and names the test checks against.
const CREATE_SERVICES: &str = r#"
import boto3, json, sys
cluster, web_image, worker_image = sys.argv[1], sys.argv[2], sys.argv[3]
subnets, groups = json.loads(sys.argv[4]), json.loads(sys.argv[5])
ec2, ecs, elb = boto3.client("ec2"), boto3.client("ecs"), boto3.client("elbv2")
ssm, sm, aas = boto3.client("ssm"), boto3.client("secretsmanager"), boto3.client("application-autoscaling")
alarm = cluster + "-worker-errors"
boto3.client("cloudwatch").put_metric_alarm(AlarmName=alarm, MetricName="Errors", Namespace="billing",
    Statistic="Sum", Period=60, EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanThreshold")
vpc = [v for v in ec2.describe_vpcs()["Vpcs"] if v["IsDefault"]][0]["VpcId"]
tg = elb.create_target_group(Name=cluster[-20:] + "-web", Protocol="HTTP", Port=8080, VpcId=vpc,
                             TargetType="ip")["TargetGroups"][0]["TargetGroupArn"]
admin_tg = elb.create_target_group(Name=cluster[-18:] + "-admin", Protocol="HTTP", Port=9901, VpcId=vpc,
                                   TargetType="ip")["TargetGroups"][0]["TargetGroupArn"]
ssm.put_parameter(Name="/" + cluster + "/db-password", Value="planted-ssm-value", Type="SecureString")
param = ssm.get_parameter(Name="/" + cluster + "/db-password")["Parameter"]["ARN"]
secret = sm.create_secret(Name=cluster + "/api-key", SecretString="planted-sm-value")["ARN"]
log = {"logDriver": "awslogs", "options": {"awslogs-group": "/legacy/web", "awslogs-region": "eu-central-1",
    "awslogs-stream-prefix": "web"}}
net = {"awsvpcConfiguration": {"subnets": subnets, "securityGroups": groups, "assignPublicIp": "DISABLED"}}
web = ecs.register_task_definition(
    family="legacy-web", networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="512", memory="1024",
    executionRoleArn="arn:aws:iam::123456789012:role/legacy-exec",
    taskRoleArn="arn:aws:iam::123456789012:role/legacy-web",
    runtimePlatform={"cpuArchitecture": "ARM64", "operatingSystemFamily": "LINUX"}, ephemeralStorage={"sizeInGiB": 40},
    containerDefinitions=[
        {"name": "app", "image": web_image, "essential": True, "memory": 768, "command": ["serve", "--port", "8080"],
         "portMappings": [{"containerPort": 8080, "protocol": "tcp"}],
         "environment": [{"name": "MODE", "value": "production"}],
         "secrets": [{"name": "DB_PASSWORD", "valueFrom": param}, {"name": "API_KEY", "valueFrom": secret}],
         "dependsOn": [{"containerName": "envoy", "condition": "START"}],
         "logConfiguration": log},
        {"name": "envoy", "image": "envoyproxy/envoy:v1.30", "essential": False, "memory": 256,
         "command": ["envoy", "-c", "/etc/envoy.yaml"], "environment": [{"name": "ENVOY_UID", "value": "0"}],
         "secrets": [{"name": "ADMIN_TOKEN", "valueFrom": param}],
         "portMappings": [{"containerPort": 9901, "protocol": "tcp"}],
         "healthCheck": {"command": ["CMD-SHELL", "curl -f localhost:9901/ready"]}, "logConfiguration": log},
    ])["taskDefinition"]["taskDefinitionArn"]
worker = ecs.register_task_definition(
    family="billing-worker", networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="256", memory="512",
    executionRoleArn="arn:aws:iam::123456789012:role/legacy-exec",
    containerDefinitions=[
        {"name": "worker", "image": worker_image, "essential": True, "memory": 512,
         "healthCheck": {"command": ["CMD-SHELL", "test -f /tmp/alive"], "interval": 15, "timeout": 4,
                         "retries": 2, "startPeriod": 20}},
    ])["taskDefinition"]["taskDefinitionArn"]
web_service = ecs.create_service(cluster=cluster, serviceName="legacy-web", taskDefinition=web, desiredCount=1,
    launchType="FARGATE", networkConfiguration=net, healthCheckGracePeriodSeconds=45,
    propagateTags="TASK_DEFINITION", tags=[{"key": "team", "value": "storefront"}],
    loadBalancers=[{"targetGroupArn": tg, "containerName": "app", "containerPort": 8080},
                   {"targetGroupArn": admin_tg, "containerName": "envoy", "containerPort": 9901}])["service"]["serviceArn"]
# (the emulator keeps these from UpdateService, not CreateService)
ecs.update_service(cluster=cluster, service="legacy-web", enableExecuteCommand=True,
    capacityProviderStrategy=[{"capacityProvider": "FARGATE", "weight": 1, "base": 1},
                              {"capacityProvider": "FARGATE_SPOT", "weight": 3}])
web_resource = "service/" + cluster + "/legacy-web"
aas.register_scalable_target(ServiceNamespace="ecs", ResourceId=web_resource,
    ScalableDimension="ecs:service:DesiredCount", MinCapacity=1, MaxCapacity=4)
aas.put_scaling_policy(PolicyName="web-cpu", ServiceNamespace="ecs", ResourceId=web_resource,
    ScalableDimension="ecs:service:DesiredCount", PolicyType="TargetTrackingScaling",
    TargetTrackingScalingPolicyConfiguration={"TargetValue": 60.0,
        "PredefinedMetricSpecification": {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"}})
ecs.create_service(cluster=cluster, serviceName="billing-worker", taskDefinition=worker, desiredCount=2,
    launchType="FARGATE", networkConfiguration=net,
    deploymentConfiguration={"maximumPercent": 150, "minimumHealthyPercent": 50, "strategy": "ROLLING",
        "bakeTimeInMinutes": 5, "deploymentCircuitBreaker": {"enable": True, "rollback": False},
        "alarms": {"alarmNames": [alarm], "enable": True, "rollback": True}})
resource = "service/" + cluster + "/billing-worker"
aas.register_scalable_target(ServiceNamespace="ecs", ResourceId=resource,
    ScalableDimension="ecs:service:DesiredCount", MinCapacity=2, MaxCapacity=8)
aas.put_scaling_policy(PolicyName="cpu70", ServiceNamespace="ecs", ResourceId=resource,
    ScalableDimension="ecs:service:DesiredCount", PolicyType="TargetTrackingScaling",
    TargetTrackingScalingPolicyConfiguration={"TargetValue": 70.0,
        "PredefinedMetricSpecification": {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"}})
aas.put_scaling_policy(PolicyName="ferry-memory", ServiceNamespace="ecs", ResourceId=resource,
    ScalableDimension="ecs:service:DesiredCount", PolicyType="TargetTrackingScaling",
    TargetTrackingScalingPolicyConfiguration={"TargetValue": 80.0,
        "PredefinedMetricSpecification": {"PredefinedMetricType": "ECSServiceAverageMemoryUtilization"}})
print(json.dumps({"target_group": tg, "admin_target_group": admin_tg, "param": param, "secret": secret, "web_task_definition": web,
                  "web_service": web_service, "alarm": alarm}))
"#;

/// Every service of cluster `argv[1]` with its task definition, as boto3 reads them.
const READ_SERVICES: &str = r#"
import boto3, json, sys
ecs, aas = boto3.client("ecs"), boto3.client("application-autoscaling")
arns = ecs.list_services(cluster=sys.argv[1])["serviceArns"]
out = {}
for s in ecs.describe_services(cluster=sys.argv[1], services=arns)["services"]:
    td = ecs.describe_task_definition(taskDefinition=s["taskDefinition"])["taskDefinition"]
    tags = ecs.list_tags_for_resource(resourceArn=s["serviceArn"])["tags"]
    policies = aas.describe_scaling_policies(ServiceNamespace="ecs",
        ResourceId="service/" + sys.argv[1] + "/" + s["serviceName"])["ScalingPolicies"]
    out[s["serviceName"]] = {"arn": s["serviceArn"], "status": s["status"], "taskDefinition": s["taskDefinition"],
        "family": td["family"], "revision": td["revision"],
        "containers": [c["name"] for c in td["containerDefinitions"]],
        "image": td["containerDefinitions"][0]["image"],
        "dependsOn": {c["name"]: c.get("dependsOn", []) for c in td["containerDefinitions"]},
        "logs": {c["name"]: c.get("logConfiguration") for c in td["containerDefinitions"]},
        "sidecar": {k: td["containerDefinitions"][-1].get(k) for k in ("image", "command", "environment", "secrets",
            "portMappings", "essential")},
        "task": {k: td.get(k) for k in ("taskRoleArn", "executionRoleArn", "runtimePlatform", "ephemeralStorage")},
        "service": {k: s.get(k) for k in ("enableExecuteCommand", "capacityProviderStrategy", "propagateTags",
            "loadBalancers", "healthCheckGracePeriodSeconds")},
        "tags": {t["key"]: t["value"] for t in tags if not t["key"].startswith("ferry:")},
        "policies": sorted((p["PolicyName"], p["TargetTrackingScalingPolicyConfiguration"]["TargetValue"])
            for p in policies)}
print(json.dumps(out))
"#;

fn strings(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
}

#[test]
fn live_services_are_imported_adopted_and_updated_in_place() {
    let moto = Moto::start_emulator(0.5);
    let cluster = unique("cluster-");
    let net = python_json(&moto, SETUP_CLUSTER, &[&cluster]);
    let (subnets, groups) = (strings(&net["subnets"]), strings(&net["security_groups"]));
    let web_repo = python_json(&moto, SETUP_REPOSITORY, &[&unique("legacy/web-")]);
    let worker_repo = python_json(&moto, SETUP_REPOSITORY, &[&unique("legacy/worker-")]);
    let (web_uri, web_digest) = (web_repo["uri"].as_str().unwrap(), web_repo["digest"].as_str().unwrap());
    let (worker_uri, worker_digest) = (worker_repo["uri"].as_str().unwrap(), worker_repo["digest"].as_str().unwrap());
    let created = python_json(
        &moto,
        CREATE_SERVICES,
        &[
            &cluster,
            &format!("{web_uri}:prod"),
            &format!("{worker_uri}@{worker_digest}"),
            &serde_json::to_string(&subnets).unwrap(),
            &serde_json::to_string(&groups).unwrap(),
        ],
    );
    let p = TestProject::empty();
    p.write("ferry.toml", "[project]\nname = \"shop\"\n");
    let run = |args: &[&str]| {
        let mut cmd = p.ferry();
        moto.configure(&mut cmd);
        Run(cmd.args(args).output().expect("run ferry"))
    };
    let import =
        ["import", "-s", "prod", "--cluster", &cluster, "--service", "legacy-web", "--service", "billing-worker"];

    // Bad input: named errors, nothing written.
    let missing = run(&["import", "-s", "prod", "--cluster", "no-such-cluster", "--all"]);
    missing.expect_code(1);
    assert!(
        missing.stderr().contains("error: cluster `no-such-cluster` not found in eu-central-1"),
        "{}",
        missing.stderr()
    );
    let missing = run(&["import", "-s", "prod", "--cluster", &cluster, "--service", "no-such-service"]);
    missing.expect_code(1);
    assert!(
        missing.stderr().contains(&format!("error: service `no-such-service` not found in cluster `{cluster}`")),
        "{}",
        missing.stderr()
    );

    // --dry-run prints the file and writes nothing.
    let dry = run(&[&import[..], &["--dry-run"]].concat());
    dry.expect_code(0);
    let text = dry.stdout();
    assert!(!p.path().join("stages/prod.toml").exists(), "a dry run writes nothing");
    assert!(!p.path().join(".ferry/state/prod.json").exists(), "a dry run records nothing");

    let imported = run(&import);
    imported.expect_code(0);
    let file = p.read("stages/prod.toml");
    assert_eq!(file, text, "the dry run printed what import writes");
    for expected in [
        "[runtime]\nkind = \"ecs\"".to_string(),
        format!("cluster = \"{cluster}\""),
        "execution_role = \"arn:aws:iam::123456789012:role/legacy-exec\"".into(),
        format!(
            "[apps.legacy-web]\nimage = \"{web_uri}\"\nactive = 1\nscale = {{ min = 1, max = 4, cpu_target = 60 }}\n\
             cpu = 512\nmemory = 1024"
        ),
        // What issue #21's keys say of the task and the service.
        "task_role = \"arn:aws:iam::123456789012:role/legacy-web\"".into(),
        "architecture = \"ARM64\"".into(),
        "ephemeral_storage = 40".into(),
        "exec = true".into(),
        "tags = { team = \"storefront\" }".into(),
        "propagate_tags = \"task_definition\"".into(),
        "container_depends_on = { envoy = \"START\" }".into(),
        "capacity_providers = [{ provider = \"FARGATE\", base = 1 }, { provider = \"FARGATE_SPOT\", weight = 3 }]"
            .into(),
        "[apps.legacy-web.logging]\ngroup = \"/legacy/web\"\nstream_prefix = \"web\"".into(),
        "health_check_grace_period = \"45s\"".into(),
        "envoyproxy/envoy:v1.30".into(),
        "command = [\"serve\", \"--port\", \"8080\"]\nport = 8080".into(),
        format!(
            "target_groups = [{{ arn = \"{}\" }}, {{ arn = \"{}\", container = \"envoy\", port = 9901 }}]",
            created["target_group"].as_str().unwrap(),
            created["admin_target_group"].as_str().unwrap()
        ),
        // The tag resolved through ECR to the digest it names.
        format!("[apps.legacy-web.releases]\n1 = \"{web_digest}\""),
        format!("DB_PASSWORD = \"{}\"", created["param"].as_str().unwrap()),
        format!("API_KEY = \"{}\"", created["secret"].as_str().unwrap()),
        format!("[apps.billing-worker.releases]\n1 = \"{worker_digest}\""),
        "[apps.billing-worker.health]\ncommand = [\"CMD-SHELL\", \"test -f /tmp/alive\"]\ninterval = \"15s\"\n\
         timeout = \"4s\"\nunhealthy_threshold = 2\ngrace_period = \"20s\""
            .into(),
        // Autoscaling: the range, the CPU target of a policy of its own name, ferry's memory policy.
        "scale = { min = 2, max = 8, cpu_target = 70, memory_target = 80 }".into(),
        // The rolling deployment as it runs.
        "max_surge = \"50%\"\nmin_healthy = \"50%\"".into(),
        "bake_time = \"5m\"".into(),
        "circuit_breaker = { enable = true, rollback = false }".into(),
        format!("alarms = [\"{}\"]", created["alarm"].as_str().unwrap()),
    ] {
        assert!(file.contains(&expected), "{expected:?} missing from:\n{file}");
    }
    assert!(!file.contains("planted"), "secret values never reach the file:\n{file}");
    let warnings = imported.stderr();
    for expected in [
        "warning: service legacy-web: sidecar containers: [\"envoy\"]: envoy imported without memory 256 MiB",
        "warning: service legacy-web: container memory: 768 MiB of the task's 1024 MiB",
    ] {
        assert!(warnings.contains(expected), "{expected:?} missing from:\n{warnings}");
    }
    assert!(!warnings.contains("planted"), "{warnings}");
    // A policy of its own name on CPU is adopted, not reported (ferry puts it, and no `ferry-cpu`).
    for mapped in ["deployment alarms", "deployment circuit breaker", "strategy", "autoscaling"] {
        assert!(!warnings.contains(&format!("billing-worker: {mapped}")), "{mapped} is imported:\n{warnings}");
    }
    assert!(!file.contains("strategy"), "rolling is the default, not written:\n{file}");
    run(&["validate"]).expect_code(0);

    // Adopted: what runs is recorded, so nothing is planned, not even against what runs.
    let plan = run(&["plan", "-s", "prod", "--refresh", "--detailed-exitcode"]);
    plan.expect_code(0);
    assert!(plan.stdout().contains("matches recorded state and what runs"), "{}", plan.stdout());
    let state = p.read(".ferry/state/prod.json");
    assert!(!state.contains("planted"), "{state}");
    // `ps` finds the adopted services under their own names.
    let ps: Value = serde_json::from_str(&run(&["ps", "-s", "prod", "--json"]).expect_code(0).stdout()).unwrap();
    let states: Vec<(&str, &str)> = ps["stages"][0]["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["app"].as_str().unwrap(), s["state"].as_str().unwrap()))
        .collect();
    assert_eq!(states, [("billing-worker", "ACTIVE"), ("legacy-web", "ACTIVE")], "{ps:#}");

    // Importing again changes nothing; a comment the team added stays.
    let commented =
        file.replacen("[apps.legacy-web]\n", "[apps.legacy-web]\n# the storefront, adopted in December\n", 1);
    p.write("stages/prod.toml", &commented);
    run(&import).expect_code(0);
    assert_eq!(p.read("stages/prod.toml"), commented);
    assert_eq!(p.read(".ferry/state/prod.json"), state, "state unchanged by a second import");

    // A file that declares the app otherwise: refused without --force.
    let other = format!(
        "[runtime]\nkind = \"ecs\"\nregion = \"{REGION}\"\ncluster = \"{cluster}\"\n\n[apps.legacy-web]\nimage = \"web\"\n"
    );
    p.write("stages/other.toml", &other);
    let taken = run(&["import", "-s", "other", "--cluster", &cluster, "--service", "legacy-web"]);
    taken.expect_code(1);
    assert!(
        taken.stderr().contains("error: stages/other.toml already declares app legacy-web; nothing written"),
        "{}",
        taken.stderr()
    );
    assert_eq!(p.read("stages/other.toml"), other);
    // A stage on another runtime: refused, its apps would move too.
    p.write("stages/other.toml", "[apps.site]\nimage = \"site\"\n");
    let moved = run(&["import", "-s", "other", "--cluster", &cluster, "--service", "legacy-web"]);
    moved.expect_code(1);
    assert!(
        moved.stderr().contains(&format!(
            "error: stages/other.toml runs on local, not on ECS cluster {cluster}; nothing written"
        )),
        "{}",
        moved.stderr()
    );
    std::fs::remove_file(p.path().join("stages/other.toml")).unwrap();

    // A new release commits as an update of the same service: same ARN, a new revision of
    // the same family, no `prod-legacy-web` service.
    let before = python_json(&moto, READ_SERVICES, &[&cluster]);
    let web_repo_name = web_uri.split_once('/').unwrap().1;
    let v2 = python_json(&moto, crate::ecs_runtime::PUSH_TAG, &[web_repo_name, "v2", "v2"]);
    let v2 = v2.as_str().unwrap();
    run(&["release", "create", "legacy-web", v2, "--activate", "-s", "prod"]).expect_code(0);
    // A rollout on the emulator takes seconds; a failure should not wait for the default 5m.
    let file = p.read("stages/prod.toml");
    let file = match file.contains("[apps.legacy-web.deploy]\n") {
        true => file.replacen("[apps.legacy-web.deploy]\n", "[apps.legacy-web.deploy]\ntimeout = \"90s\"\n", 1),
        false => format!("{file}\n[apps.legacy-web.deploy]\ntimeout = \"90s\"\n"),
    };
    p.write("stages/prod.toml", &file);
    let commit = run(&["commit", "-s", "prod", "--yes", "--progress", "plain"]);
    commit.expect_code(0);
    let after = python_json(&moto, READ_SERVICES, &[&cluster]);
    let services: Vec<&String> = after.as_object().unwrap().keys().collect();
    assert_eq!(services, ["billing-worker", "legacy-web"], "no new service: {after:#}");
    let (old, new) = (&before["legacy-web"], &after["legacy-web"]);
    assert_eq!(new["arn"], old["arn"], "the same service");
    assert_eq!(new["family"], "legacy-web", "the same family");
    assert_eq!(new["revision"].as_i64(), Some(old["revision"].as_i64().unwrap() + 1), "a new revision: {new:#}");
    assert_eq!(new["image"].as_str().unwrap(), format!("{web_uri}@{v2}"));
    // The task and the service as they ran: the container keeps its name, the sidecar, the
    // waits, logs, roles, platform, storage, Exec, strategy, tags, target groups; the adopted
    // CPU policy put under its own name, no `ferry-cpu` beside it.
    assert_eq!(new["containers"], serde_json::json!(["app", "envoy"]), "{new:#}");
    assert_eq!(new["dependsOn"], old["dependsOn"], "{new:#}");
    assert_eq!(new["logs"]["app"]["options"]["awslogs-group"], "/legacy/web");
    assert_eq!(new["logs"]["app"]["options"]["awslogs-stream-prefix"], "web");
    for key in ["image", "command", "environment", "secrets", "essential"] {
        assert_eq!(new["sidecar"][key], old["sidecar"][key], "sidecar {key}: {new:#}");
    }
    assert_eq!(new["sidecar"]["portMappings"][0]["containerPort"], 9901);
    assert_eq!(new["task"], old["task"], "roles, platform, storage: {new:#}");
    let strategy = |s: &Value| -> Vec<(String, i64, i64)> {
        s["service"]["capacityProviderStrategy"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let n = |k: &str| c[k].as_i64().unwrap_or(0);
                (c["capacityProvider"].as_str().unwrap().to_string(), n("weight"), n("base"))
            })
            .collect()
    };
    assert_eq!(strategy(new), strategy(old));
    for key in ["enableExecuteCommand", "propagateTags", "loadBalancers"] {
        assert_eq!(new["service"][key], old["service"][key], "{key}: {new:#}");
    }
    assert_eq!(new["tags"], serde_json::json!({"team": "storefront"}));
    assert_eq!(new["policies"], serde_json::json!([["web-cpu", 60.0]]), "no duplicate policy: {new:#}");
    assert_eq!(after["billing-worker"], before["billing-worker"], "the other service untouched");
    let history = run(&["history", "legacy-web", "-s", "prod"]);
    assert!(history.expect_code(0).stdout().contains("Import of ECS service legacy-web"), "{}", history.stdout());

    // Imported again after the commit: nothing to change.
    let file = p.read("stages/prod.toml");
    run(&import).expect_code(0);
    assert_eq!(p.read("stages/prod.toml"), file, "the committed service reads back as the file says");

    // The live services stop using some keys: a re-import removes them, and keeps the rest,
    // comments and the team's own deploy keys.
    let file = file.replacen("[apps.billing-worker]\n", "[apps.billing-worker]\n# invoices, nightly\n", 1);
    p.write("stages/prod.toml", &file);
    python_json(&moto, CHANGE_SERVICES, &[&cluster]);
    run(&import).expect_code(0);
    let reimported = p.read("stages/prod.toml");
    for gone in ["tags = {", "max_surge", "min_healthy", "bake_time", "circuit_breaker", "alarms"] {
        assert!(!reimported.contains(gone), "{gone:?} stays in:\n{reimported}");
    }
    // Of billing-worker's deploy keys, only the stop timeout is left: its container states
    // none, so it gets ECS's 30 s, which the file keeps rather than ferry's shorter default.
    let deploy = reimported.split("[apps.billing-worker.deploy]\n").nth(1).expect("a deploy section");
    let keys: Vec<&str> = deploy.lines().take_while(|l| !l.starts_with('[')).filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(keys, ["stop_timeout = \"30s\""], "{reimported}");
    for kept in ["# invoices, nightly", "# the storefront, adopted in December", "timeout = \"90s\"", "exec = true"] {
        assert!(reimported.contains(kept), "{kept:?} missing from:\n{reimported}");
    }
    run(&["validate"]).expect_code(0);
    let state = p.read(".ferry/state/prod.json");
    run(&import).expect_code(0);
    assert_eq!(p.read("stages/prod.toml"), reimported, "a third import changes nothing");
    assert_eq!(p.read(".ferry/state/prod.json"), state);
    let plan = run(&["plan", "-s", "prod", "--refresh", "--detailed-exitcode"]);
    plan.expect_code(0);
}

/// The team changes its services by hand: `legacy-web` loses its tag, `billing-worker` gets a
/// new revision with ECS's default deployment (no bake time, alarms or own percentages).
const CHANGE_SERVICES: &str = r#"
import boto3, json, sys
cluster = sys.argv[1]
ecs = boto3.client("ecs")
web = ecs.describe_services(cluster=cluster, services=["legacy-web"])["services"][0]["serviceArn"]
ecs.untag_resource(resourceArn=web, tagKeys=["team"])
td = ecs.describe_task_definition(taskDefinition="billing-worker")["taskDefinition"]
keep = ("family", "networkMode", "requiresCompatibilities", "cpu", "memory", "executionRoleArn", "containerDefinitions")
new = ecs.register_task_definition(**{k: td[k] for k in keep if k in td})["taskDefinition"]["taskDefinitionArn"]
ecs.update_service(cluster=cluster, service="billing-worker", taskDefinition=new,
    deploymentConfiguration={"maximumPercent": 200, "minimumHealthyPercent": 100,
        "deploymentCircuitBreaker": {"enable": True, "rollback": True}})
print(json.dumps(new))
"#;

/// A Load Balanced Web Service as `copilot init` writes it, with the keys teams add.
const API_MANIFEST: &str = r#"# The manifest for the "api" service.
name: api
type: Load Balanced Web Service

http:
  path: '/'
  healthcheck: '/healthz'

image:
  location: 123456789012.dkr.ecr.eu-central-1.amazonaws.com/shop/api@sha256:2b51cdaabcdc9c35b36e998ec81d2ed8507def0e4709a4d5003414e727e67fa9
  port: 8080
  healthcheck:
    command: ["CMD-SHELL", "curl -f http://localhost:8080/healthz || exit 1"]
    interval: 10s
    retries: 2
    timeout: 5s
    start_period: 30s

cpu: 256
memory: 512
count: 1
exec: true

variables:
  LOG_LEVEL: info
  WORKERS: 4

secrets:
  DB_PASSWORD: arn:aws:ssm:eu-central-1:123456789012:parameter/shop/db
  GITHUB_TOKEN: GH_TOKEN_SECRET

sidecars:
  nginx:
    image: nginx:1.25
    port: 80

environments:
  prod:
    count:
      range: 1-10
      cpu_percentage: 70
    variables:
      LOG_LEVEL: warn
"#;

/// A Backend Service built by Copilot from a Dockerfile.
const WORKER_MANIFEST: &str = r#"name: worker
type: Backend Service
image:
  build: worker/Dockerfile
command: python worker.py --queue jobs
cpu: 512
memory: 1024
platform: linux/arm64
storage:
  ephemeral: 40
  readonly_fs: true
deployment:
  rolling: recreate
"#;

/// A Copilot workspace of a load-balanced web service and a backend service in two
/// environments, with overrides, becomes two stage files; what does not map is reported.
#[test]
fn a_copilot_workspace_converts_with_what_does_not_map_reported() {
    let p = TestProject::empty();
    p.write("ferry.toml", "[project]\nname = \"shop\"\n");
    p.write("ws/copilot/.workspace", "application: shop\n");
    p.write("ws/copilot/environments/test/manifest.yml", "name: test\ntype: Environment\n");
    p.write("ws/copilot/environments/prod/manifest.yml", "name: prod\ntype: Environment\n");
    p.write("ws/copilot/api/manifest.yml", API_MANIFEST);
    p.write("ws/copilot/worker/manifest.yml", WORKER_MANIFEST);
    p.write("ws/copilot/nightly/manifest.yml", "name: nightly\ntype: Scheduled Job\nschedule: '@daily'\n");

    let dry = p.run(&["import", "--copilot", "ws", "--region", REGION, "--dry-run"]);
    dry.expect_code(0);
    assert!(!p.path().join("stages").exists(), "a dry run writes nothing");
    let run = p.run(&["import", "--copilot", "ws", "--region", REGION]);
    run.expect_code(0);
    let (test, prod) = (p.read("stages/test.toml"), p.read("stages/prod.toml"));
    assert_eq!(dry.stdout(), format!("# stages/prod.toml\n{prod}# stages/test.toml\n{test}"));
    for expected in [
        "[apps.api]\nimage = \"123456789012.dkr.ecr.eu-central-1.amazonaws.com/shop/api\"\nactive = 1\nscale = 1\n\
         cpu = 256\nmemory = 512\nport = 8080",
        "LOG_LEVEL = \"info\"\nWORKERS = \"4\"",
        "DB_PASSWORD = \"arn:aws:ssm:eu-central-1:123456789012:parameter/shop/db\"",
        "[apps.api.health]\ncommand = [\"CMD-SHELL\", \"curl -f http://localhost:8080/healthz || exit 1\"]\n\
         interval = \"10s\"\ntimeout = \"5s\"\nunhealthy_threshold = 2\ngrace_period = \"30s\"",
        "[apps.worker]\nimage = \"shop/worker\"\ncpu = 512\nmemory = 1024\n\
         command = [\"python\", \"worker.py\", \"--queue\", \"jobs\"]",
    ] {
        assert!(test.contains(expected), "{expected:?} missing from:\n{test}");
    }
    // prod's overrides: the autoscaled count, its own variable.
    assert!(prod.contains("active = 1\nscale = { min = 1, max = 10, cpu_target = 70 }\n"), "{prod}");
    assert!(test.contains("[apps.worker.deploy]\nmax_surge = \"0%\"\nmin_healthy = \"0%\""), "{test}");
    assert!(prod.contains("LOG_LEVEL = \"warn\"\nWORKERS = \"4\""), "{prod}");
    assert!(!test.contains("nightly") && !test.contains("GITHUB_TOKEN"), "{test}");
    let warnings = run.stderr();
    for expected in [
        "warning: copilot service api (environment test): http: ",
        "warning: copilot service api (environment test): sidecars: ",
        "warning: copilot service api (environment test): secrets: 2 secrets: not imported: GITHUB_TOKEN (GH_TOKEN_SECRET: named without an ARN",
        "warning: copilot service worker (environment test): image.build: ",
        "warning: copilot service nightly (environment test): type: Scheduled Job: not an ECS service; not imported",
        "warning: copilot environment prod: cluster: ",
    ] {
        assert!(warnings.contains(expected), "{expected:?} missing from:\n{warnings}");
    }
    for mapped in ["exec = true", "ephemeral_storage = 40", "architecture = \"ARM64\""] {
        assert!(test.contains(mapped), "{mapped:?} missing from:\n{test}");
    }
    assert!(
        warnings
            .contains("warning: copilot service worker (environment test): storage.readonly_fs: true: not imported"),
        "{warnings}"
    );
    for mapped in ["count", "deployment", "exec", "platform", "storage.ephemeral"] {
        assert!(!warnings.contains(&format!("): {mapped}")), "{mapped} is imported:\n{warnings}");
    }
    p.run(&["validate"]).expect_code(0);
    // Twice: nothing changes.
    p.run(&["import", "--copilot", "ws", "--region", REGION]).expect_code(0);
    assert_eq!((p.read("stages/test.toml"), p.read("stages/prod.toml")), (test.clone(), prod.clone()));

    // Bad YAML: named at its line and column; nothing written.
    p.write("ws/copilot/broken/manifest.yml", "name: broken\nimage:\n  port: [8080\n");
    let bad = p.run(&["import", "--copilot", "ws", "--region", REGION]);
    bad.expect_code(1);
    assert!(bad.stderr().contains("copilot/broken/manifest.yml:4:1: "), "{}", bad.stderr());
    assert_eq!((p.read("stages/test.toml"), p.read("stages/prod.toml")), (test, prod));
}
