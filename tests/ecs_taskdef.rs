//! ECS services as teams run them, against the moto emulator: autoscaled `scale` (an
//! Application Auto Scaling target and target-tracking policy, read back with boto3), and
//! what a deploy and `plan --refresh` make of a count the autoscaler chose; task
//! definitions with sidecars, the app's own roles and log group, ARM64, more ephemeral
//! storage, a capacity provider strategy, ECS Exec and tags, read back with boto3.
//!
//! The server runs with `MOTO_ECS_SERVICE_RUNNING=1` and the scheduler stand-in of
//! [`crate::ecs_drift`], so commits turn healthy; everything read back is moto's answer.

use serde_json::Value;

use ferry::aws;

use crate::ecs_drift::{service_now, SchedulerStandIn, KEEP_TASKS_RUNNING};
use crate::ecs_runtime::{python_json, unique, SETUP_CLUSTER, SETUP_REPOSITORY};
use crate::support::moto::{Moto, REGION};
use crate::support::{Run, TestProject};

/// The service's scalable target and policies, as Application Auto Scaling reports them.
const READ_AUTOSCALING: &str = r#"
import boto3, json, sys
aas = boto3.client("application-autoscaling")
rid = "service/%s/%s" % (sys.argv[1], sys.argv[2])
targets = aas.describe_scalable_targets(ServiceNamespace="ecs", ResourceIds=[rid])["ScalableTargets"]
policies = aas.describe_scaling_policies(ServiceNamespace="ecs", ResourceId=rid)["ScalingPolicies"]
print(json.dumps({
    "targets": [[t["ScalableDimension"], t["MinCapacity"], t["MaxCapacity"]] for t in targets],
    "policies": sorted([p["PolicyName"], p["PolicyType"],
        p["TargetTrackingScalingPolicyConfiguration"]["PredefinedMetricSpecification"]["PredefinedMetricType"],
        p["TargetTrackingScalingPolicyConfiguration"]["TargetValue"]] for p in policies),
}))
"#;

/// The service's and its task definition's fields that `[apps.api]` sets, and whether the
/// log group `argv[3]` exists.
const READ_TASK_DEFINITION: &str = r#"
import boto3, json, sys
ecs, logs = boto3.client("ecs"), boto3.client("logs")
s = ecs.describe_services(cluster=sys.argv[1], services=[sys.argv[2]], include=["TAGS"])["services"][0]
out = ecs.describe_task_definition(taskDefinition=s["taskDefinition"], include=["TAGS"])
td = out["taskDefinition"]
containers = {c["name"]: c for c in td["containerDefinitions"]}
api, envoy = containers["api"], containers["envoy"]
groups = logs.describe_log_groups(logGroupNamePrefix=sys.argv[3])["logGroups"]
print(json.dumps({
    "service": {
        "capacityProviderStrategy": s.get("capacityProviderStrategy"),
        "enableExecuteCommand": s.get("enableExecuteCommand"),
        "propagateTags": s.get("propagateTags"),
        "team": [t["value"] for t in s.get("tags", []) if t["key"] == "team"],
    },
    "taskRoleArn": td.get("taskRoleArn"),
    "executionRoleArn": td.get("executionRoleArn"),
    "runtimePlatform": td.get("runtimePlatform"),
    "ephemeralStorage": td.get("ephemeralStorage"),
    "containers": sorted(containers),
    "api": {
        "dependsOn": api.get("dependsOn"),
        "log": api["logConfiguration"]["options"],
    },
    "envoy": {
        "image": envoy["image"],
        "essential": envoy["essential"],
        "environment": envoy.get("environment"),
        "secrets": envoy.get("secrets"),
        "ports": [p["containerPort"] for p in envoy.get("portMappings", [])],
        "healthCheck": envoy.get("healthCheck", {}).get("command"),
        "dependsOn": envoy.get("dependsOn"),
    },
    "team": [t["value"] for t in out.get("tags", []) if t["key"] == "team"],
    "logGroups": [g["logGroupName"] for g in groups],
}))
"#;

