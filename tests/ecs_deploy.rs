//! ECS-native deployments (blue/green, linear, canary, bake times, alarms, the circuit
//! breaker, pause hooks) end to end: the `ferry` binary against the ECS emulator of the test
//! harness (`tests/support/ecs_emulator.py`: moto with a service scheduler that runs each
//! strategy's lifecycle stages and answers the 2025 deployment APIs), results read back with
//! boto3. Each test starts an emulator of its own (rollouts of 1 s, a bake time minute of
//! 1 s), so a test's alarms and stages cannot touch another's.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::ecs_runtime::{python_json, unique, SETUP_CLUSTER, SETUP_REPOSITORY};
use crate::support::moto::Moto;
use crate::support::{Run, TestProject};

/// Two target groups behind an application load balancer with a listener and a rule (what
/// blue/green moves traffic with), in the default VPC; prints their ARNs.
pub(crate) const SETUP_LOAD_BALANCER: &str = r#"
import boto3, json, sys
ec2, elb = boto3.client("ec2"), boto3.client("elbv2")
vpc = [v for v in ec2.describe_vpcs()["Vpcs"] if v["IsDefault"]][0]["VpcId"]
subnets = sorted(s["SubnetId"] for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"])[:2]
name = sys.argv[1]
tg = lambda n: elb.create_target_group(Name=n, Protocol="HTTP", Port=8080, VpcId=vpc, TargetType="ip")["TargetGroups"][0]["TargetGroupArn"]
blue, green = tg(name + "-b"), tg(name + "-g")
lb = elb.create_load_balancer(Name=name, Subnets=subnets)["LoadBalancers"][0]["LoadBalancerArn"]
listener = elb.create_listener(LoadBalancerArn=lb, Protocol="HTTP", Port=80,
    DefaultActions=[{"Type": "forward", "TargetGroupArn": blue}])["Listeners"][0]["ListenerArn"]
rule = elb.create_rule(ListenerArn=listener, Priority=1, Conditions=[{"Field": "path-pattern", "Values": ["/*"]}],
    Actions=[{"Type": "forward", "TargetGroupArn": blue}])["Rules"][0]["RuleArn"]
print(json.dumps({"blue": blue, "green": green, "rule": rule}))
"#;

/// The service, its service deployments (newest first) and its target groups' health.
const READ_DEPLOYMENT: &str = r#"
import boto3, json, sys
ecs, elb = boto3.client("ecs"), boto3.client("elbv2")
s = ecs.describe_services(cluster=sys.argv[1], services=[sys.argv[2]])["services"][0]
briefs = ecs.list_service_deployments(cluster=sys.argv[1], service=sys.argv[2])["serviceDeployments"]
full = ecs.describe_service_deployments(serviceDeploymentArns=[b["serviceDeploymentArn"] for b in briefs])["serviceDeployments"]
health = {tg: [t["TargetHealth"]["State"] for t in elb.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"]]
          for tg in sys.argv[3:]}
print(json.dumps({"service": s, "deployments": full, "health": health}, default=str))
"#;

/// Creates a CloudWatch metric alarm named `argv[1]`.
const CREATE_ALARM: &str = r#"
import boto3, sys
boto3.client("cloudwatch").put_metric_alarm(AlarmName=sys.argv[1], MetricName="HTTPCode_Target_5XX_Count",
    Namespace="AWS/ApplicationELB", Statistic="Sum", Period=60, EvaluationPeriods=1, Threshold=1,
    ComparisonOperator="GreaterThanThreshold")
"#;

/// Sets alarm `argv[1]` to state `argv[2]`.
const SET_ALARM: &str = r#"
import boto3, sys
boto3.client("cloudwatch").set_alarm_state(AlarmName=sys.argv[1], StateValue=sys.argv[2], StateReason="test")
"#;

/// An ECS stage on the emulator: cluster, repository with two images, two target groups
/// behind a listener rule.
struct Setup {
    moto: Moto,
    stage: String,
    cluster: String,
    net: Value,
    uri: String,
    first: String,
    second: String,
    lb: Value,
}

impl Setup {
    fn new() -> Setup {
        let moto = Moto::start_emulator(1.0);
        let cluster = unique("cluster-");
        let net = python_json(&moto, SETUP_CLUSTER, &[&cluster]);
        let repo_name = unique("shop/web-");
        let repo = python_json(&moto, SETUP_REPOSITORY, &[&repo_name]);
        let second = python_json(
            &moto,
            r#"
import boto3, hashlib, json, sys
manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
    "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 7, "digest": "sha256:" + "2" * 64},
    "layers": []})
digest = "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()
boto3.client("ecr").put_image(repositoryName=sys.argv[1], imageManifest=manifest, imageTag="two", imageDigest=digest)
print(json.dumps(digest))
"#,
            &[&repo_name],
        );
        let lb = python_json(&moto, SETUP_LOAD_BALANCER, &[&unique("lb")]);
        Setup {
            stage: unique("s"),
            cluster,
            net,
            uri: repo["uri"].as_str().unwrap().to_string(),
            first: repo["digest"].as_str().unwrap().to_string(),
            second: second.as_str().unwrap().to_string(),
            lb,
            moto,
        }
    }

    /// A project whose stage runs app `web` at release `active` with `deploy` (TOML lines
    /// of `[apps.web.deploy]`) and `health` (the container health check command).
    fn project(&self, active: u32, deploy: &str, health: &str) -> TestProject {
        let p = TestProject::empty();
        p.write("ferry.toml", "[project]\nname = \"shop\"\n");
        p.write(
            &format!("stages/{}.toml", self.stage),
            &format!(
                r#"{runtime}execution_role = "arn:aws:iam::123456789012:role/ecsTaskExecutionRole"

[apps.web]
image = "{uri}"
active = {active}
scale = 2
port = 8080
target_group = "{blue}"

[apps.web.releases]
1 = "{first}"
2 = "{second}"

[apps.web.health]
command = ["CMD-SHELL", "{health}"]

[apps.web.deploy]
timeout = "20s"
{deploy}
"#,
                runtime = crate::support::moto::ecs_runtime_section(&self.cluster, &self.net),
                uri = self.uri,
                blue = self.lb["blue"].as_str().unwrap(),
                first = self.first,
                second = self.second,
            ),
        );
        p
    }

    /// The blue/green keys of `[apps.web.deploy]` for this setup's load balancer.
    fn traffic_keys(&self) -> String {
        format!(
            "alternate_target_group = {:?}\nproduction_listener_rule = {:?}\ntraffic_role = \"arn:aws:iam::123456789012:role/ecs-infrastructure\"\n",
            self.lb["green"].as_str().unwrap(),
            self.lb["rule"].as_str().unwrap()
        )
    }

    fn ferry(&self, p: &TestProject, args: &[&str]) -> Run {
        let mut cmd = p.ferry();
        self.moto.configure(&mut cmd);
        Run(cmd.args(args).output().unwrap())
    }

    fn read(&self) -> Value {
        python_json(
            &self.moto,
            READ_DEPLOYMENT,
            &[
                &self.cluster,
                &format!("{}-web", self.stage),
                self.lb["blue"].as_str().unwrap(),
                self.lb["green"].as_str().unwrap(),
            ],
        )
    }

    /// Commit release 1 (healthy), then release 2 whose health check fails: the task
    /// definition serving before, and the failed commit (exit 1).
    fn commit_failing_release(&self, p: &TestProject) -> (String, Run) {
        self.ferry(p, &["commit", "--yes", "-s", &self.stage]).expect_code(0);
        let before = self.read()["service"]["taskDefinition"].as_str().unwrap().to_string();
        let file = format!("stages/{}.toml", self.stage);
        p.write(&file, &p.read(&file).replace("active = 1", "active = 2").replace("\"exit 0\"", "\"exit 1\""));
        let run = self.ferry(p, &["commit", "--yes", "-s", &self.stage]);
        run.expect_code(1);
        (before, run)
    }

    fn state(&self, p: &TestProject) -> Value {
        serde_json::from_str(&p.read(&format!(".ferry/state/{}.json", self.stage))).unwrap()
    }
}

