//! `ferry plan --refresh` and `ferry commit --refresh` on an ECS stage, against the moto
//! emulator: drift made behind ferry's back with boto3 is shown (text, JSON, markdown) and
//! put back, and the result is read back through the API.
//!
//! moto never starts a service's tasks, so a commit could never turn healthy there. The test
//! runs a server of its own with `MOTO_ECS_SERVICE_RUNNING=1` (deployments report COMPLETED),
//! tasks that stay RUNNING until stopped (moto's state manager), and a [`SchedulerStandIn`]: a thread doing the one thing of ECS's scheduler moto lacks —
//! through moto's real API, it keeps one task of the service's current task definition
//! (RunTask with the service's `group`) and stops tasks of other ones. Everything ferry
//! reads (services, deployments, tasks, task definitions) is moto's own answer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use aws_sdk_ecs::types::{AssignPublicIp, AwsVpcConfiguration, DesiredStatus, LaunchType, NetworkConfiguration};
use serde_json::Value;

use ferry::aws;

use crate::ecs_runtime::{python_json, unique, SETUP_CLUSTER, SETUP_REPOSITORY};
use crate::support::moto::Moto;
use crate::support::{Run, TestProject};

/// Who the stand-in's tasks are started by.
const STARTED_BY: &str = "test-scheduler";

/// Points the service at a copy of its task definition registered behind ferry's back
/// (with `DEBUG=1` added when `argv[3]` is `debug`), and sets its desired count to `argv[4]`.
const CHANGE_BEHIND_FERRYS_BACK: &str = r#"
import boto3, json, sys
ecs = boto3.client("ecs")
cluster, service, change, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
s = ecs.describe_services(cluster=cluster, services=[service])["services"][0]
td = ecs.describe_task_definition(taskDefinition=s["taskDefinition"])["taskDefinition"]
keep = ["family", "containerDefinitions", "cpu", "memory", "networkMode", "requiresCompatibilities",
        "executionRoleArn", "taskRoleArn"]
td = {k: v for k, v in td.items() if k in keep}
if change == "debug":
    td["containerDefinitions"][0].setdefault("environment", []).append({"name": "DEBUG", "value": "1"})
arn = ecs.register_task_definition(**td)["taskDefinition"]["taskDefinitionArn"]
ecs.update_service(cluster=cluster, service=service, taskDefinition=arn, desiredCount=count)
print(json.dumps(arn))
"#;

/// Keeps tasks RUNNING until stopped: moto otherwise moves a task one step towards STOPPED
/// on every DescribeTasks, so it would not live through a rollout's polling.
pub(crate) const KEEP_TASKS_RUNNING: &str = r#"
import json, os, urllib.request
body = json.dumps({"model_name": "ecs::task", "transition": {"progression": "manual", "times": 1000000}})
url = os.environ["AWS_ENDPOINT_URL"] + "/moto-api/state-manager/set-transition"
urllib.request.urlopen(urllib.request.Request(url, data=body.encode(), method="POST"))
"#;

/// Keeps one running task of the service's current task definition, like ECS's scheduler
/// would (see the module doc); stopped and joined when dropped.
pub(crate) struct SchedulerStandIn {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<(), String>>>,
}

impl SchedulerStandIn {
    pub(crate) fn start(moto: &Moto, cluster: &str, service: &str, subnets: Vec<String>, groups: Vec<String>) -> Self {
        let client = aws_sdk_ecs::Client::new(&moto.sdk_config());
        let (cluster, service) = (cluster.to_string(), service.to_string());
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let vpc = AwsVpcConfiguration::builder()
                .set_subnets(Some(subnets))
                .set_security_groups(Some(groups))
                .assign_public_ip(AssignPublicIp::Disabled)
                .build()
                .map_err(|e| e.to_string())?;
            let network = NetworkConfiguration::builder().awsvpc_configuration(vpc).build();
            let deadline = Instant::now() + Duration::from_secs(600);
            while !stopping.load(Ordering::SeqCst) && Instant::now() < deadline {
                aws::block_on(schedule(&client, &cluster, &service, &network))?;
                std::thread::sleep(Duration::from_millis(200));
            }
            Ok(())
        });
        SchedulerStandIn { stop, thread: Some(thread) }
    }
}

impl Drop for SchedulerStandIn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(Err(e)) = self.thread.take().map(|t| t.join().expect("the stand-in does not panic")) {
            if !std::thread::panicking() {
                panic!("the scheduler stand-in failed: {e}");
            }
        }
    }
}