/// An ECS stage with one app `api`; `scale` and `extra` (more keys of the app) as given.
struct Stage {
    /// First, so that it stops before the server does (fields drop in order).
    _scheduler: SchedulerStandIn,
    moto: Moto,
    project: TestProject,
    stage: String,
    cluster: String,
    service: String,
    head: String,
    tail: String,
}

impl Stage {
    fn new() -> Stage {
        let moto = Moto::start(&[("MOTO_ECS_SERVICE_RUNNING", "1")]);
        python_json(&moto, KEEP_TASKS_RUNNING, &[]);
        let cluster = unique("cluster-");
        let stage = unique("s");
        let service = format!("{stage}-api");
        let net = python_json(&moto, SETUP_CLUSTER, &[&cluster]);
        let strings = |v: &Value| -> Vec<String> {
            v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
        };
        let (subnets, groups) = (strings(&net["subnets"]), strings(&net["security_groups"]));
        let repo = python_json(&moto, SETUP_REPOSITORY, &[&unique("shop/api-")]);
        let (uri, digest) = (repo["uri"].as_str().unwrap(), repo["digest"].as_str().unwrap());
        let project = TestProject::empty();
        project.write("ferry.toml", "[project]\nname = \"shop\"\n");
        let head = format!(
            "[runtime]\nkind = \"ecs\"\nregion = \"{REGION}\"\ncluster = \"{cluster}\"\nsubnets = [{}]\n\
             security_groups = [{}]\n\n[apps.api]\nimage = \"{uri}\"\nactive = 1\ncpu = 256\nmemory = 512\nport = 8080\n",
            crate::support::toml_strings(&subnets),
            crate::support::toml_strings(&groups)
        );
        let tail = format!("\n[apps.api.releases]\n1 = \"{digest}\"\n\n[apps.api.deploy]\ntimeout = \"90s\"\n");
        let scheduler = SchedulerStandIn::start(&moto, &cluster, &service, subnets, groups);
        Stage { _scheduler: scheduler, moto, project, stage, cluster, service, head, tail }
    }

    /// Writes the stage file with `app` (keys of `[apps.api]`) and `env` (its env table).
    fn write(&self, app: &str, env: &str) {
        let body = format!("{}{app}\n[apps.api.env]\n{env}\n{}", self.head, self.tail);
        self.project.write(&format!("stages/{}.toml", self.stage), &body);
    }

    /// Writes the stage file with `app` (keys of `[apps.api]`) and `tables` (tables under
    /// it, after the env table).
    fn write_tables(&self, app: &str, tables: &str) {
        let body = format!("{}{app}\n[apps.api.env]\nMODE = \"a\"\n\n{tables}\n{}", self.head, self.tail);
        self.project.write(&format!("stages/{}.toml", self.stage), &body);
    }

    fn run(&self, args: &[&str]) -> Run {
        let mut cmd = self.project.ferry();
        self.moto.configure(&mut cmd);
        Run(cmd.args(args).arg("-s").arg(&self.stage).output().expect("run ferry"))
    }

    fn autoscaling(&self) -> Value {
        python_json(&self.moto, READ_AUTOSCALING, &[&self.cluster, &self.service])
    }

    fn set_desired(&self, n: i32) {
        let client = aws_sdk_ecs::Client::new(&self.moto.sdk_config());
        aws::block_on(client.update_service().cluster(&self.cluster).service(&self.service).desired_count(n).send())
            .expect("update the desired count");
    }
}