/// A background `ferry`, killed when dropped; its stderr and stdout collected in a file.
struct Background {
    child: std::process::Child,
    out: std::path::PathBuf,
}

impl Background {
    fn start(setup: &Setup, p: &TestProject, args: &[&str]) -> Background {
        let out = p.path().join("background.out");
        let file = std::fs::File::create(&out).unwrap();
        let mut cmd: Command = p.ferry();
        setup.moto.configure(&mut cmd);
        let child = cmd.args(args).stdout(file.try_clone().unwrap()).stderr(file).stdin(Stdio::null()).spawn().unwrap();
        Background { child, out }
    }

    fn output(&self) -> String {
        let mut text = String::new();
        let _ = std::fs::File::open(&self.out).and_then(|mut f| f.read_to_string(&mut text));
        text
    }

    /// Wait (bounded) until the output contains `needle`.
    fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = self.output();
            if text.contains(needle) {
                return text;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("ferry exited ({status}) before printing {needle:?}:\n{text}");
            }
            assert!(Instant::now() < deadline, "no {needle:?} within 60s:\n{text}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Wait (bounded) for the exit code.
    fn wait(&mut self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "ferry did not finish within 90s:\n{}", self.output());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Blue/green with a pause hook and a bake time: the commit shows the pause and the command
/// that releases it; `ferry continue` releases it; the commit then succeeds. ECS got the
/// strategy, bake time, hook and the second target group (read back with boto3), its service
/// deployment ended SUCCESSFUL and the new tasks are healthy in the target group.
#[test]
fn blue_green_with_a_pause_waits_for_ferry_continue_then_succeeds() {
    let s = Setup::new();
    let deploy = format!(
        "strategy = \"blue_green\"\nbake_time = \"2m\"\n{}hooks = [{{ stages = [\"post_test_traffic_shift\"], pause = true }}]\n",
        s.traffic_keys()
    );
    let p = s.project(1, &deploy, "curl -f http://localhost:8080/up || exit 1");
    let first = s.ferry(&p, &["commit", "--yes", "-s", &s.stage]);
    first.expect_code(0);

    // Release 2: the commit waits at the pause and says how to go on.
    p.write(
        &format!("stages/{}.toml", s.stage),
        &p.read(&format!("stages/{}.toml", s.stage)).replace("active = 1", "active = 2"),
    );
    let mut commit = Background::start(&s, &p, &["commit", "--yes", "-s", &s.stage]);
    let text = commit.wait_for("paused at post_test_traffic_shift");
    assert!(text.contains(&format!("ferry continue -s {} web", s.stage)), "{text}");
    let paused = s.read();
    let current = &paused["deployments"][0];
    assert_eq!(current["status"], "IN_PROGRESS", "{paused:#}");
    assert_eq!(current["lifecycleHookDetails"][0]["status"], "AWAITING_ACTION", "{paused:#}");

    let released = s.ferry(&p, &["continue", "-s", &s.stage, "web"]);
    released.expect_code(0);
    assert!(
        released.stderr().contains("released the deployment of web at post_test_traffic_shift"),
        "{}",
        released.stderr()
    );
    let code = commit.wait();
    let text = commit.output();
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("bake time"), "the bake time is shown as it happens:\n{text}");

    let read = s.read();
    let dc = &read["service"]["deploymentConfiguration"];
    assert_eq!(dc["strategy"], "BLUE_GREEN", "{read:#}");
    assert_eq!(dc["bakeTimeInMinutes"], 2);
    assert_eq!(dc["lifecycleHooks"][0]["targetType"], "PAUSE");
    assert_eq!(dc["lifecycleHooks"][0]["lifecycleStages"], serde_json::json!(["POST_TEST_TRAFFIC_SHIFT"]));
    let lb = &read["service"]["loadBalancers"][0];
    assert_eq!(lb["targetGroupArn"], s.lb["blue"]);
    assert_eq!(lb["containerName"], "web");
    assert_eq!(lb["containerPort"], 8080);
    assert_eq!(lb["advancedConfiguration"]["alternateTargetGroupArn"], s.lb["green"]);
    assert_eq!(lb["advancedConfiguration"]["productionListenerRule"], s.lb["rule"]);
    assert_eq!(read["deployments"][0]["status"], "SUCCESSFUL", "{read:#}");
    let healthy = read["health"][s.lb["blue"].as_str().unwrap()].clone();
    assert_eq!(healthy, serde_json::json!(["healthy", "healthy"]), "{read:#}");
    let state = s.state(&p);
    let history = state["apps"]["web"]["history"].as_array().unwrap();
    assert_eq!(history.last().unwrap()["status"], "succeeded", "{state:#}");
    assert_eq!(history.last().unwrap()["release"], 2, "{state:#}");

    // Nothing left to plan: the new keys cause no permanent diff.
    let plan = s.ferry(&p, &["plan", "-s", &s.stage, "--detailed-exitcode"]);
    assert_eq!(plan.code(), 0, "{}{}", plan.stdout(), plan.stderr());
}

/// An alarm in ALARM state during the bake time: ECS rolls back, `ferry commit` exits 1 with
/// ECS's reason and the alarm's name, the service serves the previous task definition and
/// state says so.
#[test]
fn an_alarm_in_alarm_state_rolls_back_and_the_commit_fails_naming_it() {
    let s = Setup::new();
    let alarm = unique("web-5xx-");
    python_json(&s.moto, CREATE_ALARM, &[&alarm]);
    let deploy = format!(
        "strategy = \"canary\"\ncanary_percent = \"20%\"\ncanary_bake_time = \"30m\"\n{}alarms = [{alarm:?}]\n",
        s.traffic_keys()
    );
    let p = s.project(1, &deploy, "exit 0");
    s.ferry(&p, &["commit", "--yes", "-s", &s.stage]).expect_code(0);
    let before = s.read()["service"]["taskDefinition"].as_str().unwrap().to_string();

    p.write(
        &format!("stages/{}.toml", s.stage),
        &p.read(&format!("stages/{}.toml", s.stage)).replace("active = 1", "active = 2"),
    );
    let mut commit = Background::start(&s, &p, &["commit", "--yes", "-s", &s.stage]);
    let text = commit.wait_for("20% of production traffic");
    assert!(text.contains("production_traffic_shift"), "{text}");
    python_json(&s.moto, SET_ALARM, &[&alarm, "ALARM"]);
    let code = commit.wait();
    let text = commit.output();
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("ECS rolled the deployment back"), "{text}");
    assert!(text.contains(&format!("alarm {alarm} in ALARM")), "{text}");