/// One round: one live task of the current task definition, none of any other.
async fn schedule(
    ecs: &aws_sdk_ecs::Client,
    cluster: &str,
    service: &str,
    network: &NetworkConfiguration,
) -> Result<(), String> {
    // The whole error: an SDK error displays as "response error" only.
    let err = |e: &dyn std::fmt::Debug| format!("{e:?}");
    let out = ecs.describe_services().cluster(cluster).services(service).send().await.map_err(|e| err(&e))?;
    let Some(s) = out.services().iter().find(|s| s.status() == Some("ACTIVE")) else { return Ok(()) };
    let current = s.task_definition().unwrap_or_default();
    let listed = ecs
        .list_tasks()
        .cluster(cluster)
        .started_by(STARTED_BY)
        .desired_status(DesiredStatus::Running)
        .send()
        .await
        .map_err(|e| err(&e))?;
    let mut have = false;
    if !listed.task_arns().is_empty() {
        let tasks = ecs
            .describe_tasks()
            .cluster(cluster)
            .set_tasks(Some(listed.task_arns().to_vec()))
            .send()
            .await
            .map_err(|e| err(&e))?;
        for t in tasks.tasks().iter().filter(|t| t.last_status() != Some("STOPPED")) {
            if t.task_definition_arn() == Some(current) {
                have = true;
            } else {
                let arn = t.task_arn().unwrap_or_default();
                ecs.stop_task().cluster(cluster).task(arn).reason("replaced").send().await.map_err(|e| err(&e))?;
            }
        }
    }
    if !have {
        ecs.run_task()
            .cluster(cluster)
            .task_definition(current)
            .launch_type(LaunchType::Fargate)
            .started_by(STARTED_BY)
            .group(format!("service:{service}"))
            .network_configuration(network.clone())
            .send()
            .await
            .map_err(|e| err(&e))?;
    }
    Ok(())
}

/// What the service runs, read back through the API.
pub(crate) fn service_now(moto: &Moto, cluster: &str, service: &str) -> (String, i32) {
    let client = aws_sdk_ecs::Client::new(&moto.sdk_config());
    let out = aws::block_on(client.describe_services().cluster(cluster).services(service).send()).expect("describe");
    let s = &out.services()[0];
    (s.task_definition().unwrap_or_default().to_string(), s.desired_count())
}