#[test]
fn autoscaled_scale_registers_a_target_and_policy_and_deploys_keep_the_autoscalers_count() {
    let s = Stage::new();
    s.write("scale = { min = 1, max = 4, cpu_target = 60 }", "MODE = \"a\"");
    let plan = s.run(&["plan"]);
    let text = plan.expect_code(0).stdout();
    assert!(text.contains("min = 1") && text.contains("max = 4") && text.contains("cpu_target = 60"), "{text}");

    s.run(&["commit", "--yes", "--progress", "plain"]).expect_code(0);
    let (_, count) = service_now(&s.moto, &s.cluster, &s.service);
    assert_eq!(count, 1, "a new service starts at min");
    assert_eq!(
        s.autoscaling(),
        serde_json::json!({
            "targets": [["ecs:service:DesiredCount", 1, 4]],
            "policies": [["ferry-cpu", "TargetTrackingScaling", "ECSServiceAverageCPUUtilization", 60.0]],
        })
    );
    s.run(&["plan", "--refresh", "--detailed-exitcode"]).expect_code(0);

    // The autoscaler scales out: a count inside min..max is no drift, one outside is.
    s.set_desired(3);
    let fresh = s.run(&["plan", "--refresh", "--detailed-exitcode"]);
    assert!(fresh.expect_code(0).stdout().contains("matches recorded state and what runs"), "{}", fresh.stdout());
    s.set_desired(6);
    let drift = s.run(&["plan", "--refresh", "--detailed-exitcode"]);
    assert!(drift.expect_code(2).stdout().contains("desired count 1 → 6"), "{}", drift.stdout());
    s.set_desired(3);

    // A config change with a new range and a memory target (min stays 1: the stand-in
    // scheduler runs one task): the deploy keeps the 3 tasks
    // the autoscaler chose; the range and the policies follow the file.
    s.write("scale = { min = 1, max = 5, memory_target = 75 }", "MODE = \"b\"");
    let plan = s.run(&["plan"]).expect_code(0).stdout();
    assert!(plan.contains("autoscaling"), "{plan}");
    s.run(&["commit", "--yes", "--progress", "plain"]).expect_code(0);
    let (_, count) = service_now(&s.moto, &s.cluster, &s.service);
    assert_eq!(count, 3, "the deploy kept the autoscaler's count");
    assert_eq!(
        s.autoscaling(),
        serde_json::json!({
            "targets": [["ecs:service:DesiredCount", 1, 5]],
            "policies": [["ferry-memory", "TargetTrackingScaling", "ECSServiceAverageMemoryUtilization", 75.0]],
        })
    );

    // Back to a fixed count: the target (and its policies) are deregistered, the count is
    // the file's again.
    s.write("scale = 1", "MODE = \"b\"");
    s.run(&["commit", "--yes", "--progress", "plain"]).expect_code(0);
    assert_eq!(service_now(&s.moto, &s.cluster, &s.service).1, 1);
    assert_eq!(s.autoscaling(), serde_json::json!({"targets": [], "policies": []}));
    s.run(&["plan", "--refresh", "--detailed-exitcode"]).expect_code(0);
}

/// An autoscaled app removed from the stage: its scalable target and ferry's policy go with
/// its service (read back with boto3), so a later service of the same name is not scaled.
#[test]
fn removing_an_autoscaled_app_deregisters_its_scalable_target() {
    let s = Stage::new();
    s.write("scale = { min = 1, max = 3, cpu_target = 50 }", "MODE = \"a\"");
    s.run(&["commit", "--yes", "--progress", "plain"]).expect_code(0);
    assert_eq!(s.autoscaling()["targets"], serde_json::json!([["ecs:service:DesiredCount", 1, 3]]));

    let runtime_only = s.head.split("\n[apps.api]").next().unwrap().to_string();
    s.project.write(&format!("stages/{}.toml", s.stage), &runtime_only);
    let removed = s.run(&["commit", "--yes", "--allow-remove", "--progress", "plain"]);
    removed.expect_code(0);
    assert_eq!(s.autoscaling(), serde_json::json!({ "targets": [], "policies": [] }));
}

