//! `ferry preview` of an ECS template stage end to end: the `ferry` binary against the ECS
//! emulator of the test harness (moto with a service scheduler that runs tasks and registers
//! them in their target groups), the services, target groups and listener rules read back
//! with boto3.

use serde_json::Value;

use crate::ecs_runtime::{python_json, unique, SETUP_CLUSTER, SETUP_REPOSITORY};
use crate::support::moto::Moto;
use crate::support::{Run, TestProject};

/// The template's target group behind a load balancer with an HTTP listener (default action:
/// that group) in the default VPC; prints their ARNs.
const SETUP_LOAD_BALANCER: &str = r#"
import boto3, json, sys
ec2, elb = boto3.client("ec2"), boto3.client("elbv2")
vpc = [v for v in ec2.describe_vpcs()["Vpcs"] if v["IsDefault"]][0]["VpcId"]
subnets = sorted(s["SubnetId"] for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"])[:2]
name = sys.argv[1]
tg = elb.create_target_group(Name=name + "-dev", Protocol="HTTP", Port=8080, VpcId=vpc, TargetType="ip",
    HealthCheckPath="/up")["TargetGroups"][0]["TargetGroupArn"]
lb = elb.create_load_balancer(Name=name, Subnets=subnets)["LoadBalancers"][0]["LoadBalancerArn"]
listener = elb.create_listener(LoadBalancerArn=lb, Protocol="HTTP", Port=80,
    DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}])["Listeners"][0]["ListenerArn"]
print(json.dumps({"template_group": tg, "listener": listener}))
"#;

/// What exists of a preview: its services (by name: status, desired count, target groups),
/// the target groups named in argv[4:] (name → ARN, health check path), and the listener's
/// host-header rules (host → target group).
const READ_PREVIEW: &str = r#"
import boto3, json, sys
ecs, elb = boto3.client("ecs"), boto3.client("elbv2")
cluster, listener, services, groups = sys.argv[1], sys.argv[2], sys.argv[3].split(","), sys.argv[4:]
found = ecs.describe_services(cluster=cluster, services=services)["services"]
out = {"services": {s["serviceName"]: {"status": s["status"], "desired": s["desiredCount"],
        "target_groups": [l["targetGroupArn"] for l in s.get("loadBalancers", [])]} for s in found},
       "target_groups": {}, "rules": {}}
for name in groups:
    try:
        tg = elb.describe_target_groups(Names=[name])["TargetGroups"][0]
        out["target_groups"][name] = {"arn": tg["TargetGroupArn"], "path": tg.get("HealthCheckPath")}
    except elb.exceptions.TargetGroupNotFoundException:
        pass
for r in elb.describe_rules(ListenerArn=listener)["Rules"]:
    for c in r["Conditions"]:
        if c["Field"] == "host-header":
            hosts = c.get("Values") or c.get("HostHeaderConfig", {}).get("Values", [])
            for h in hosts:
                out["rules"][h] = r["Actions"][0]["TargetGroupArn"]
print(json.dumps(out))
"#;

struct Setup {
    moto: Moto,
    cluster: String,
    net: Value,
    uri: String,
    digest: String,
    lb: Value,
}

impl Setup {
    fn new() -> Setup {
        Setup::on(Moto::start_emulator(1.0))
    }

    fn on(moto: Moto) -> Setup {
        let cluster = unique("cluster-");
        let net = python_json(&moto, SETUP_CLUSTER, &[&cluster]);
        let repo = python_json(&moto, SETUP_REPOSITORY, &[&unique("shop/web-")]);
        let lb = python_json(&moto, SETUP_LOAD_BALANCER, &[&unique("lb")]);
        Setup {
            cluster,
            net,
            uri: repo["uri"].as_str().unwrap().to_string(),
            digest: repo["digest"].as_str().unwrap().to_string(),
            lb,
            moto,
        }
    }