    let read = s.read();
    assert_eq!(read["service"]["taskDefinition"], before, "the previous task definition serves: {read:#}");
    assert_eq!(read["deployments"][0]["status"], "ROLLBACK_SUCCESSFUL", "{read:#}");
    let state = s.state(&p);
    let apps = &state["apps"]["web"];
    let last = apps["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["status"], "failed", "{state:#}");
    assert_eq!(apps["active"]["revision"], before, "state says the previous revision serves: {state:#}");
    assert_eq!(apps["active"]["release"], 1, "{state:#}");
}

/// Tasks that fail their health checks trip the circuit breaker: ECS rolls back, the commit
/// exits 1 naming the target group whose checks failed, and the previous revision serves.
#[test]
fn the_circuit_breaker_rolls_back_and_the_commit_says_why() {
    let s = Setup::new();
    let p = s.project(1, "", "exit 0");
    let (before, run) = s.commit_failing_release(&p);
    let all = format!("{}{}", run.stdout(), run.stderr());
    // ferry fails at the first new task that stops, or ECS's breaker first: either way the
    // target group that failed the tasks is named.
    assert!(all.contains("circuit breaker") || all.contains("stopped before the rollout was healthy"), "{all}");
    assert!(all.contains(&format!("ELB health checks in (target-group {})", s.lb["blue"].as_str().unwrap())), "{all}");
    let read = s.read();
    assert_eq!(read["service"]["taskDefinition"], before, "{read:#}");
}

/// The circuit breaker without ECS's rollback (`rollback = false`): ECS only stops the
/// deployment, so ferry rolls back itself — the commit exits 1, the previous task definition
/// serves and state says so (never a half-applied service).
#[test]
fn a_circuit_breaker_without_rollback_leaves_the_previous_revision_serving() {
    let s = Setup::new();
    let p = s.project(1, "circuit_breaker = { enable = true, rollback = false }\n", "exit 0");
    let (before, _) = s.commit_failing_release(&p);
    let read = s.read();
    assert_eq!(read["service"]["taskDefinition"], before, "{read:#}");
    assert_eq!(read["service"]["deploymentConfiguration"]["deploymentCircuitBreaker"]["rollback"], false);
    let state = s.state(&p);
    let web = &state["apps"]["web"];
    assert_eq!(web["history"].as_array().unwrap().last().unwrap()["status"], "failed", "{state:#}");
    assert_eq!(
        (web["active"]["revision"].as_str(), web["active"]["release"].as_u64()),
        (Some(before.as_str()), Some(1))
    );
}

/// `ferry abort` during a pause: the deployment is stopped with rollback
/// (StopServiceDeployment), the commit records it aborted and the old revision serves.
#[test]
fn ferry_abort_at_a_pause_rolls_the_deployment_back() {
    let s = Setup::new();
    let deploy = format!(
        "strategy = \"linear\"\nstep_percent = \"50%\"\nstep_bake_time = \"1m\"\n{}hooks = [{{ stages = [\"post_scale_up\"], pause = true }}]\n",
        s.traffic_keys()
    );
    let p = s.project(1, &deploy, "exit 0");
    // A service's first deployment has no traffic to move: it runs no hooks.
    s.ferry(&p, &["commit", "--yes", "-s", &s.stage]).expect_code(0);
    let before = s.read()["service"]["taskDefinition"].as_str().unwrap().to_string();

    p.write(
        &format!("stages/{}.toml", s.stage),
        &p.read(&format!("stages/{}.toml", s.stage)).replace("active = 1", "active = 2"),
    );
    let mut commit = Background::start(&s, &p, &["commit", "--yes", "-s", &s.stage]);
    commit.wait_for("paused at post_scale_up");
    let abort = s.ferry(&p, &["abort", "-s", &s.stage, "--wait", "60s"]);
    abort.expect_code(0);
    let code = commit.wait();
    assert_ne!(code, 0, "{}", commit.output());
    let read = s.read();
    assert_eq!(read["service"]["taskDefinition"], before, "{read:#}");
    assert_eq!(read["deployments"][0]["status"], "ROLLBACK_SUCCESSFUL", "{read:#}");
}

/// `validate` refuses what the file alone shows is wrong, each located.
#[test]
fn bad_strategy_settings_are_located_errors() {
    let s = Setup::new();
    let p = s.project(
        1,
        "strategy = \"canary\"\ncanary_percent = \"0%\"\nbake_time = \"90s\"\nstep_percent = \"10%\"\nhooks = [{ stages = [\"production_traffic_shift\"], pause = true }]\n",
        "exit 0",
    );
    let run = p.run(&["validate"]);
    run.expect_code(1);
    let err = run.stderr();
    let file = format!("stages/{}.toml", s.stage);
    for needle in [
        "strategy `canary` needs `alternate_target_group`, `production_listener_rule`, `traffic_role`",
        "canary_percent 0% is not between 1% and 100%",
        "`90s` is not a whole number of minutes",
        "`step_percent` applies to strategy `linear` only",
        "ECS cannot pause at `production_traffic_shift`",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    assert!(err.contains(&file), "{err}");
}

/// An alarm CloudWatch does not know: `commit` refuses before touching the service, naming
/// the alarm at its place in the stage file; a plain `plan` asks no AWS.
#[test]
fn a_missing_alarm_is_refused_at_commit_and_plan_refresh_not_at_plain_plan() {
    let s = Setup::new();
    let p = s.project(1, "alarms = [\"no-such-alarm\"]\n", "exit 0");
    let run = s.ferry(&p, &["commit", "--yes", "-s", &s.stage]);
    run.expect_code(1);
    assert!(run.stderr().contains("CloudWatch has no alarm `no-such-alarm` in eu-central-1"), "{}", run.stderr());
    assert!(run.stderr().contains(&format!("stages/{}.toml", s.stage)), "{}", run.stderr());
    let refresh = s.ferry(&p, &["plan", "--refresh", "-s", &s.stage]);
    assert!(refresh.stderr().contains("CloudWatch has no alarm `no-such-alarm`"), "{}", refresh.stderr());
    // No AWS at all for a plain plan: an endpoint nobody listens on.
    let mut cmd = p.ferry();
    s.moto.configure(&mut cmd);
    cmd.env("AWS_ENDPOINT_URL", "http://127.0.0.1:9");
    let plain = Run(cmd.args(["plan", "-s", &s.stage]).output().unwrap());
    plain.expect_code(0);
    let services = python_json(
        &s.moto,
        "import boto3, json, sys\nprint(json.dumps(boto3.client('ecs').list_services(cluster=sys.argv[1])['serviceArns']))",
        &[&s.cluster],
    );
    assert_eq!(services, serde_json::json!([]), "nothing was deployed");

    // A saved plan made while the alarm existed: `commit PLANFILE` asks again, and refuses
    // once it is gone.
    python_json(&s.moto, CREATE_ALARM, &["no-such-alarm"]);
    s.ferry(&p, &["plan", "-s", &s.stage, "-o", "saved.plan"]).expect_code(0);
    python_json(
        &s.moto,
        "import boto3\nboto3.client('cloudwatch').delete_alarms(AlarmNames=['no-such-alarm'])\nprint('null')",
        &[],
    );
    let saved = s.ferry(&p, &["commit", "saved.plan"]);
    saved.expect_code(1);
    assert!(saved.stderr().contains("CloudWatch has no alarm `no-such-alarm`"), "{}", saved.stderr());
}

/// The emulator itself, driven with boto3 only: a canary walks its stages and traffic
/// weights, a pause hook holds it until ContinueServiceDeployment, an alarm in ALARM state
/// and the circuit breaker roll back (the service back on the source task definition),
/// StopServiceDeployment rolls back, ListServiceDeployments lists newest first.
const EMULATOR_SCENARIOS: &str = r#"
import boto3, json, sys, time
ecs, ec2, cw = boto3.client("ecs"), boto3.client("ec2"), boto3.client("cloudwatch")
cluster = sys.argv[1]
net = json.loads(sys.argv[2])
def td(hc):
    c = {"name": "web", "image": "x", "memory": 512, "portMappings": [{"containerPort": 8080}],
         "healthCheck": {"command": ["CMD-SHELL", hc]}}
    return ecs.register_task_definition(family=cluster, networkMode="awsvpc", requiresCompatibilities=["FARGATE"],
        cpu="256", memory="512", containerDefinitions=[c])["taskDefinition"]["taskDefinitionArn"]
a, b, bad = td("exit 0"), td("true"), td("exit 1")
vpc = {"awsvpcConfiguration": {"subnets": net["subnets"], "securityGroups": net["security_groups"]}}
s = ecs.create_service(cluster=cluster, serviceName="svc", taskDefinition=a, desiredCount=2, launchType="FARGATE",
    networkConfiguration=vpc)["service"]
def get(arn):
    return ecs.describe_service_deployments(serviceDeploymentArns=[arn])["serviceDeployments"][0]
def wait(arn, statuses):
    deadline = time.time() + 60
    while time.time() < deadline:
        d = get(arn)
        if d["status"] in statuses:
            return d
        time.sleep(0.1)
    raise SystemExit("no " + str(statuses) + ": " + json.dumps(d, default=str))
out = {"first": wait(s["currentServiceDeployment"], ["SUCCESSFUL"])["status"]}
cw.put_metric_alarm(AlarmName=cluster, MetricName="m", Namespace="n", Statistic="Sum", Period=60,
    EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanThreshold")
canary = {"strategy": "CANARY", "bakeTimeInMinutes": 1, "canaryConfiguration": {"canaryPercent": 20, "canaryBakeTimeInMinutes": 1},
    "lifecycleHooks": [{"targetType": "PAUSE", "lifecycleStages": ["POST_TEST_TRAFFIC_SHIFT"]}]}
arn = ecs.update_service(cluster=cluster, service="svc", taskDefinition=b, deploymentConfiguration=canary)["service"]["currentServiceDeployment"]
deadline = time.time() + 60
while not get(arn)["lifecycleHookDetails"] and time.time() < deadline:
    time.sleep(0.1)
paused = get(arn)
out["paused"] = [paused["status"], paused.get("lifecycleStage"), paused["lifecycleHookDetails"][0]["status"]]
time.sleep(1.5)
out["still_paused"] = get(arn).get("lifecycleStage")
ecs.continue_service_deployment(serviceDeploymentArn=arn, hookId=paused["lifecycleHookDetails"][0]["hookId"], action="CONTINUE")
seen = []
while time.time() < deadline:
    d = get(arn)
    step = [d.get("lifecycleStage"), d["targetServiceRevision"]["requestedProductionTrafficWeight"]]
    if step not in seen:
        seen.append(step)
    if d["status"] != "IN_PROGRESS":
        break
    time.sleep(0.05)
out["canary"] = {"status": d["status"], "steps": seen}
alarmed = {"alarms": {"alarmNames": [cluster], "enable": True, "rollback": True}, "bakeTimeInMinutes": 30}
arn = ecs.update_service(cluster=cluster, service="svc", taskDefinition=a, deploymentConfiguration=alarmed)["service"]["currentServiceDeployment"]
cw.set_alarm_state(AlarmName=cluster, StateValue="ALARM", StateReason="test")
d = wait(arn, ["ROLLBACK_SUCCESSFUL", "STOPPED"])
out["alarm"] = [d["status"], d["alarms"]["triggeredAlarmNames"], ecs.describe_services(cluster=cluster, services=["svc"])["services"][0]["taskDefinition"] == b]
cw.set_alarm_state(AlarmName=cluster, StateValue="OK", StateReason="test")
breaker = {"deploymentCircuitBreaker": {"enable": True, "rollback": True}}
arn = ecs.update_service(cluster=cluster, service="svc", taskDefinition=bad, deploymentConfiguration=breaker)["service"]["currentServiceDeployment"]
d = wait(arn, ["ROLLBACK_SUCCESSFUL", "STOPPED"])
service = ecs.describe_services(cluster=cluster, services=["svc"])["services"][0]
out["breaker"] = [d["status"], d["deploymentCircuitBreaker"]["status"], d["deploymentCircuitBreaker"]["failureCount"] >= 3,
    service["taskDefinition"] == b, [x["rolloutState"] for x in service["deployments"]]]
linear = {"strategy": "LINEAR", "linearConfiguration": {"stepPercent": 50, "stepBakeTimeInMinutes": 30}}
arn = ecs.update_service(cluster=cluster, service="svc", taskDefinition=a, deploymentConfiguration=linear)["service"]["currentServiceDeployment"]
deadline = time.time() + 60
while get(arn)["targetServiceRevision"]["requestedProductionTrafficWeight"] < 50 and time.time() < deadline:
    time.sleep(0.1)
out["linear_step"] = get(arn)["targetServiceRevision"]["requestedProductionTrafficWeight"]
ecs.stop_service_deployment(serviceDeploymentArn=arn)
out["stop"] = wait(arn, ["ROLLBACK_SUCCESSFUL", "STOPPED"])["status"]
out["listed"] = [x["status"] for x in ecs.list_service_deployments(cluster=cluster, service="svc")["serviceDeployments"]]
print(json.dumps(out))
"#;

#[test]
fn the_emulator_runs_each_strategy_and_the_deployment_apis() {
    let moto = Moto::start_emulator(0.5);
    let cluster = unique("cluster-");
    let net = python_json(&moto, SETUP_CLUSTER, &[&cluster]);
    let out = python_json(&moto, EMULATOR_SCENARIOS, &[&cluster, &net.to_string()]);
    assert_eq!(out["first"], "SUCCESSFUL", "{out:#}");
    assert_eq!(out["paused"], serde_json::json!(["IN_PROGRESS", "POST_TEST_TRAFFIC_SHIFT", "AWAITING_ACTION"]));
    assert_eq!(out["still_paused"], "POST_TEST_TRAFFIC_SHIFT", "a pause holds: {out:#}");
    assert_eq!(out["canary"]["status"], "SUCCESSFUL", "{out:#}");
    let steps: Vec<(String, f64)> = out["canary"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s[0].as_str().unwrap_or_default().to_string(), s[1].as_f64().unwrap()))
        .collect();
    let shifts: Vec<f64> = steps.iter().filter(|(s, _)| s == "PRODUCTION_TRAFFIC_SHIFT").map(|(_, w)| *w).collect();
    assert!(shifts.contains(&20.0) && shifts.contains(&100.0), "canary 20% then 100%: {steps:?}");
    assert!(steps.iter().any(|(s, _)| s == "BAKE_TIME"), "{steps:?}");
    assert_eq!(out["alarm"], serde_json::json!(["ROLLBACK_SUCCESSFUL", [cluster], true]), "{out:#}");
    assert_eq!(
        out["breaker"],
        serde_json::json!(["ROLLBACK_SUCCESSFUL", "TRIGGERED", true, true, ["COMPLETED", "FAILED"]])
    );
    assert_eq!(out["linear_step"], 50.0, "{out:#}");
    assert_eq!(out["stop"], "ROLLBACK_SUCCESSFUL");
    assert_eq!(out["listed"][0], "ROLLBACK_SUCCESSFUL", "newest first: {out:#}");
    assert_eq!(out["listed"].as_array().unwrap().len(), 5, "{out:#}");
}

/// `target_groups` (the long form): ECS gets a load balancer per target group with the app's
/// container and port unless the entry names others, and the health check grace period; the
/// commit waits until the new tasks are healthy in both target groups; read back with boto3.
/// Nothing is left to plan, with or without `--refresh`.
#[test]
fn several_target_groups_reach_the_service_and_cause_no_diff() {
    let s = Setup::new();
    let p = s.project(1, "health_check_grace_period = \"45s\"\n", "exit 0");
    let file = format!("stages/{}.toml", s.stage);
    let (blue, green) = (s.lb["blue"].as_str().unwrap(), s.lb["green"].as_str().unwrap());
    p.write(
        &file,
        &p.read(&file).replace(
            &format!("target_group = \"{blue}\""),
            &format!(
                "target_groups = [{{ arn = \"{blue}\" }}, {{ arn = \"{green}\", container = \"web\", port = 8080 }}]"
            ),
        ),
    );
    s.ferry(&p, &["validate"]).expect_code(0);

    let commit = s.ferry(&p, &["commit", "--yes", "-s", &s.stage]);
    commit.expect_code(0);
    let read = s.read();
    let service = &read["service"];
    assert_eq!(service["healthCheckGracePeriodSeconds"], 45, "{read:#}");
    let lbs: Vec<(String, String, i64)> = service["loadBalancers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|lb| {
            (
                lb["targetGroupArn"].as_str().unwrap().to_string(),
                lb["containerName"].as_str().unwrap().to_string(),
                lb["containerPort"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(lbs, [(blue.to_string(), "web".to_string(), 8080), (green.to_string(), "web".to_string(), 8080)]);
    for tg in [blue, green] {
        assert_eq!(read["health"][tg], serde_json::json!(["healthy", "healthy"]), "{read:#}");
    }

    let stage = s.stage.as_str();
    let plans: [&[&str]; 2] =
        [&["plan", "-s", stage, "--detailed-exitcode"], &["plan", "-s", stage, "--refresh", "--detailed-exitcode"]];
    for args in plans {
        let plan = s.ferry(&p, args);
        assert_eq!(plan.code(), 0, "{args:?}: {}{}", plan.stdout(), plan.stderr());
    }
}

/// The target groups a service registers with, as `(arn, container, port)`.
fn load_balancers(read: &Value) -> Vec<(String, String, i64)> {
    read["service"]["loadBalancers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|lb| {
            (
                lb["targetGroupArn"].as_str().unwrap().to_string(),
                lb["containerName"].as_str().unwrap().to_string(),
                lb["containerPort"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// A deployment with several target groups (`target_groups`), then one with the short
/// `target_group`: `ferry history` names the change `target_groups`, and `ferry rollback`
/// to the first writes `target_groups` back in place of `target_group`; committed, the
/// service registers with both again (read back with boto3) and history says "Rollback to v1".
#[test]
fn rollback_restores_several_target_groups() {
    let s = Setup::new();
    let p = s.project(1, "", "exit 0");
    let file = format!("stages/{}.toml", s.stage);
    let (blue, green) = (s.lb["blue"].as_str().unwrap(), s.lb["green"].as_str().unwrap());
    let short = p.read(&file);
    let several = format!("target_groups = [{{ arn = \"{blue}\" }}, {{ arn = \"{green}\", port = 8080 }}]");
    p.write(&file, &short.replace(&format!("target_group = \"{blue}\""), &several));
    let stage = s.stage.as_str();
    s.ferry(&p, &["commit", "--yes", "-s", stage]).expect_code(0);
    let both = [(blue.to_string(), "web".to_string(), 8080), (green.to_string(), "web".to_string(), 8080)];
    assert_eq!(load_balancers(&s.read()), both);

    p.write(&file, &short);
    s.ferry(&p, &["commit", "--yes", "-s", stage]).expect_code(0);
    assert_eq!(load_balancers(&s.read()), [(blue.to_string(), "web".to_string(), 8080)]);
    let history = s.ferry(&p, &["history", "web", "-s", stage]).expect_code(0).stdout();
    assert!(history.contains("Config change: target_group, target_groups"), "{history}");

    let rollback = s.ferry(&p, &["rollback", "web", "-s", stage]);
    rollback.expect_code(0);
    let restored = p.read(&file);
    assert!(restored.contains(&several) && !restored.contains("target_group ="), "{restored}");
    s.ferry(&p, &["commit", "--yes", "-s", stage]).expect_code(0);
    assert_eq!(load_balancers(&s.read()), both);
    let history = s.ferry(&p, &["history", "web", "-s", stage]).expect_code(0).stdout();
    assert!(history.lines().next().is_some_and(|l| l.contains("v3") && l.contains("Rollback to v1")), "{history}");
    let plan = s.ferry(&p, &["plan", "-s", stage, "--refresh", "--detailed-exitcode"]);
    assert_eq!(plan.code(), 0, "{}{}", plan.stdout(), plan.stderr());
}

/// Both forms at once, and a target group two apps claim (or one app twice): located errors
/// at `validate`.
#[test]
fn target_groups_claimed_twice_or_in_both_forms_are_located_errors() {
    let s = Setup::new();
    let p = s.project(1, "", "exit 0");
    let file = format!("stages/{}.toml", s.stage);
    let blue = s.lb["blue"].as_str().unwrap();
    let text = p.read(&file).replace(
        &format!("target_group = \"{blue}\"\n"),
        &format!("target_group = \"{blue}\"\ntarget_groups = [{{ arn = \"{blue}\" }}]\n"),
    );
    p.write(
        &file,
        &format!(
            "{text}\n[apps.api]\nimage = \"{}\"\nactive = 1\nport = 8080\ntarget_group = \"{blue}\"\n\n[apps.api.releases]\n1 = \"{}\"\n",
            s.uri, s.first
        ),
    );
    let run = p.run(&["validate"]);
    run.expect_code(1);
    let err = run.stderr();
    for needle in [
        "`target_group` and `target_groups` are both set".to_string(),
        format!("target group `{blue}` is already app `api`'s"),
    ] {
        assert!(err.contains(&needle), "missing {needle:?} in:\n{err}");
    }
    // Each located in the file, at the line that claims it.
    let lines: Vec<&str> = err.lines().filter(|l| l.contains(&format!("{file}:"))).collect();
    assert!(lines.len() >= 3, "{err}");
}