#[test]
fn a_task_definition_as_teams_write_it_is_registered_read_back_and_shows_no_drift() {
    let s = Stage::new();
    let group = format!("/shop/{}", s.stage);
    let app = r#"task_role = "arn:aws:iam::123456789012:role/api-task"
execution_role = "arn:aws:iam::123456789012:role/api-execution"
architecture = "ARM64"
ephemeral_storage = 40
exec = true
propagate_tags = "service"
tags = { team = "shop" }
capacity_providers = [{ provider = "FARGATE", weight = 1, base = 1 }, { provider = "FARGATE_SPOT", weight = 3 }]
container_depends_on = { envoy = "HEALTHY" }"#;
    let tables = format!(
        r#"[apps.api.logging]
group = "{group}"
stream_prefix = "api"

[apps.api.sidecars.envoy]
image = "public.ecr.aws/appmesh/aws-appmesh-envoy:v1.29.6.0-prod"
essential = true
port = 9901
health_command = ["CMD-SHELL", "curl -s http://localhost:9901/ready"]
env = {{ ENVOY_LOG_LEVEL = "info" }}
secrets = {{ TOKEN = "arn:aws:ssm:{REGION}:123456789012:parameter/envoy-token" }}
"#
    );
    s.write_tables(app, &tables);
    s.run(&["validate"]).expect_code(0);
    let plan = s.run(&["plan"]).expect_code(0).stdout();
    for line in [
        "architecture = ARM64",
        "ephemeral_storage = 40 GiB",
        "capacity_provider = FARGATE_SPOT weight 3 base 0",
        "exec = true",
        "tag.team = shop",
        "sidecar.envoy.image = public.ecr.aws/appmesh/aws-appmesh-envoy:v1.29.6.0-prod",
    ] {
        assert!(plan.contains(line), "{line} missing from the plan: {plan}");
    }

    s.run(&["commit", "--yes", "--progress", "plain"]).expect_code(0);
    let read = python_json(&s.moto, READ_TASK_DEFINITION, &[&s.cluster, &s.service, &group]);
    assert_eq!(
        read,
        serde_json::json!({
            "service": {
                "capacityProviderStrategy": [
                    {"capacityProvider": "FARGATE", "weight": 1, "base": 1},
                    {"capacityProvider": "FARGATE_SPOT", "weight": 3, "base": 0},
                ],
                "enableExecuteCommand": true,
                "propagateTags": "SERVICE",
                "team": ["shop"],
            },
            "taskRoleArn": "arn:aws:iam::123456789012:role/api-task",
            "executionRoleArn": "arn:aws:iam::123456789012:role/api-execution",
            "runtimePlatform": {"cpuArchitecture": "ARM64", "operatingSystemFamily": "LINUX"},
            "ephemeralStorage": {"sizeInGiB": 40},
            "containers": ["api", "envoy"],
            "api": {
                "dependsOn": [{"containerName": "envoy", "condition": "HEALTHY"}],
                "log": {"awslogs-group": group, "awslogs-region": REGION, "awslogs-stream-prefix": "api"},
            },
            "envoy": {
                "image": "public.ecr.aws/appmesh/aws-appmesh-envoy:v1.29.6.0-prod",
                "essential": true,
                "environment": [{"name": "ENVOY_LOG_LEVEL", "value": "info"}],
                "secrets": [{"name": "TOKEN", "valueFrom": format!("arn:aws:ssm:{REGION}:123456789012:parameter/envoy-token")}],
                "ports": [9901],
                "healthCheck": ["CMD-SHELL", "curl -s http://localhost:9901/ready"],
                "dependsOn": null,
            },
            "team": ["shop"],
            "logGroups": [group],
        })
    );
    let fresh = s.run(&["plan", "--refresh", "--detailed-exitcode"]);
    assert!(fresh.expect_code(0).stdout().contains("matches recorded state and what runs"), "{}", fresh.stdout());

    // A second commit of the same file reuses the task definition; a changed sidecar
    // shows in the plan as the one changed line.
    s.run(&["commit", "--yes", "--progress", "plain"]).expect_code(0);
    s.write_tables(app, &tables.replace("essential = true", "essential = false"));
    let plan = s.run(&["plan"]).expect_code(0).stdout();
    assert!(plan.contains("sidecar.envoy.essential = false"), "{plan}");
}