    /// A template stage `dev` on the emulator's cluster: `web` (2 tasks, in the template's
    /// target group) and `worker` (no port, no target group); `preview_ecs` is the
    /// `[pipeline.preview.ecs]` body.
    fn project(&self, preview_ecs: &str) -> TestProject {
        let p = TestProject::empty();
        p.write(
            "ferry.toml",
            &format!(
                "[project]\nname = \"shop\"\n\n[pipeline.preview]\ntemplate = \"dev\"\n\n[pipeline.preview.env]\n\
                 PUBLIC_URL = \"{{url}}\"\n\n[pipeline.preview.ecs]\n{preview_ecs}"
            ),
        );
        p.write(
            "stages/dev.toml",
            &format!(
                r#"{runtime}execution_role = "arn:aws:iam::123456789012:role/ecsTaskExecutionRole"

[apps.web]
image = "{uri}"
active = 1
scale = 2
port = 8080
target_group = "{group}"

[apps.web.releases]
1 = "{digest}"

[apps.web.deploy]
timeout = "30s"

[apps.worker]
image = "{uri}"
active = 1
scale = 2

[apps.worker.releases]
1 = "{digest}"

[apps.worker.deploy]
timeout = "30s"
"#,
                runtime = crate::support::moto::ecs_runtime_section(&self.cluster, &self.net),
                uri = self.uri,
                group = self.lb["template_group"].as_str().unwrap(),
                digest = self.digest,
            ),
        );
        p
    }

    fn ferry(&self, p: &TestProject, args: &[&str]) -> Run {
        let mut cmd = p.ferry();
        self.moto.configure(&mut cmd);
        Run(cmd.args(args).output().unwrap())
    }

    fn read(&self, services: &[&str], groups: &[&str]) -> Value {
        let mut args = vec![self.cluster.as_str(), self.lb["listener"].as_str().unwrap()];
        let services = services.join(",");
        args.push(&services);
        args.extend_from_slice(groups);
        python_json(&self.moto, READ_PREVIEW, &args)
    }
}