#[test]
fn plan_refresh_shows_drift_made_behind_ferrys_back_and_commit_puts_it_back() {
    let moto = Moto::start(&[("MOTO_ECS_SERVICE_RUNNING", "1")]);
    python_json(&moto, KEEP_TASKS_RUNNING, &[]);
    let cluster = unique("cluster-");
    let stage = unique("s");
    let service = format!("{stage}-api");
    let net = python_json(&moto, SETUP_CLUSTER, &[&cluster]);
    let strings =
        |v: &Value| -> Vec<String> { v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect() };
    let (subnets, groups) = (strings(&net["subnets"]), strings(&net["security_groups"]));
    let repo = python_json(&moto, SETUP_REPOSITORY, &[&unique("shop/api-")]);
    let (uri, digest) = (repo["uri"].as_str().unwrap(), repo["digest"].as_str().unwrap());
    let p = TestProject::empty();
    p.write("ferry.toml", "[project]\nname = \"shop\"\n");
    p.write(
        &format!("stages/{stage}.toml"),
        &format!(
            "{}\n[apps.api]\nimage = \"{uri}\"\nactive = 1\nscale = 1\ncpu = 256\n\
             memory = 512\nport = 8080\n\n[apps.api.env]\nMODE = \"production\"\n\n[apps.api.releases]\n\
             1 = \"{digest}\"\n\n[apps.api.deploy]\ntimeout = \"90s\"\n",
            crate::support::moto::ecs_runtime_section(&cluster, &net),
        ),
    );
    let run = |args: &[&str]| {
        let mut cmd = p.ferry();
        moto.configure(&mut cmd);
        Run(cmd.args(args).arg("-s").arg(&stage).output().expect("run ferry"))
    };
    let _scheduler = SchedulerStandIn::start(&moto, &cluster, &service, subnets.clone(), groups.clone());

    run(&["commit", "--yes", "--progress", "plain"]).expect_code(0);
    let (committed, count) = service_now(&moto, &cluster, &service);
    assert_eq!(count, 1);
    let fresh = run(&["plan", "--refresh", "--detailed-exitcode"]);
    fresh.expect_code(0);
    assert!(fresh.stdout().contains("matches recorded state and what runs"), "{}", fresh.stdout());

    // An equivalent task definition registered by hand from moto's own description (every
    // server-side default filled in) is not drift.
    let copy = python_json(&moto, CHANGE_BEHIND_FERRYS_BACK, &[&cluster, &service, "copy", "1"]);
    assert_ne!(copy.as_str(), Some(committed.as_str()));
    run(&["plan", "--refresh", "--detailed-exitcode"]).expect_code(0);

    // A changed task definition and desired count: drift, in every format.
    python_json(&moto, CHANGE_BEHIND_FERRYS_BACK, &[&cluster, &service, "debug", "3"]);
    run(&["plan", "--detailed-exitcode"]).expect_code(0);
    let drift = run(&["plan", "--refresh", "--detailed-exitcode"]);
    drift.expect_code(2);
    let text = drift.stdout();
    for expected in [
        "Drift: the runtime no longer runs what was recorded",
        "api: desired count 1 → 3; task definition: 1 field differs",
        "container.api.environment.DEBUG: (none) → 1",
        "± api: Revert drift: desired count 1 → 3; task definition: 1 field differs",
    ] {
        assert!(text.contains(expected), "{expected:?} missing from:\n{text}");
    }
    let json = run(&["plan", "--refresh", "--json"]);
    let doc: Value = serde_json::from_str(&json.expect_code(0).stdout()).expect("JSON plan");
    let stage_doc = &doc["stages"][0];
    assert_eq!(stage_doc["refreshed"], true);
    let d = &stage_doc["drift"][0];
    assert_eq!((d["app"].as_str(), d["missing"].as_bool()), (Some("api"), Some(false)));
    assert_eq!(d["desired"], serde_json::json!({"recorded": 1, "live": 3}));
    assert_eq!(
        d["changes"],
        serde_json::json!([{"field": "container.api.environment.DEBUG", "recorded": "", "live": "1"}])
    );
    let ops: Vec<&str> =
        stage_doc["operations"].as_array().unwrap().iter().map(|o| o["id"].as_str().unwrap()).collect();
    assert_eq!(ops, ["api/verify", "api/register", "api/deploy"]);
    let markdown = run(&["plan", "--refresh", "--markdown"]).stdout();
    assert!(markdown.contains("- `api`: desired count 1 → 3; task definition: 1 field differs"), "{markdown}");

    // Put back: the recorded task definition (reused, not registered again) and count.
    run(&["commit", "--refresh", "--yes", "--progress", "plain"]).expect_code(0);
    assert_eq!(service_now(&moto, &cluster, &service), (committed.clone(), 1));
    run(&["plan", "--refresh", "--detailed-exitcode"]).expect_code(0);
    let state: Value = serde_json::from_str(&p.read(&format!(".ferry/state/{stage}.json"))).unwrap();
    let last = state["apps"]["api"]["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["status"], "succeeded", "{last:#}");
    assert!(last["description"].as_str().unwrap().starts_with("Revert drift: desired count 1 → 3"), "{last:#}");

    // The count alone: planned back as a scale, through a saved plan.
    let client = aws_sdk_ecs::Client::new(&moto.sdk_config());
    aws::block_on(client.update_service().cluster(&cluster).service(&service).desired_count(2).send()).unwrap();
    let scale = run(&["plan", "--refresh", "--detailed-exitcode", "-o", "drift.plan"]);
    scale.expect_code(2);
    assert!(scale.stdout().contains("~ api: Revert drift: desired count 2 → 1"), "{}", scale.stdout());
    run(&["commit", "drift.plan", "--progress", "plain"]).expect_code(0);
    assert_eq!(service_now(&moto, &cluster, &service), (committed, 1));
}

/// The service's settings ferry manages, read back with boto3: load balancers, grace period,
/// capacity provider strategy, Exec, tag source, every tag of the service
/// (ListTagsForResource), and the tags of its task definition.
const READ_SERVICE_SETTINGS: &str = r#"
import boto3, json, sys
ecs = boto3.client("ecs")
s = ecs.describe_services(cluster=sys.argv[1], services=[sys.argv[2]])["services"][0]
tags = ecs.list_tags_for_resource(resourceArn=s["serviceArn"])["tags"]
td_tags = ecs.describe_task_definition(taskDefinition=s["taskDefinition"], include=["TAGS"]).get("tags", [])
print(json.dumps({
    "loadBalancers": sorted([lb["targetGroupArn"], lb["containerName"], lb["containerPort"]] for lb in s.get("loadBalancers", [])),
    "grace": s.get("healthCheckGracePeriodSeconds"),
    "capacityProviderStrategy": sorted([c["capacityProvider"], c.get("weight", 0), c.get("base", 0)]
        for c in s.get("capacityProviderStrategy") or []),
    "exec": s.get("enableExecuteCommand"),
    "propagateTags": s.get("propagateTags"),
    "tags": {t["key"]: t["value"] for t in tags},
    "taskDefinitionTags": sorted(t["key"] for t in td_tags),
}))
"#;

/// Changes the service's own settings behind ferry's back: another grace period, a second
/// target group (`argv[3]`), another capacity provider strategy, Exec off, one tag changed,
/// one added, one removed.
const CHANGE_SERVICE_BEHIND_FERRYS_BACK: &str = r#"
import boto3, sys
ecs = boto3.client("ecs")
cluster, service, green = sys.argv[1], sys.argv[2], sys.argv[3]
s = ecs.describe_services(cluster=cluster, services=[service])["services"][0]
ecs.update_service(cluster=cluster, service=service, healthCheckGracePeriodSeconds=120,
    loadBalancers=s["loadBalancers"] + [{"targetGroupArn": green, "containerName": "api", "containerPort": 8080}],
    capacityProviderStrategy=[{"capacityProvider": "FARGATE_SPOT", "weight": 1, "base": 0}],
    enableExecuteCommand=False)
ecs.tag_resource(resourceArn=s["serviceArn"], tags=[{"key": "team", "value": "platform"}, {"key": "owner", "value": "ops"}])
ecs.untag_resource(resourceArn=s["serviceArn"], tagKeys=["tier"])
"#;

/// The service-level settings (load balancers, grace period, capacity providers, Exec, tags)
/// on the ECS emulator: a fresh `plan --refresh` after a commit shows nothing; the same
/// settings changed with boto3 show as drift, field by field, and `commit --refresh` puts
/// them back; a tag removed from the stage file is removed from the service, ferry's own
/// tags stay. Everything read back with boto3.
#[test]
fn service_settings_drift_is_shown_and_put_back_and_removed_tags_leave_the_service() {
    let moto = Moto::start_emulator(0.5);
    let cluster = unique("cluster-");
    let stage = unique("s");
    let service = format!("{stage}-api");
    let net = python_json(&moto, SETUP_CLUSTER, &[&cluster]);
    let repo = python_json(&moto, SETUP_REPOSITORY, &[&unique("shop/api-")]);
    let lb = python_json(&moto, crate::ecs_deploy::SETUP_LOAD_BALANCER, &[&unique("lb")]);
    let (blue, green) = (lb["blue"].as_str().unwrap(), lb["green"].as_str().unwrap());
    let p = TestProject::empty();
    p.write("ferry.toml", "[project]\nname = \"shop\"\n");
    let file = format!("stages/{stage}.toml");
    let write = |tags: &str| {
        p.write(
            &file,
            &format!(
                r#"{runtime}
[apps.api]
image = "{uri}"
active = 1
scale = 1
port = 8080
target_group = "{blue}"
exec = true
capacity_providers = [{{ provider = "FARGATE", weight = 1, base = 1 }}, {{ provider = "FARGATE_SPOT", weight = 3 }}]
{tags}

[apps.api.releases]
1 = "{digest}"

[apps.api.deploy]
timeout = "30s"
health_check_grace_period = "45s"
"#,
                runtime = crate::support::moto::ecs_runtime_section(&cluster, &net),
                uri = repo["uri"].as_str().unwrap(),
                digest = repo["digest"].as_str().unwrap(),
            ),
        )
    };
    let run = |args: &[&str]| {
        let mut cmd = p.ferry();
        moto.configure(&mut cmd);
        Run(cmd.args(args).arg("-s").arg(&stage).output().expect("run ferry"))
    };
    let read = || python_json(&moto, READ_SERVICE_SETTINGS, &[&cluster, &service]);
    let ferrys = |app_tags: Value| {
        let mut tags = serde_json::json!({ "ferry:stage": stage, "ferry:app": "api" });
        tags.as_object_mut().unwrap().extend(app_tags.as_object().unwrap().clone());
        tags
    };
    let as_committed = |app_tags: Value| {
        serde_json::json!({
            "loadBalancers": [[blue, "api", 8080]],
            "grace": 45,
            "capacityProviderStrategy": [["FARGATE", 1, 1], ["FARGATE_SPOT", 3, 0]],
            "exec": true,
            "propagateTags": "SERVICE",
            "tags": ferrys(app_tags),
            "taskDefinitionTags": [],
        })
    };
    // The task definition's tags: ferry's own and the app's, checked apart from the rest.
    let without_td_tags = |mut v: Value| -> (Value, Vec<String>) {
        let td: Vec<String> = serde_json::from_value(v["taskDefinitionTags"].take()).unwrap();
        v["taskDefinitionTags"] = serde_json::json!([]);
        (v, td)
    };

    write("tags = { team = \"shop\", tier = \"web\" }");
    run(&["commit", "--yes", "--progress", "plain"]).expect_code(0);
    let (now, td_tags) = without_td_tags(read());
    assert_eq!(now, as_committed(serde_json::json!({ "team": "shop", "tier": "web" })));
    assert!(td_tags.iter().any(|t| t == "ferry:spec"), "{td_tags:?}");
    let fresh = run(&["plan", "--refresh", "--detailed-exitcode"]);
    fresh.expect_code(0);
    assert!(fresh.stdout().contains("matches recorded state and what runs"), "{}", fresh.stdout());

    // Changed behind ferry's back: drift, field by field, with the recorded value first.
    python_json(&moto, CHANGE_SERVICE_BEHIND_FERRYS_BACK, &[&cluster, &service, green]);
    run(&["plan", "--detailed-exitcode"]).expect_code(0);
    let drift = run(&["plan", "--refresh", "--detailed-exitcode"]);
    drift.expect_code(2);
    let text = drift.stdout();
    for expected in [
        "api: service: 7 settings differ".to_string(),
        "service.healthCheckGracePeriodSeconds: 45 → 120".into(),
        format!("service.loadBalancers: {blue} (api:8080) → {blue} (api:8080), {green} (api:8080)"),
        "service.capacityProviderStrategy: FARGATE weight 1 base 1, FARGATE_SPOT weight 3 base 0 → FARGATE_SPOT weight 1 base 0".into(),
        "service.enableExecuteCommand: true → false".into(),
        "service.tags.team: shop → platform".into(),
        "service.tags.owner: (none) → ops".into(),
        "service.tags.tier: web → (none)".into(),
    ] {
        assert!(text.contains(&expected), "{expected:?} missing from:\n{text}");
    }
    let json: Value = serde_json::from_str(&run(&["plan", "--refresh", "--json"]).expect_code(0).stdout()).unwrap();
    let fields: Vec<&str> = json["stages"][0]["drift"][0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "service.capacityProviderStrategy",
            "service.enableExecuteCommand",
            "service.healthCheckGracePeriodSeconds",
            "service.loadBalancers",
            "service.tags.owner",
            "service.tags.team",
            "service.tags.tier",
        ]
    );

    // Put back: every setting as committed, the tag added outside ferry gone, ferry's kept.
    run(&["commit", "--refresh", "--yes", "--progress", "plain"]).expect_code(0);
    let (now, _) = without_td_tags(read());
    assert_eq!(now, as_committed(serde_json::json!({ "team": "shop", "tier": "web" })));
    run(&["plan", "--refresh", "--detailed-exitcode"]).expect_code(0);

    // A tag removed from the file leaves the service; the last one too. ferry's own stay,
    // on the service and on the task definition.
    write("tags = { team = \"shop\" }");
    run(&["commit", "--yes", "--progress", "plain"]).expect_code(0);
    let (now, td_tags) = without_td_tags(read());
    assert_eq!(now, as_committed(serde_json::json!({ "team": "shop" })));
    assert!(td_tags.iter().any(|t| t == "ferry:spec") && !td_tags.iter().any(|t| t == "tier"), "{td_tags:?}");
    write("");
    run(&["commit", "--yes", "--progress", "plain"]).expect_code(0);
    let (now, td_tags) = without_td_tags(read());
    assert_eq!(now, as_committed(serde_json::json!({})));
    assert!(td_tags.iter().any(|t| t == "ferry:spec") && !td_tags.iter().any(|t| t == "team"), "{td_tags:?}");
    run(&["plan", "--refresh", "--detailed-exitcode"]).expect_code(0);
}