/// Sidecar images in ECR must exist, by digest or by tag: a missing one is a located error at
/// `plan --refresh` and `commit` naming the app, the sidecar and the image, and nothing is
/// deployed; a plain `plan` asks no AWS. Images of other registries are ECS's to pull.
#[test]
fn a_sidecar_image_not_in_ecr_is_refused_at_plan_refresh_and_commit() {
    let s = Stage::new();
    let name = unique("shop/agent-");
    let repo = python_json(&s.moto, SETUP_REPOSITORY, &[&name]);
    let (uri, digest) = (repo["uri"].as_str().unwrap(), repo["digest"].as_str().unwrap());
    let absent = format!("sha256:{}", "0".repeat(64));
    let sidecars = |agent: &str| {
        format!(
            "[apps.api.sidecars.agent]\nimage = \"{agent}\"\n\n[apps.api.sidecars.envoy]\n\
             image = \"public.ecr.aws/appmesh/aws-appmesh-envoy:v1.29.6.0-prod\"\n"
        )
    };
    let file = format!("stages/{}.toml", s.stage);
    for (agent, what) in [
        (format!("{uri}@{absent}"), format!("has no image {absent}")),
        (format!("{uri}:nope"), "has no tag `nope`".into()),
    ] {
        s.write_tables("", &sidecars(&agent));
        s.run(&["plan"]).expect_code(0);
        for args in [&["plan", "--refresh"][..], &["commit", "--yes", "--progress", "plain"]] {
            let refused = s.run(args);
            let err = refused.expect_code(1).stderr();
            assert!(
                err.contains(&format!("app `api`, sidecar `agent`: image `{agent}` is not in ECR"))
                    && err.contains(what.as_str())
                    && err.contains(&format!("{file}:")),
                "{args:?}: {err}"
            );
            assert!(!err.contains("envoy"), "only the ECR image is checked: {err}");
        }
    }
    let services = python_json(
        &s.moto,
        "import boto3, json, sys\nprint(json.dumps(len(boto3.client('ecs').list_services(cluster=sys.argv[1])['serviceArns'])))",
        &[&s.cluster],
    );
    assert_eq!(services, 0, "nothing deployed");

    // By tag and by digest, both there: the commit goes ahead.
    s.write_tables("", &sidecars(&format!("{uri}:prod")));
    s.run(&["plan", "--refresh"]).expect_code(0);
    s.write_tables("", &sidecars(&format!("{uri}@{digest}")));
    s.run(&["commit", "--yes", "--progress", "plain"]).expect_code(0);
}

/// `ferry logs` of an app with its own awslogs group and stream prefix reads them, not the
/// stage's group: lines written there with boto3 come back, by app and by task, and a line
/// in the stage's default group under `ferry/api/` does not.
#[test]
fn ferry_logs_reads_the_apps_own_log_group_and_stream_prefix() {
    let s = Stage::new();
    let group = format!("/shop/{}", s.stage);
    s.write_tables("", &format!("[apps.api.logging]\ngroup = \"{group}\"\nstream_prefix = \"svc\"\n"));
    s.run(&["commit", "--yes", "--progress", "plain"]).expect_code(0);
    let put = r#"
import boto3, sys, time
logs = boto3.client("logs")
group, stream, text = sys.argv[1:4]
try:
    logs.create_log_group(logGroupName=group)
except logs.exceptions.ResourceAlreadyExistsException:
    pass
logs.create_log_stream(logGroupName=group, logStreamName=stream)
logs.put_log_events(logGroupName=group, logStreamName=stream,
    logEvents=[{"timestamp": int(time.time() * 1000), "message": text}])
print("null")
"#;
    python_json(&s.moto, put, &[&group, "svc/api/task1", "own group, task 1"]);
    python_json(&s.moto, put, &[&group, "svc/api/task2", "own group, task 2"]);
    python_json(&s.moto, put, &[&group, "ferry/api/task3", "own group, another prefix"]);
    python_json(&s.moto, put, &[&format!("/ferry/{}", s.stage), "ferry/api/task4", "stage group"]);

    let all = s.run(&["logs", "api"]).expect_code(0).stdout();
    assert!(all.contains("own group, task 1") && all.contains("own group, task 2"), "{all}");
    assert!(!all.contains("another prefix") && !all.contains("stage group"), "{all}");
    let one = s.run(&["logs", "api", "--task", "task2"]).expect_code(0).stdout();
    assert!(one.contains("own group, task 2") && !one.contains("task 1"), "{one}");
}