#[test]
fn an_ecs_preview_gets_its_own_services_target_groups_and_host_rule_and_down_removes_them() {
    let s = Setup::new();
    let listener = s.lb["listener"].as_str().unwrap();
    let p = s.project(&format!(
        "service = \"preview-{{number}}-{{app}}\"\nlistener = \"{listener}\"\nhost = \"pr-{{number}}.example.com\"\n"
    ));
    let run = s.ferry(&p, &["preview", "up", "12", "--branch", "feat/x", "--yes"]);
    run.expect_code(0);
    assert_eq!(run.stdout().trim(), "http://pr-12.example.com", "{}", run.stderr());

    let services = ["preview-12-web", "preview-12-worker", "dev-web", "pr-12-web"];
    let seen = s.read(&services, &["pr-12-web", "pr-12-worker"]);
    let web = &seen["services"]["preview-12-web"];
    assert_eq!(web["status"], "ACTIVE", "{seen}");
    assert_eq!(web["desired"], 1, "the preview's scale, not the template's 2");
    let group = seen["target_groups"]["pr-12-web"]["arn"].as_str().expect("web's own target group").to_string();
    assert_eq!(seen["target_groups"]["pr-12-web"]["path"], "/up", "copied from the template's group");
    assert_eq!(web["target_groups"], serde_json::json!([group]), "never the template's group");
    assert_eq!(seen["services"]["preview-12-worker"]["status"], "ACTIVE");
    assert!(seen["target_groups"].get("pr-12-worker").is_none(), "no group for an app without one: {seen}");
    for never in ["dev-web", "pr-12-web"] {
        assert!(seen["services"].get(never).is_none_or(|v| v["status"] != "ACTIVE"), "{never}: {seen}");
    }
    assert_eq!(seen["rules"]["pr-12.example.com"], group.as_str(), "{seen}");

    let state: Value = serde_json::from_str(&p.read(".ferry/state/pr-12.json")).unwrap();
    let env = &state["apps"]["web"]["history"][0]["config"]["env"];
    assert_eq!(env["PUBLIC_URL"], "http://pr-12.example.com");
    assert!(!p.path().join(".ferry/state/dev.json").exists(), "the template's state is never written");

    let list = s.ferry(&p, &["preview", "list", "--json"]);
    list.expect_code(0);
    let rows: Value = serde_json::from_str(&list.stdout()).unwrap();
    assert_eq!(rows["previews"][0]["url"], "http://pr-12.example.com");
    assert_eq!(rows["previews"][0]["status"], "up");

    // A second preview: its own rule and group beside the first.
    s.ferry(&p, &["preview", "up", "13", "--yes"]).expect_code(0);
    let seen = s.read(&["preview-13-web"], &["pr-13-web"]);
    assert_eq!(seen["rules"]["pr-13.example.com"], seen["target_groups"]["pr-13-web"]["arn"], "{seen}");
    assert!(seen["rules"].get("pr-12.example.com").is_some());

    let down = s.ferry(&p, &["preview", "down", "12"]);
    down.expect_code(0);
    let seen = s.read(&services, &["pr-12-web"]);
    for service in ["preview-12-web", "preview-12-worker"] {
        assert!(seen["services"].get(service).is_none_or(|v| v["status"] != "ACTIVE"), "{service}: {seen}");
    }
    assert!(seen["target_groups"].get("pr-12-web").is_none(), "{seen}");
    assert!(seen["rules"].get("pr-12.example.com").is_none(), "{seen}");
    assert!(seen["rules"].get("pr-13.example.com").is_some(), "the other preview keeps its rule");
    assert!(!p.path().join(".ferry/state/pr-12.json").exists());
    let again = s.ferry(&p, &["preview", "down", "12"]);
    again.expect_code(0);
    assert!(again.stderr().contains("nothing to remove"), "{}", again.stderr());

    s.ferry(&p, &["preview", "down", "13"]).expect_code(0);
    let seen = s.read(&["preview-13-web"], &["pr-13-web"]);
    assert!(seen["rules"].as_object().unwrap().is_empty() && seen["target_groups"].as_object().unwrap().is_empty());
}

#[test]
fn an_ecs_preview_without_a_listener_uses_the_runtime_s_names_and_has_no_url() {
    let s = Setup::new();
    let p = s.project("");
    let run = s.ferry(&p, &["preview", "up", "4", "--yes"]);
    run.expect_code(0);
    assert_eq!(run.stdout().trim(), "", "no URL without a host rule");
    let seen = s.read(&["pr-4-web", "pr-4-worker"], &["pr-4-web"]);
    assert_eq!(seen["services"]["pr-4-web"]["status"], "ACTIVE", "{seen}");
    assert_eq!(seen["services"]["pr-4-worker"]["status"], "ACTIVE", "{seen}");
    assert!(seen["target_groups"].get("pr-4-web").is_some());
    s.ferry(&p, &["preview", "down", "4"]).expect_code(0);
    let seen = s.read(&["pr-4-web", "pr-4-worker"], &["pr-4-web"]);
    assert!(seen["services"].get("pr-4-web").is_none_or(|v| v["status"] != "ACTIVE"), "{seen}");
    assert!(seen["target_groups"].as_object().unwrap().is_empty(), "{seen}");
}

#[test]
fn preview_up_at_once_after_down_waits_for_ecs_to_finish_deleting_the_old_services() {
    // Deleted services stay DRAINING for 3 s, as on ECS (there: until their tasks stop), and
    // a service of the same name cannot be created meanwhile.
    let s = Setup::on(Moto::start_emulator_with(1.0, &[("ECS_EMULATOR_DRAIN", "3")]));
    let p = s.project("");
    s.ferry(&p, &["preview", "up", "7", "--yes"]).expect_code(0);
    s.ferry(&p, &["preview", "down", "7"]).expect_code(0);
    let seen = s.read(&["pr-7-web", "pr-7-worker"], &[]);
    assert_eq!(seen["services"]["pr-7-web"]["status"], "DRAINING", "the emulator drains: {seen}");

    let up = s.ferry(&p, &["preview", "up", "7", "--yes"]);
    up.expect_code(0);
    let err = up.stderr();
    assert!(
        err.contains("waiting for ECS to finish deleting service pr-7-web, pr-7-worker (DRAINING"),
        "says what it waits for: {err}"
    );
    let seen = s.read(&["pr-7-web", "pr-7-worker"], &["pr-7-web"]);
    for service in ["pr-7-web", "pr-7-worker"] {
        assert_eq!(seen["services"][service]["status"], "ACTIVE", "{service} made anew: {seen}");
        assert_eq!(seen["services"][service]["desired"], 1, "{seen}");
    }
    let group = seen["target_groups"]["pr-7-web"]["arn"].as_str().expect("its group made anew");
    assert_eq!(seen["services"]["pr-7-web"]["target_groups"], serde_json::json!([group]), "{seen}");
    s.ferry(&p, &["preview", "down", "7"]).expect_code(0);
}

#[test]
fn prune_removes_the_stale_ecs_previews_services_rule_and_groups_and_keeps_the_rest() {
    let s = Setup::new();
    let listener = s.lb["listener"].as_str().unwrap();
    let p = s.project(&format!("listener = \"{listener}\"\nhost = \"pr-{{number}}.example.com\"\n"));
    s.ferry(&p, &["preview", "up", "20", "--yes"]).expect_code(0);
    s.ferry(&p, &["preview", "up", "21", "--yes"]).expect_code(0);
    // PR 20 last updated ten days ago.
    let mut book: Value = serde_json::from_str(&p.read(".ferry/previews.json")).unwrap();
    let ten_days_ago = (chrono::Utc::now() - chrono::Duration::days(10)).to_rfc3339();
    book["previews"]["20"]["updated_at"] = Value::String(ten_days_ago);
    p.write(".ferry/previews.json", &serde_json::to_string_pretty(&book).unwrap());

    let prune = s.ferry(&p, &["preview", "prune", "--older-than", "7d"]);
    prune.expect_code(0);
    assert!(prune.stderr().contains("removed the preview of PR 20"), "{}", prune.stderr());
    assert!(!prune.stderr().contains("PR 21"), "{}", prune.stderr());

    let services = ["pr-20-web", "pr-20-worker", "pr-21-web", "pr-21-worker"];
    let seen = s.read(&services, &["pr-20-web", "pr-21-web"]);
    for gone in ["pr-20-web", "pr-20-worker"] {
        assert!(seen["services"].get(gone).is_none_or(|v| v["status"] != "ACTIVE"), "{gone}: {seen}");
    }
    for kept in ["pr-21-web", "pr-21-worker"] {
        assert_eq!(seen["services"][kept]["status"], "ACTIVE", "{kept}: {seen}");
    }
    assert!(seen["target_groups"].get("pr-20-web").is_none(), "{seen}");
    assert!(seen["rules"].get("pr-20.example.com").is_none(), "{seen}");
    assert_eq!(seen["rules"]["pr-21.example.com"], seen["target_groups"]["pr-21-web"]["arn"], "{seen}");
    assert!(!p.path().join(".ferry/state/pr-20.json").exists());
    let rows: Value = serde_json::from_str(&s.ferry(&p, &["preview", "list", "--json"]).stdout()).unwrap();
    let prs: Vec<&Value> = rows["previews"].as_array().unwrap().iter().map(|r| &r["pr"]).collect();
    assert_eq!(prs, [&serde_json::json!(21)], "{rows}");

    let again = s.ferry(&p, &["preview", "prune", "--older-than", "7d"]);
    again.expect_code(0);
    assert!(again.stderr().contains("nothing to prune"), "{}", again.stderr());
    s.ferry(&p, &["preview", "down", "21"]).expect_code(0);
}
