//! The ECS runtime and the ECR registry against the moto emulator
//! ([`crate::support::moto`]).
//!
//! Each test takes a cluster and a stage name of its own on the one shared server, so they
//! run in parallel. Clusters, ECR repositories and log events are set up with boto3 (an
//! independent client), and what ferry created is read back both through the SDK (the
//! runtime's own `observe`) and through boto3.
//!
//! What moto 5.2.5 does and does not do, and so what is checked where:
//! - services never launch tasks, and a deployment's `rolloutState` stays IN_PROGRESS; a
//!   rollout can therefore neither succeed nor fail on its own here;
//! - `create_service` drops `deploymentConfiguration` (`update_service` keeps it), so the
//!   deployment configuration is read back after an update;
//! - awsvpc subnets and security groups must be the default VPC's (looked up with EC2).
//!
//! The failure paths the emulator cannot produce — a deployment failed by the circuit
//! breaker, and a new task that stops before turning healthy — come from a fault-injecting
//! layer: an SDK interceptor ([`Faults`]) on the runtime's ECS client that rewrites the
//! *typed* DescribeServices / ListTasks / DescribeTasks outputs as ECS would report them.
//! Everything else in those answers (and every other call) is moto's. The apply engine's
//! own decision (`rollout::judge`) and undo (`ops::roll_back`, `Engine::apply`) then run on
//! them, and the effect on the emulator is read back.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_ecs::config::interceptors::FinalizerInterceptorContextMut;
use aws_sdk_ecs::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_ecs::error::BoxError;
use aws_sdk_ecs::operation::describe_services::DescribeServicesOutput;
use aws_sdk_ecs::operation::describe_tasks::DescribeTasksOutput;
use aws_sdk_ecs::operation::list_tasks::ListTasksOutput;
use aws_sdk_ecs::types::{Container, DeploymentRolloutState, HealthStatus, ServiceEvent, Task};
use serde_json::Value;

use ferry::apply::ops::{self, OpContext, Started};
use ferry::apply::rollout::{judge, RolloutWatch, Verdict, Watched};
use ferry::apply::task::{watch_task, TaskEnd, TaskWait};
use ferry::apply::{AbortSignal, Engine, Hook};
use ferry::config::{AppConfig, DeploySettings, Digest, EcsRuntime as EcsSettings, Health, SecretRef};
use ferry::plan::{Changeset, DeployKind, Operation, Running};
use ferry::registry::{EcrRegistry, Registry, RegistryError};
use ferry::runtime::ecs::{ecs_config, EcsRuntime};
use ferry::runtime::{Lifecycle, RecordedRevisions, RevisionSpec, Runtime, ServiceState, TaskKind, TaskSpec};
use ferry::state::{DeploymentStatus, InMemoryStateStore, LockInfo, LockedStage};

use crate::support::moto::{Moto, REGION};

/// Looks up the default VPC's subnets and security group and creates a cluster.
pub(crate) const SETUP_CLUSTER: &str = r#"
import boto3, json, sys
ec2, ecs = boto3.client("ec2"), boto3.client("ecs")
vpc = [v for v in ec2.describe_vpcs()["Vpcs"] if v["IsDefault"]][0]["VpcId"]
subnets = [s["SubnetId"] for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]]
groups = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc]}, {"Name": "group-name", "Values": ["default"]}])
ecs.create_cluster(clusterName=sys.argv[1])
print(json.dumps({"subnets": sorted(subnets)[:2], "security_groups": [g["GroupId"] for g in groups["SecurityGroups"]]}))
"#;

/// Creates a repository holding one image (digest given explicitly, as moto needs).
pub(crate) const SETUP_REPOSITORY: &str = r#"
import boto3, hashlib, json, sys
ecr = boto3.client("ecr")
repo = ecr.create_repository(repositoryName=sys.argv[1])["repository"]
manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
    "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 7, "digest": "sha256:" + "1" * 64},
    "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 9, "digest": "sha256:" + hashlib.sha256(sys.argv[1].encode()).hexdigest()}]})
digest = "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()
ecr.put_image(repositoryName=sys.argv[1], imageManifest=manifest, imageTag="prod", imageDigest=digest)
print(json.dumps({"uri": repo["repositoryUri"], "digest": digest}))
"#;

/// Pushes another image manifest (made unique by `argv[2]`) under tag `argv[3]` of
/// repository `argv[1]`; prints its digest.
pub(crate) const PUSH_TAG: &str = r#"
import boto3, hashlib, json, sys
manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
    "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 7, "digest": "sha256:" + "2" * 64},
    "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 9, "digest": "sha256:" + hashlib.sha256(sys.argv[2].encode()).hexdigest()}]})
digest = "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()
boto3.client("ecr").put_image(repositoryName=sys.argv[1], imageManifest=manifest, imageTag=sys.argv[3], imageDigest=digest)
print(json.dumps(digest))
"#;

/// Reads a service, its task definition and both their tags back.
const READ_SERVICE: &str = r#"
import boto3, json, sys
ecs = boto3.client("ecs")
s = ecs.describe_services(cluster=sys.argv[1], services=[sys.argv[2]], include=["TAGS"])["services"][0]
td = ecs.describe_task_definition(taskDefinition=s["taskDefinition"], include=["TAGS"])
print(json.dumps({"service": s, "taskDefinition": td["taskDefinition"], "taskDefinitionTags": td.get("tags", [])}, default=str))
"#;

/// Writes log lines into a task's awslogs stream.
const PUT_LOGS: &str = r#"
import boto3, sys, time
logs = boto3.client("logs")
try:
    logs.create_log_group(logGroupName=sys.argv[1])
except logs.exceptions.ResourceAlreadyExistsException:
    pass
logs.create_log_stream(logGroupName=sys.argv[1], logStreamName=sys.argv[2])
now = int(time.time() * 1000)
logs.put_log_events(logGroupName=sys.argv[1], logStreamName=sys.argv[2],
    logEvents=[{"timestamp": now + i, "message": m} for i, m in enumerate(sys.argv[3:])])
"#;

pub(crate) fn python_json(moto: &Moto, script: &str, args: &[&str]) -> Value {
    let out = moto.python(script, args);
    assert!(out.status.success(), "boto3 script failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim().is_empty() {
        return Value::Null;
    }
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

pub(crate) fn unique(prefix: &str) -> String {
    format!("{prefix}{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

/// A cluster and a stage of their own on the shared server (or on a test's own).
struct Fixture<'m> {
    moto: &'m Moto,
    stage: String,
    settings: EcsSettings,
}

impl Fixture<'static> {
    fn new() -> Fixture<'static> {
        Fixture::on(Moto::shared())
    }
}

impl<'m> Fixture<'m> {
    fn on(moto: &'m Moto) -> Fixture<'m> {
        let cluster = unique("cluster-");
        let net = python_json(moto, SETUP_CLUSTER, &[&cluster]);
        let strings = |v: &Value| -> Vec<String> {
            v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
        };
        let settings = EcsSettings {
            region: REGION.into(),
            cluster,
            subnets: strings(&net["subnets"]),
            security_groups: strings(&net["security_groups"]),
            assign_public_ip: false,
            execution_role: Some("arn:aws:iam::123456789012:role/ecsTaskExecutionRole".into()),
            task_role: None,
            log_group: None,
        };
        Fixture { moto, stage: unique("s"), settings }
    }

    fn runtime(&self) -> EcsRuntime {
        EcsRuntime::new(&self.stage, &self.settings, &self.moto.sdk_config())
    }

    /// A runtime whose ECS answers pass through `faults`.
    fn faulty_runtime(&self, faults: Arc<Faults>) -> EcsRuntime {
        let sdk = self.moto.sdk_config();
        let ecs = aws_sdk_ecs::Client::from_conf(ecs_config(&sdk).interceptor(FaultLayer(faults)).build());
        EcsRuntime::from_clients(&self.stage, &self.settings, ecs, aws_sdk_cloudwatchlogs::Client::new(&sdk))
    }

    /// A project whose one stage (named like the fixture's) runs app `api` of `image` on
    /// this cluster, with a 3 s deploy timeout.
    fn project(&self, image: &str, digest: &str) -> crate::support::TestProject {
        let f = self;
        let (uri, pushed) = (image, digest);
        let p = crate::support::TestProject::empty();
        p.write("ferry.toml", "[project]\nname = \"shop\"\n");
        p.write(
            &format!("stages/{}.toml", f.stage),
            &format!(
                r#"[runtime]
kind = "ecs"
region = "{REGION}"
cluster = "{cluster}"
subnets = [{subnets}]
security_groups = [{groups}]

[apps.api]
image = "{uri}"
active = 1
scale = 1
cpu = 256
memory = 512
port = 8080

[apps.api.releases]
1 = "{pushed}"

[apps.api.deploy]
timeout = "3s"
"#,
                cluster = f.settings.cluster,
                subnets = crate::support::toml_strings(&f.settings.subnets),
                groups = crate::support::toml_strings(&f.settings.security_groups),
            ),
        );
        p
    }

    fn read_service(&self, app: &str) -> Value {
        python_json(self.moto, READ_SERVICE, &[&self.settings.cluster, &format!("{}-{app}", self.stage)])
    }
}

fn digest(n: u8) -> Digest {
    format!("sha256:{}", format!("{n:02x}").repeat(32)).parse().unwrap()
}

fn spec(app: &str, release: u64) -> RevisionSpec {
    let mut env = BTreeMap::new();
    env.insert("RAILS_ENV".to_string(), "production".to_string());
    let mut secrets = BTreeMap::new();
    secrets.insert(
        "DATABASE_URL".to_string(),
        SecretRef::Ssm("arn:aws:ssm:eu-central-1:123456789012:parameter/shop/db-url".into()),
    );
    RevisionSpec {
        app: app.into(),
        release,
        image: "123456789012.dkr.ecr.eu-central-1.amazonaws.com/shop/web".into(),
        digest: digest(release as u8),
        config: AppConfig {
            cpu: 256,
            memory: 512,
            command: vec!["puma".into(), "-p".into(), "${PORT}".into()],
            port: Some(8080),
            env,
            sensitive_env: Default::default(),
            secrets,
            health: Health {
                command: Some(vec!["CMD-SHELL".into(), "curl -f http://localhost:8080/health || exit 1".into()]),
                ..Health::default()
            },
            deploy: DeploySettings::default(),
            release_tasks: vec![],
            target_group: None,
        },
        local_dir: None,
    }
}

fn tag<'a>(tags: &'a Value, key: &str) -> Option<&'a str> {
    tags.as_array()?.iter().find(|t| t["key"] == key).and_then(|t| t["value"].as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identical_revision_is_reused_and_tagged() {
    let f = Fixture::new();
    let rt = f.runtime();
    let first = rt.register_revision(&spec("web", 1)).await.unwrap();
    assert!(first.as_str().ends_with(&format!(":task-definition/{}-web:1", f.stage)), "{first}");
    assert_eq!(rt.register_revision(&spec("web", 1)).await.unwrap(), first, "same spec, same revision");
    // A fresh runtime (another process) finds it too, through the tags.
    assert_eq!(f.runtime().register_revision(&spec("web", 1)).await.unwrap(), first);
    let second = rt.register_revision(&spec("web", 2)).await.unwrap();
    assert_ne!(second, first);
    let mut changed = spec("web", 2);
    changed.config.env.insert("NEW".into(), "1".into());
    let third = rt.register_revision(&changed).await.unwrap();
    assert_ne!(third, second, "a config change is a new revision");
    // Going back to release 1 (a rollback) reuses its revision.
    assert_eq!(rt.register_revision(&spec("web", 1)).await.unwrap(), first);

    // Read back with the SDK, as planned.
    let client = aws_sdk_ecs::Client::new(&f.moto.sdk_config());
    let out = client
        .describe_task_definition()
        .task_definition(first.as_str())
        .include(aws_sdk_ecs::types::TaskDefinitionField::Tags)
        .send()
        .await
        .unwrap();
    let td = out.task_definition().unwrap();
    assert_eq!(td.family(), Some(format!("{}-web", f.stage).as_str()));
    assert_eq!((td.cpu(), td.memory()), (Some("256"), Some("512")));
    assert_eq!(td.execution_role_arn(), f.settings.execution_role.as_deref());
    let c = &td.container_definitions()[0];
    assert_eq!(c.name(), Some("web"));
    assert_eq!(
        c.image(),
        Some(format!("123456789012.dkr.ecr.eu-central-1.amazonaws.com/shop/web@{}", digest(1)).as_str())
    );
    assert_eq!(c.command(), ["puma", "-p", "8080"]);
    assert_eq!(c.secrets()[0].value_from(), "arn:aws:ssm:eu-central-1:123456789012:parameter/shop/db-url");
    assert_eq!(c.port_mappings()[0].container_port(), Some(8080));
    assert_eq!(c.health_check().unwrap().command()[0], "CMD-SHELL");
    let log = c.log_configuration().unwrap();
    assert_eq!(
        log.options().unwrap().get("awslogs-group").map(String::as_str),
        Some(format!("/ferry/{}", f.stage).as_str())
    );
    let tags: BTreeMap<&str, &str> = out.tags().iter().filter_map(|t| Some((t.key()?, t.value()?))).collect();
    assert_eq!(tags.get("ferry:stage"), Some(&f.stage.as_str()));
    assert_eq!(tags.get("ferry:app"), Some(&"web"));
    assert_eq!(tags.get("ferry:release"), Some(&"1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_creates_then_updates_the_service_as_planned() {
    let f = Fixture::new();
    let rt = f.runtime();
    let v1 = rt.register_revision(&spec("web", 1)).await.unwrap();
    let settings =
        DeploySettings { max_surge: "50%".parse().unwrap(), min_healthy: "75%".parse().unwrap(), ..Default::default() };
    let rollout = rt.deploy("web", &v1, 2, &settings).await.unwrap();

    // Through the runtime's own observe.
    let status = rt.observe(&["web".to_string(), "api".to_string()]).await.unwrap();
    assert_eq!(status.len(), 2);
    let web = &status[0];
    assert_eq!((web.state, web.revision.as_ref(), web.desired), (ServiceState::Active, Some(&v1), 2));
    let primary = web.primary().unwrap();
    assert_eq!((&primary.id, &primary.revision, primary.release), (&rollout, &v1, 1));
    assert_eq!(status[1].state, ServiceState::Missing);
    // Every app of the stage: found by its tags.
    let all = rt.observe(&[]).await.unwrap();
    assert_eq!(all.iter().map(|s| s.app.as_str()).collect::<Vec<_>>(), ["web"]);

    // Through boto3.
    let read = f.read_service("web");
    let s = &read["service"];
    assert_eq!(s["taskDefinition"], v1.as_str());
    assert_eq!(s["desiredCount"], 2);
    assert_eq!(s["launchType"], "FARGATE");
    assert_eq!(tag(&s["tags"], "ferry:stage"), Some(f.stage.as_str()));
    assert_eq!(tag(&s["tags"], "ferry:app"), Some("web"));
    let vpc = &s["networkConfiguration"]["awsvpcConfiguration"];
    assert_eq!(vpc["subnets"], serde_json::json!(f.settings.subnets));
    assert_eq!(vpc["assignPublicIp"], "DISABLED");
    assert_eq!(
        read["taskDefinition"]["containerDefinitions"][0]["image"],
        format!("{}@{}", spec("web", 1).image, digest(1))
    );
    assert_eq!(tag(&read["taskDefinitionTags"], "ferry:release"), Some("1"));

    // An update to release 2 (moto keeps deploymentConfiguration on update only).
    let v2 = rt.register_revision(&spec("web", 2)).await.unwrap();
    rt.deploy("web", &v2, 3, &settings).await.unwrap();
    let read = f.read_service("web");
    let s = &read["service"];
    assert_eq!((s["taskDefinition"].as_str(), s["desiredCount"].as_i64()), (Some(v2.as_str()), Some(3)));
    let dc = &s["deploymentConfiguration"];
    assert_eq!((dc["minimumHealthyPercent"].as_i64(), dc["maximumPercent"].as_i64()), (Some(75), Some(150)));
    assert_eq!(dc["deploymentCircuitBreaker"], serde_json::json!({"enable": true, "rollback": true}));
    assert_eq!(rt.observe(&["web".to_string()]).await.unwrap()[0].revision.as_ref(), Some(&v2));

    // Rolling back is an update to the previous task definition.
    rt.roll_back("web", &v1).await.unwrap();
    assert_eq!(f.read_service("web")["service"]["taskDefinition"], v1.as_str());
    rt.scale("web", 1).await.unwrap();
    assert_eq!(f.read_service("web")["service"]["desiredCount"], 1);
    rt.remove("web").await.unwrap();
    let gone = rt.observe(&["web".to_string()]).await.unwrap();
    assert_ne!(gone[0].state, ServiceState::Active);
    // Deploying a removed app creates its service anew.
    rt.deploy("web", &v2, 1, &settings).await.unwrap();
    let read = f.read_service("web");
    assert_eq!(
        (read["service"]["status"].as_str(), read["service"]["taskDefinition"].as_str()),
        (Some("ACTIVE"), Some(v2.as_str()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_off_tasks_run_with_overrides_and_stop() {
    let f = Fixture::new();
    let rt = f.runtime();
    let v1 = rt.register_revision(&spec("web", 1)).await.unwrap();
    let task = rt
        .run_task(&TaskSpec {
            app: "web".into(),
            revision: v1.clone(),
            command: Some(vec!["bin/rails".into(), "db:migrate".into()]),
            env: BTreeMap::from([("VERBOSE".to_string(), "1".to_string())]),
            name: "migrate".into(),
        })
        .await
        .unwrap();
    let status = rt.observe(&["web".to_string()]).await.unwrap();
    let t = status[0].task(&task).expect("the task is observed");
    assert_eq!((t.kind, t.name.as_deref(), &t.revision, t.release), (TaskKind::OneOff, Some("migrate"), &v1, 1));
    let client = aws_sdk_ecs::Client::new(&f.moto.sdk_config());
    let described = client.describe_tasks().cluster(&f.settings.cluster).tasks(task.as_str()).send().await.unwrap();
    let d = &described.tasks()[0];
    assert_eq!(d.started_by(), Some("ferry"));
    let o = &d.overrides().unwrap().container_overrides()[0];
    assert_eq!(o.command(), ["bin/rails", "db:migrate"]);

    rt.stop_task("web", &task).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = rt.observe(&["web".to_string()]).await.unwrap();
        let t = s[0].task(&task).expect("a stopped task is still observed").clone();
        if t.last_status == Lifecycle::Stopped {
            assert_eq!(t.stopped_reason.as_deref(), Some("stopped by ferry"));
            break;
        }
        assert!(Instant::now() < deadline, "task never stopped: {t:?}");
    }
}

#[test]
fn ecr_verifies_digests_and_resolves_tags() {
    let moto = Moto::shared();
    let name = unique("shop/web-");
    let repo = python_json(moto, SETUP_REPOSITORY, &[&name]);
    let uri = repo["uri"].as_str().unwrap();
    let pushed: Digest = repo["digest"].as_str().unwrap().parse().unwrap();
    let registry = EcrRegistry::new(&moto.sdk_config());
    registry.verify(uri, &pushed).unwrap();
    registry.verify(&name, &pushed).unwrap();
    match registry.verify(uri, &digest(9)) {
        Err(RegistryError::DigestNotFound { repo, digest: d }) => assert_eq!((repo.as_str(), d), (uri, digest(9))),
        other => panic!("{other:?}"),
    }
    assert!(matches!(registry.verify(&unique("nothing-"), &pushed), Err(RegistryError::DigestNotFound { .. })));
    assert_eq!(registry.resolve_tag(uri, "prod").unwrap(), pushed);
    assert!(matches!(registry.resolve_tag(uri, "nope"), Err(RegistryError::TagNotFound { .. })));
}

/// `ferry images sync` on an ECS stage resolves the tracked tag in ECR: each manifest pushed
/// under the tag (PutImage through boto3) becomes the app's next release, activated in the
/// stage file, and the move is recorded for `images history`.
#[test]
fn images_sync_follows_a_tag_in_ecr() {
    let f = Fixture::new();
    let name = unique("shop/api-");
    let repo = python_json(f.moto, SETUP_REPOSITORY, &[&name]);
    let (uri, first) = (repo["uri"].as_str().unwrap(), repo["digest"].as_str().unwrap());
    let p = f.project(uri, first);
    let file = format!("stages/{}.toml", f.stage);
    p.write(&file, &p.read(&file).replace("active = 1\n", "active = 1\ntrack = \"prod\"\n"));
    let run = |args: &[&str]| {
        let mut cmd = p.ferry();
        f.moto.configure(&mut cmd);
        crate::support::Run(cmd.args(args).output().unwrap())
    };
    let quiet = run(&["images", "sync", "-s", &f.stage]);
    assert!(quiet.expect_code(0).stdout().is_empty(), "the tag names release 1: {}", quiet.stdout());

    let mut digests = vec![first.to_string()];
    for (release, build) in [(2, "build-2"), (3, "build-3")] {
        let pushed = python_json(f.moto, PUSH_TAG, &[&name, build, "prod"]);
        let pushed = pushed.as_str().unwrap().to_string();
        let sync = run(&["images", "sync", "-s", &f.stage]);
        sync.expect_code(0);
        let moved = format!(
            "api follows tag `prod`: {} → {} (new release {release})",
            &digests[release - 2][..19],
            &pushed[..19]
        );
        assert!(sync.stdout().contains(&moved), "{}", sync.stdout());
        let text = p.read(&file);
        assert!(text.contains(&format!("{release} = \"{pushed}\"")), "{text}");
        assert!(text.contains(&format!("active = {release}\n")), "{text}");
        digests.push(pushed);
    }
    let history = run(&["images", "history", "api", "--json"]);
    let imports: Value = serde_json::from_str(&history.expect_code(0).stdout()).unwrap();
    let moves: Vec<(&str, &str, u64)> = imports
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["from"].as_str().unwrap(), m["to"].as_str().unwrap(), m["release"].as_u64().unwrap()))
        .collect();
    assert_eq!(moves, [(&*digests[0], &*digests[1], 2), (&*digests[1], &*digests[2], 3)]);
    assert!(imports.as_array().unwrap().iter().all(|m| m["tag"] == "prod" && m["stage"] == f.stage.as_str()));
}

/// What the fault layer makes ECS report.
#[derive(Debug, Default)]
struct Faults {
    /// This deployment (by id): FAILED by the circuit breaker. By id, not task definition:
    /// moto's deployment keeps naming the old task definition after an update.
    fail_deployment: Mutex<Option<String>>,
    /// A task of a revision that stopped before turning healthy, reported once a
    /// DescribeServices answer shows the service on that revision (as ECS would: the task
    /// is started by the deployment to it).
    stopped_task: Mutex<Option<StoppedTask>>,
    /// Whether the stopped task's revision has been seen on the service.
    deployed: Mutex<bool>,
    /// Service events, oldest first; `Some(revision)`: only once the service is on it.
    events: Mutex<Vec<(String, Option<String>)>>,
    /// A task (by ARN) that ends with these container exit codes, by container name.
    exits: Mutex<Option<(String, ExitCodes)>>,
}

/// Exit codes by container name.
type ExitCodes = Vec<(String, i32)>;

#[derive(Debug, Clone)]
struct StoppedTask {
    /// The deployment whose `failedTasks` counts it (`None`: ECS has not counted it yet).
    rollout: Option<String>,
    revision: String,
    arn: String,
    service: String,
    container: String,
}

#[derive(Debug)]
struct FaultLayer(Arc<Faults>);

impl Intercept for FaultLayer {
    fn name(&self) -> &'static str {
        "FaultLayer"
    }

    fn modify_before_completion(
        &self,
        context: &mut FinalizerInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(Ok(output)) = context.output_or_error_mut() else { return Ok(()) };
        let failing = self.0.fail_deployment.lock().unwrap().clone();
        let stopped = self.0.stopped_task.lock().unwrap().clone();
        if let Some(out) = output.downcast_mut::<DescribeServicesOutput>() {
            for s in out.services.iter_mut().flatten() {
                let on = s.task_definition.clone();
                if stopped.as_ref().is_some_and(|t| Some(&t.revision) == on.as_ref()) {
                    *self.0.deployed.lock().unwrap() = true;
                }
                let events = self.0.events.lock().unwrap().clone();
                // An event for any revision happened long before; one on a revision, now.
                let now = chrono::Utc::now().timestamp_millis();
                let mut shown: Vec<ServiceEvent> = events
                    .iter()
                    .enumerate()
                    .filter(|(_, (_, only_on))| only_on.is_none() || only_on == &on)
                    .map(|(n, (message, only_on))| {
                        let at = if only_on.is_some() { now } else { now - 3_600_000 };
                        ServiceEvent::builder()
                            .id(format!("event-{n}"))
                            .created_at(aws_sdk_ecs::primitives::DateTime::from_millis(at))
                            .message(message)
                            .build()
                    })
                    .collect();
                shown.reverse(); // ECS lists the newest first
                s.events = Some(shown);
                for d in s.deployments.iter_mut().flatten() {
                    if failing.is_some() && d.id == failing {
                        d.rollout_state = Some(DeploymentRolloutState::Failed);
                        d.rollout_state_reason = Some("ECS deployment circuit breaker: tasks failed to start.".into());
                        d.failed_tasks = 3;
                    }
                    if stopped.as_ref().is_some_and(|t| t.rollout.is_some() && d.id == t.rollout) {
                        d.failed_tasks = 3;
                    }
                }
            }
        }
        if let (Some(out), Some((arn, codes))) =
            (output.downcast_mut::<DescribeTasksOutput>(), self.0.exits.lock().unwrap().clone())
        {
            for t in out.tasks.iter_mut().flatten().filter(|t| t.task_arn.as_ref() == Some(&arn)) {
                t.last_status = Some("STOPPED".into());
                t.desired_status = Some("STOPPED".into());
                t.stopped_reason = Some("Essential container in task exited".into());
                t.containers = Some(
                    codes.iter().map(|(name, code)| Container::builder().name(name).exit_code(*code).build()).collect(),
                );
            }
        }
        let Some(StoppedTask { revision: td, arn, service, container, .. }) =
            stopped.filter(|_| *self.0.deployed.lock().unwrap())
        else {
            return Ok(());
        };
        if let Some(out) = output.downcast_mut::<ListTasksOutput>() {
            out.task_arns.get_or_insert_with(Vec::new).push(arn);
        } else if let Some(out) = output.downcast_mut::<DescribeTasksOutput>() {
            // ECS would list the made-up ARN under failures (moto lists nothing): answer it.
            out.failures.get_or_insert_with(Vec::new).retain(|f| f.arn.as_ref() != Some(&arn));
            let tasks = out.tasks.get_or_insert_with(Vec::new);
            if !tasks.iter().any(|t| t.task_arn.as_ref() == Some(&arn)) {
                let now = aws_sdk_ecs::primitives::DateTime::from_millis(chrono::Utc::now().timestamp_millis());
                tasks.push(
                    Task::builder()
                        .task_arn(arn)
                        .task_definition_arn(td)
                        .group(format!("service:{service}"))
                        .last_status("STOPPED")
                        .desired_status("STOPPED")
                        .health_status(HealthStatus::from("UNKNOWN"))
                        .stopped_reason("Essential container in task exited")
                        .started_at(now)
                        .stopped_at(now)
                        .containers(Container::builder().name(container).exit_code(3).build())
                        .build(),
                );
            }
        }
        Ok(())
    }
}

fn watch(app: &str, rollout: ferry::runtime::RolloutId, target: ferry::runtime::RevisionId) -> RolloutWatch {
    let now = Instant::now();
    RolloutWatch {
        app: app.into(),
        watched: Watched::Deploy { rollout },
        target,
        desired: 1,
        started: now,
        deadline: now + Duration::from_secs(300),
        old_tasks: Default::default(),
        failed_before: 0,
        restarts_in_place: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_circuit_breaker_failure_rolls_the_service_back_to_the_previous_revision() {
    let f = Fixture::new();
    let faults = Arc::new(Faults::default());
    let rt: Arc<dyn Runtime> = Arc::new(f.faulty_runtime(faults.clone()));
    let v1 = rt.register_revision(&spec("web", 1)).await.unwrap();
    rt.deploy("web", &v1, 1, &DeploySettings::default()).await.unwrap();
    let v2 = rt.register_revision(&spec("web", 2)).await.unwrap();
    let rollout = rt.deploy("web", &v2, 1, &DeploySettings::default()).await.unwrap();
    *faults.fail_deployment.lock().unwrap() = Some(rollout.to_string());

    let w = watch("web", rollout, v2.clone());
    let status = rt.observe(&["web".to_string()]).await.unwrap().remove(0);
    let reason = match judge(&w, &status, Instant::now()) {
        Verdict::Failed { reason, .. } => reason,
        other => panic!("the engine must fail a rollout ECS failed: {other:?}"),
    };
    assert!(reason.contains("circuit breaker"), "{reason}");

    let ctx = OpContext {
        runtime: rt.clone(),
        registry: Arc::new(EcrRegistry::new(&f.moto.sdk_config())),
        local_releases: None,
    };
    let started =
        Started { watch: w, previous: Some(v1.clone()), previous_release: None, scale_from: None, events_before: None };
    let text = ops::roll_back(&ctx, &started, &reason, None).await;
    assert!(text.contains(&format!("rolled back to {v1}")), "{text}");
    assert_eq!(
        f.read_service("web")["service"]["taskDefinition"],
        v1.as_str(),
        "the service runs the previous revision"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_stops_before_turning_healthy_is_reported_with_exit_code_reason_and_logs() {
    let f = Fixture::new();
    let faults = Arc::new(Faults::default());
    let rt: Arc<dyn Runtime> = Arc::new(f.faulty_runtime(faults.clone()));
    let v1 = rt.register_revision(&spec("web", 1)).await.unwrap();
    rt.deploy("web", &v1, 1, &DeploySettings::default()).await.unwrap();
    let v2 = rt.register_revision(&spec("web", 2)).await.unwrap();
    let rollout = rt.deploy("web", &v2, 1, &DeploySettings::default()).await.unwrap();
    let task_id = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";
    let arn = format!("arn:aws:ecs:{REGION}:123456789012:task/{}/{task_id}", f.settings.cluster);
    *faults.stopped_task.lock().unwrap() = Some(StoppedTask {
        rollout: Some(rollout.to_string()),
        revision: v2.to_string(),
        arn,
        service: format!("{}-web", f.stage),
        container: "web".into(),
    });
    python_json(
        f.moto,
        PUT_LOGS,
        &[&format!("/ferry/{}", f.stage), &format!("ferry/web/{task_id}"), "booting", "panic: DATABASE_URL is not set"],
    );

    let w = watch("web", rollout, v2.clone());
    let status = rt.observe(&["web".to_string()]).await.unwrap().remove(0);
    let (reason, culprit) = match judge(&w, &status, Instant::now()) {
        Verdict::Failed { reason, task } => (reason, task),
        other => panic!("{other:?}"),
    };
    let culprit = culprit.expect("the stopped task explains the failure");
    assert_eq!((culprit.id.as_str(), culprit.exit_code, culprit.kind), (task_id, Some(3), TaskKind::Service));

    let ctx = OpContext {
        runtime: rt.clone(),
        registry: Arc::new(EcrRegistry::new(&f.moto.sdk_config())),
        local_releases: None,
    };
    let started =
        Started { watch: w, previous: Some(v1.clone()), previous_release: None, scale_from: None, events_before: None };
    let text = ops::roll_back(&ctx, &started, &reason, Some(&culprit)).await;
    for expected in ["exit code 3", "stopped: Essential container in task exited", "| panic: DATABASE_URL is not set"] {
        assert!(text.contains(expected), "{expected:?} missing from:\n{text}");
    }
    assert_eq!(f.read_service("web")["service"]["taskDefinition"], v1.as_str());
}

/// Records what the engine reports.
#[derive(Default)]
struct RecordingHook {
    events: Vec<String>,
}

impl Hook for RecordingHook {
    fn service_event(&mut self, op: &Operation, event: &ferry::runtime::ServiceEvent) {
        self.events.push(format!("{}: {}", op.app(), event.message));
    }
}

fn running(release: u64) -> Running {
    let s = spec("web", release);
    Running {
        release,
        digest: s.digest,
        image: s.image,
        scale: 1,
        config_hash: ferry::state::config_hash(&s.config),
        config: s.config,
    }
}

/// The apply engine on ECS, end to end but for two facts only ECS produces and the
/// fault layer stands in for: a task of the new revision that stops (exit code 3), counted
/// in the deployment's `failedTasks` (the count is what makes the watch list stopped
/// tasks), and the service events around it (one from long before the deploy).
/// The deploy must fail at its first poll — not at its 5-minute timeout — with the task's
/// stop reason, exit code, last log lines and the events since the deploy (not older
/// ones), which the hook also saw as they came; the service must run the previous task
/// definition again (read back with boto3); state records the deployment `failed`; and the
/// new task definition carries the deployment's `ferry:deployment` tag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_fails_at_the_first_new_task_that_stops_and_returns_to_the_previous_revision() {
    let f = Fixture::new();
    let faults = Arc::new(Faults::default());
    let rt: Arc<dyn Runtime> = Arc::new(f.faulty_runtime(faults.clone()));
    let v1 = rt.register_revision(&spec("web", 1)).await.unwrap();
    // moto keeps this deployment through later updates: the deploy's rollout is it too.
    let rollout = rt.deploy("web", &v1, 1, &DeploySettings::default()).await.unwrap();
    // Registered now only to know the ARN the fault names; the engine finds and reuses it.
    let v2 = rt.register_revision(&spec("web", 2)).await.unwrap();
    let task_id = "9a8b7c6d5e4f30211203f4e5d6c7b8a9";
    let service = format!("{}-web", f.stage);
    *faults.stopped_task.lock().unwrap() = Some(StoppedTask {
        rollout: Some(rollout.to_string()),
        revision: v2.to_string(),
        arn: format!("arn:aws:ecs:{REGION}:123456789012:task/{}/{task_id}", f.settings.cluster),
        service: service.clone(),
        container: "web".into(),
    });
    *faults.events.lock().unwrap() = vec![
        (format!("(service {service}) has reached a steady state."), None),
        (format!("(service {service}) has started 1 tasks: (task {task_id})."), Some(v2.to_string())),
        (format!("(service {service}) has stopped 1 running tasks: (task {task_id})."), Some(v2.to_string())),
    ];
    python_json(
        f.moto,
        PUT_LOGS,
        &[&format!("/ferry/{}", f.stage), &format!("ferry/web/{task_id}"), "booting", "panic: DATABASE_URL is not set"],
    );

    let mut to = running(2);
    to.config.deploy.timeout = "5m".parse().unwrap();
    let cs = Changeset {
        stage: f.stage.clone(),
        operations: vec![Operation::Deploy {
            app: "web".into(),
            kind: DeployKind::Activate,
            from: Some(running(1)),
            to,
            description: "Deploy release 2".into(),
            record_as: None,
        }],
        ..Changeset::default()
    };
    let store = InMemoryStateStore::new();
    let mut session =
        LockedStage::acquire(Box::new(store), &f.stage, LockInfo::for_this_process("test"), Duration::ZERO).unwrap();
    let engine = Engine {
        ops: OpContext {
            runtime: rt.clone(),
            registry: Arc::new(EcrRegistry::new(&f.moto.sdk_config())),
            local_releases: None,
        },
        parallelism: None,
        source: Default::default(),
        builds: Default::default(),
        stream_logs: false,
        abort: AbortSignal::new(),
    };
    let mut hook = RecordingHook::default();
    let began = Instant::now();
    let report = engine.apply(&cs, &mut session, &mut hook).await.unwrap();
    assert!(began.elapsed() < Duration::from_secs(60), "failed fast, not at the timeout: {:?}", began.elapsed());

    let d = &report.deployments[0];
    assert_eq!(d.status, DeploymentStatus::Failed, "{report:?}");
    let reason = d.reason.as_deref().unwrap();
    for expected in [
        &format!("new task {task_id} stopped before the rollout was healthy: Essential container in task exited"),
        "exit code 3",
        "| panic: DATABASE_URL is not set",
        "service events:",
        &format!("has started 1 tasks: (task {task_id})"),
        &format!("has stopped 1 running tasks: (task {task_id})"),
        &format!("rolled back to {v1}"),
    ] {
        assert!(reason.contains(expected), "{expected:?} missing from:\n{reason}");
    }
    assert!(!reason.contains("steady state"), "an event from before the deploy is not its own:\n{reason}");
    assert_eq!(
        hook.events,
        [
            format!("web: (service {service}) has started 1 tasks: (task {task_id})."),
            format!("web: (service {service}) has stopped 1 running tasks: (task {task_id})."),
        ],
        "events are shown as they come, oldest first, each once"
    );
    let recorded = session.state().apps["web"].history.last().unwrap().clone();
    assert_eq!((recorded.number, recorded.status), (d.number, DeploymentStatus::Failed));

    let read = f.read_service("web");
    assert_eq!(read["service"]["taskDefinition"], v1.as_str(), "the service runs the previous revision");
    let label = format!("v{}", d.number);
    let td = python_json(
        f.moto,
        "import boto3, json, sys\nprint(json.dumps(boto3.client('ecs').describe_task_definition(taskDefinition=sys.argv[1], include=['TAGS']).get('tags', [])))",
        &[v2.as_str()],
    );
    assert_eq!(tag(&td, "ferry:deployment"), Some(label.as_str()), "{td:#}");
    assert_eq!(tag(&td, "ferry:release"), Some("2"), "{td:#}");
}

/// The whole path through the `ferry` binary and the standard AWS chain (`AWS_ENDPOINT_URL`):
/// ECR verification, task definition registration and the service creation happen against
/// the emulator; since moto never starts a service's tasks, the gate must *not* report
/// success — the deploy fails at its timeout, the new service is removed (nothing served
/// before), the deployment is recorded `failed`, and `commit` exits 1.
#[test]
fn commit_of_an_ecs_stage_is_strict_about_done() {
    let f = Fixture::new();
    let repo = python_json(f.moto, SETUP_REPOSITORY, &[&unique("shop/api-")]);
    let (uri, pushed) = (repo["uri"].as_str().unwrap(), repo["digest"].as_str().unwrap());
    let p = f.project(uri, pushed);
    let mut cmd = p.ferry();
    f.moto.configure(&mut cmd);
    let run = crate::support::Run(cmd.args(["commit", "--yes", "-s", &f.stage]).output().unwrap());
    run.expect_code(1);
    let all = format!("{}{}", run.stdout(), run.stderr());
    assert!(all.contains("not healthy within the deploy timeout (3s)"), "{all}");

    let state: Value = serde_json::from_str(&p.read(&format!(".ferry/state/{}.json", f.stage))).unwrap();
    let history = state["apps"]["api"]["history"].as_array().cloned().unwrap_or_default();
    assert_eq!(history.last().map(|d| d["status"].clone()), Some(Value::from("failed")), "{state:#}");

    // What ferry left on the emulator, read back with boto3: the revision it registered,
    // and the service it created and removed again.
    let read = f.moto.python(
        r#"
import boto3, json, sys
ecs = boto3.client("ecs")
arns = ecs.list_task_definitions(familyPrefix=sys.argv[2])["taskDefinitionArns"]
s = ecs.describe_services(cluster=sys.argv[1], services=[sys.argv[2]])["services"]
print(json.dumps({"revisions": arns, "status": [x["status"] for x in s]}))
"#,
        &[&f.settings.cluster, &format!("{}-api", f.stage)],
    );
    let read: Value = serde_json::from_slice(&read.stdout).unwrap();
    assert_eq!(read["revisions"].as_array().unwrap().len(), 1, "{read}");
    assert_ne!(read["status"], serde_json::json!(["ACTIVE"]), "{read}");
}

/// Sets how moto advances ECS tasks (its state manager): `{"progression": "manual",
/// "times": N}` moves a task one step per N DescribeTasks, `{"progression": "immediate"}`
/// straight to STOPPED.
const SET_TASK_TRANSITION: &str = r#"
import json, os, sys, urllib.request
body = json.dumps({"model_name": "ecs::task", "transition": json.loads(sys.argv[1])}).encode()
req = urllib.request.Request(os.environ["AWS_ENDPOINT_URL"] + "/moto-api/state-manager/set-transition", data=body, method="POST")
urllib.request.urlopen(req).read()
"#;

/// Kills a background `ferry` when dropped (a failing test leaves nothing running).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `ferry task run` on an ECS stage, through the binary and the standard chain: RunTask
/// with the command and env overrides, `startedBy` ferry and the stage's awsvpc network;
/// the task's CloudWatch output printed *while it runs* (on a server of its own, moto's
/// state manager holds the task RUNNING until the test lets it stop); ferry exits with the
/// essential container's exit code (moto's containers always exit 0: a non-zero code is
/// not something the emulator can produce); `ferry task list` shows it. Read back with boto3.
#[test]
fn task_run_on_ecs_streams_its_cloudwatch_output_while_it_runs_and_exits_with_its_code() {
    let moto = Moto::start(&[]);
    let f = Fixture::on(&moto);
    python_json(&moto, SET_TASK_TRANSITION, &[r#"{"progression": "manual", "times": 1000000}"#]);
    let repo = python_json(&moto, SETUP_REPOSITORY, &[&unique("shop/api-")]);
    let p = f.project(repo["uri"].as_str().unwrap(), repo["digest"].as_str().unwrap());
    let mut cmd = p.ferry();
    moto.configure(&mut cmd);
    cmd.args(["task", "run", "-s", &f.stage, "api", "--env", "DRY_RUN=1", "--", "bin/migrate", "--verbose"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = KillOnDrop(cmd.spawn().unwrap());
    let stdout = child.0.stdout.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });

    // The task ferry started, seen with another client.
    let ecs = aws_sdk_ecs::Client::new(&moto.sdk_config());
    let deadline = Instant::now() + Duration::from_secs(90);
    let arn = loop {
        let listed = ferry::aws::block_on(ecs.list_tasks().cluster(&f.settings.cluster).started_by("ferry").send());
        if let Some(arn) = listed.ok().and_then(|l| l.task_arns().first().cloned()) {
            break arn;
        }
        assert!(Instant::now() < deadline, "ferry started no task");
        std::thread::sleep(Duration::from_millis(100));
    };
    let id = arn.rsplit('/').next().unwrap().to_string();
    python_json(
        &moto,
        PUT_LOGS,
        &[&format!("/ferry/{}", f.stage), &format!("ferry/api/{id}"), "migrating 1 of 2", "migrated 2 of 2"],
    );
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l == "migrated 2 of 2") {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(e) => panic!("the task's output was not streamed ({e}); got {seen:?}"),
        }
    }
    let task = python_json(
        &moto,
        "import boto3, json, sys\nprint(json.dumps(boto3.client('ecs').describe_tasks(cluster=sys.argv[1], tasks=[sys.argv[2]], include=['TAGS'])['tasks'][0], default=str))",
        &[&f.settings.cluster, &arn],
    );
    assert_eq!(task["lastStatus"], "RUNNING", "the output came while the task ran");

    // Let it end; ferry follows it to STOPPED and exits with its code.
    python_json(&moto, SET_TASK_TRANSITION, &[r#"{"progression": "immediate"}"#]);
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "ferry task run did not end after the task stopped");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(child.0.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(err.contains(&format!("task {id} of app api (release 1) started")), "{err}");
    seen.extend(lines.iter());
    assert_eq!(seen, ["migrating 1 of 2", "migrated 2 of 2"], "each line once, in order");

    assert_eq!(task["startedBy"], "ferry");
    assert_eq!(
        task["taskDefinitionArn"].as_str().unwrap().rsplit('/').next(),
        Some(format!("{}-api:1", f.stage).as_str())
    );
    let o = &task["overrides"]["containerOverrides"][0];
    assert_eq!(o["name"], "api");
    assert_eq!(o["command"], serde_json::json!(["bin/migrate", "--verbose"]));
    assert_eq!(o["environment"], serde_json::json!([{"name": "DRY_RUN", "value": "1"}]));
    assert_eq!(tag(&task["tags"], "ferry:task"), Some("one-off"));
    let subnet = task["attachments"][0]["details"].as_array().unwrap().iter().find(|d| d["name"] == "subnetId");
    assert_eq!(subnet.map(|d| d["value"].clone()), Some(Value::from(f.settings.subnets[0].clone())));

    let mut cmd = p.ferry();
    moto.configure(&mut cmd);
    let list = crate::support::Run(cmd.args(["task", "list", "-s", &f.stage, "api"]).output().unwrap());
    list.expect_code(0);
    let row = list.stdout().lines().find(|l| l.starts_with(&id[..12])).map(str::to_string);
    assert!(row.as_deref().is_some_and(|r| r.contains("one-off") && r.contains("STOPPED")), "{}", list.stdout());
}

/// A one-off task on ECS ends with the exit code of the app's (essential) container, not of
/// a sidecar listed first; its whole CloudWatch output is passed on, also lines that were
/// only there once it had stopped. moto's containers always exit 0, so the fault layer
/// reports the task STOPPED with a sidecar that exited 0 and the app's container with 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_off_task_ends_with_its_essential_containers_exit_code_and_all_its_output() {
    let f = Fixture::new();
    let faults = Arc::new(Faults::default());
    let rt = f.faulty_runtime(faults.clone());
    let v1 = rt.register_revision(&spec("web", 1)).await.unwrap();
    let spec = TaskSpec {
        app: "web".into(),
        revision: v1,
        command: Some(vec!["bin/rails".into(), "db:migrate".into()]),
        env: BTreeMap::new(),
        name: "migrate".into(),
    };
    let task = rt.run_task(&spec).await.unwrap();
    let arn = format!("arn:aws:ecs:{REGION}:123456789012:task/{}/{task}", f.settings.cluster);
    python_json(
        f.moto,
        PUT_LOGS,
        &[
            &format!("/ferry/{}", f.stage),
            &format!("ferry/web/{task}"),
            "== 20260101 AddIndex: migrating",
            "PG::DuplicateTable",
        ],
    );
    *faults.exits.lock().unwrap() = Some((arn, vec![("log-router".into(), 0), ("web".into(), 3)]));
    let mut lines = Vec::new();
    let status = tokio::time::timeout(
        Duration::from_secs(60),
        watch_task(
            &rt,
            "web",
            &task,
            TaskWait {
                output: Some(&mut |l: &ferry::runtime::LogLine| lines.push(l.text.clone())),
                ..TaskWait::default()
            },
        ),
    )
    .await
    .expect("the task is followed to its end")
    .unwrap();
    let TaskEnd::Stopped(status) = status else { panic!("no deadline or abort was given: {status:?}") };
    assert_eq!((status.last_status, status.exit_code), (Lifecycle::Stopped, Some(3)), "{status:?}");
    assert_eq!(lines, ["== 20260101 AddIndex: migrating", "PG::DuplicateTable"]);
}

/// `ferry ps` and `ferry logs` on an ECS stage, through the binary and the standard chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ps_and_logs_reach_an_ecs_stage() {
    let f = Fixture::new();
    let rt = f.runtime();
    let v1 = rt.register_revision(&spec("api", 1)).await.unwrap();
    rt.deploy("api", &v1, 2, &DeploySettings::default()).await.unwrap();
    let p = f.project(&spec("api", 1).image, digest(1).as_str());
    let run = |args: &[&str]| {
        let mut cmd = p.ferry();
        f.moto.configure(&mut cmd);
        crate::support::Run(cmd.args(args).output().unwrap())
    };
    let ps = run(&["ps", "-s", &f.stage, "--json"]);
    ps.expect_code(0);
    let ps: Value = serde_json::from_str(&ps.stdout()).unwrap();
    let api = &ps["stages"][0]["services"][0];
    assert_eq!((api["app"].as_str(), api["state"].as_str()), (Some("api"), Some("ACTIVE")), "{ps:#}");
    assert_eq!((api["revision"].as_str(), api["desired"].as_u64()), (Some(v1.as_str()), Some(2)));

    python_json(f.moto, PUT_LOGS, &[&format!("/ferry/{}", f.stage), "ferry/api/abc123", "listening on 8080"]);
    python_json(f.moto, PUT_LOGS, &[&format!("/ferry/{}", f.stage), "ferry/other/def456", "not api"]);
    let logs = run(&["logs", "-s", &f.stage, "api"]);
    logs.expect_code(0);
    assert!(logs.stdout().contains("abc123 listening on 8080"), "{}", logs.stdout());
    assert!(!logs.stdout().contains("not api"), "{}", logs.stdout());
}

/// Counts the ECS requests a runtime sends, by action (`X-Amz-Target`), retries included.
#[derive(Debug, Default)]
struct RequestCount(Mutex<BTreeMap<String, usize>>);

impl RequestCount {
    /// The counts so far, cleared.
    fn take(&self) -> BTreeMap<String, usize> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

#[derive(Debug)]
struct CountingLayer(Arc<RequestCount>);

impl Intercept for CountingLayer {
    fn name(&self) -> &'static str {
        "CountingLayer"
    }

    fn read_before_transmit(
        &self,
        context: &aws_sdk_ecs::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let target = context.request().headers().get("x-amz-target").unwrap_or("?");
        let action = target.rsplit('.').next().unwrap_or(target).to_string();
        *self.0 .0.lock().unwrap().entry(action).or_default() += 1;
        Ok(())
    }
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// A regression guard on what a deploy of several apps costs in requests, step by step as
/// the engine makes them: a revision state never saw is registered at once (no family
/// search) with its `ferry:deployment` tag (no TagResource); the one state records as
/// serving costs nothing; one recorded but not serving, one DescribeTaskDefinition; a
/// deploy is one UpdateService (for a new service, a DescribeServices and CreateService
/// after it); and a look of
/// the watch at services whose new deployment runs no task yet is one DescribeServices
/// for up to 10 of them — no ListTasks, no DescribeTasks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_of_several_apps_costs_few_requests() {
    let f = Fixture::new();
    let count = Arc::new(RequestCount::default());
    let sdk = f.moto.sdk_config();
    let ecs = aws_sdk_ecs::Client::from_conf(ecs_config(&sdk).interceptor(CountingLayer(count.clone())).build());
    let rt = EcsRuntime::from_clients(&f.stage, &f.settings, ecs, aws_sdk_cloudwatchlogs::Client::new(&sdk));
    let apps: Vec<String> = (1..=3).map(|n| format!("app{n}")).collect();
    let known = |deployment| RecordedRevisions { any: true, deployment: Some(deployment), ..Default::default() };

    let mut first = Vec::new();
    for app in &apps {
        first.push(rt.register_recorded(&spec(app, 1), &known(1)).await.unwrap());
    }
    assert_eq!(count.take(), counts(&[("RegisterTaskDefinition", 3)]));
    for (app, v1) in apps.iter().zip(&first) {
        rt.deploy(app, v1, 1, &DeploySettings::default()).await.unwrap();
        rt.label_deployment(app, v1, 1).await.unwrap();
    }
    // A new service: the UpdateService refused, a look for one being deleted, the create.
    assert_eq!(
        count.take(),
        counts(&[("CreateService", 3), ("DescribeServices", 3), ("UpdateService", 3)]),
        "no TagResource: labelled at registration"
    );

    // Release 2: new revisions; release 1 serving, from state.
    let mut second = Vec::new();
    for (app, v1) in apps.iter().zip(&first) {
        second.push(rt.register_recorded(&spec(app, 2), &known(2)).await.unwrap());
        let serving = RecordedRevisions { matching: vec![v1.clone()], any: true, serving: true, deployment: None };
        assert_eq!(&rt.register_recorded(&spec(app, 1), &serving).await.unwrap(), v1);
    }
    assert_eq!(count.take(), counts(&[("RegisterTaskDefinition", 3)]));
    for (app, v2) in apps.iter().zip(&second) {
        rt.deploy(app, v2, 1, &DeploySettings::default()).await.unwrap();
        rt.label_deployment(app, v2, 2).await.unwrap();
    }
    assert_eq!(count.take(), counts(&[("UpdateService", 3)]));
    let statuses = rt.observe_changes(&apps, Duration::ZERO).await.unwrap();
    assert!(statuses.iter().all(|s| s.state == ServiceState::Active), "{statuses:?}");
    assert_eq!(count.take(), counts(&[("DescribeServices", 1)]));

    // Back to release 1 in another process: the recorded revision is checked once, reused
    // and relabelled.
    let rt = f.runtime();
    let recorded =
        RecordedRevisions { matching: vec![first[0].clone()], any: true, serving: false, deployment: Some(3) };
    assert_eq!(rt.register_recorded(&spec("app1", 1), &recorded).await.unwrap(), first[0]);
    let td = python_json(
        f.moto,
        "import boto3, json, sys\nprint(json.dumps(boto3.client('ecs').describe_task_definition(taskDefinition=sys.argv[1], include=['TAGS']).get('tags', [])))",
        &[second[0].as_str()],
    );
    assert_eq!(tag(&td, "ferry:deployment"), Some("v2"), "given at registration: {td:#}");
}

/// Verifications of one ECR repository made together share DescribeImages requests (the
/// verify operations of a commit start together), and a missing digest among them is
/// still named on its own while the others pass.
#[test]
fn ecr_verifications_made_together_share_requests() {
    let moto = Moto::shared();
    let name = unique("shop/many-");
    let repo = python_json(moto, SETUP_REPOSITORY, &[&name]);
    let uri = repo["uri"].as_str().unwrap().to_string();
    let mut present: Vec<Digest> = vec![repo["digest"].as_str().unwrap().parse().unwrap()];
    for build in ["b", "c"] {
        present.push(python_json(moto, PUSH_TAG, &[&name, build, build]).as_str().unwrap().parse().unwrap());
    }
    let count = Arc::new(RequestCount::default());
    let sdk = moto.sdk_config();
    let client = aws_sdk_ecr::Client::from_conf(
        aws_sdk_ecr::config::Builder::from(&sdk).interceptor(CountingLayer(count.clone())).build(),
    );
    let registry = Arc::new(EcrRegistry::from_client(client));
    let verify_all = |digests: Vec<Digest>| {
        let threads: Vec<_> = digests
            .into_iter()
            .map(|d| {
                let (registry, uri) = (registry.clone(), uri.clone());
                std::thread::spawn(move || (d.clone(), registry.verify(&uri, &d)))
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect::<Vec<_>>()
    };
    // Ten apps of three releases.
    let asked: Vec<Digest> = (0..10).map(|i| present[i % 3].clone()).collect();
    for (d, result) in verify_all(asked) {
        assert!(result.is_ok(), "{d}: {result:?}");
    }
    let sent = count.take();
    assert!(sent.get("DescribeImages").is_some_and(|&n| (1..=3).contains(&n)), "{sent:?}");

    // Announced first, as the apply engine does with a changeset's digests: one request
    // for all, whichever verification comes first, and none for the ones after it.
    let fresh = Arc::new(EcrRegistry::from_client(aws_sdk_ecr::Client::from_conf(
        aws_sdk_ecr::config::Builder::from(&sdk).interceptor(CountingLayer(count.clone())).build(),
    )));
    fresh.expect(&uri, &present);
    for d in present.iter().rev() {
        fresh.verify(&uri, d).unwrap();
    }
    assert_eq!(count.take(), counts(&[("DescribeImages", 1)]));

    let mut asked = present.clone();
    asked.push(digest(7));
    for (d, result) in verify_all(asked) {
        match result {
            Ok(()) => assert_ne!(d, digest(7)),
            Err(RegistryError::DigestNotFound { digest: missing, .. }) => {
                assert_eq!((missing, d), (digest(7), digest(7)))
            }
            Err(e) => panic!("{d}: {e}"),
        }
    }
}

/// A task of a service's primary revision as the [`GoneTaskLayer`] reports it: RUNNING
/// until `stopped`, then STOPPED — and listed only among the tasks of that desired status.
#[derive(Debug, Default)]
struct GoneTask {
    task: Mutex<Option<GoneTaskState>>,
    /// Whether the ListTasks request on its way asks for STOPPED tasks (read from its input).
    listing_stopped: Mutex<bool>,
}

#[derive(Debug, Clone)]
struct GoneTaskState {
    arn: String,
    revision: String,
    service: String,
    stopped: bool,
}

#[derive(Debug)]
struct GoneTaskLayer(Arc<GoneTask>);

impl Intercept for GoneTaskLayer {
    fn name(&self) -> &'static str {
        "GoneTaskLayer"
    }

    fn read_before_execution(
        &self,
        context: &aws_sdk_ecs::config::interceptors::BeforeSerializationInterceptorContextRef<'_>,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(input) = context.input().downcast_ref::<aws_sdk_ecs::operation::list_tasks::ListTasksInput>() {
            *self.0.listing_stopped.lock().unwrap() =
                input.desired_status() == Some(&aws_sdk_ecs::types::DesiredStatus::Stopped);
        }
        Ok(())
    }

    fn modify_before_completion(
        &self,
        context: &mut FinalizerInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(Ok(output)) = context.output_or_error_mut() else { return Ok(()) };
        let Some(task) = self.0.task.lock().unwrap().clone() else { return Ok(()) };
        if let Some(out) = output.downcast_mut::<DescribeServicesOutput>() {
            // A primary deployment with a task running: the watch looks at its tasks. No
            // failed task is counted, so only the vanished task can make it list stopped ones.
            for d in out.services.iter_mut().flatten().flat_map(|s| s.deployments.iter_mut().flatten()) {
                if d.status.as_deref() == Some("PRIMARY") {
                    d.running_count = 1;
                    d.failed_tasks = 0;
                }
            }
        } else if let Some(out) = output.downcast_mut::<ListTasksOutput>() {
            if *self.0.listing_stopped.lock().unwrap() == task.stopped {
                out.task_arns.get_or_insert_with(Vec::new).push(task.arn);
            }
        } else if let Some(out) = output.downcast_mut::<DescribeTasksOutput>() {
            out.failures.get_or_insert_with(Vec::new).retain(|f| f.arn.as_ref() != Some(&task.arn));
            let status = if task.stopped { "STOPPED" } else { "RUNNING" };
            let now = aws_sdk_ecs::primitives::DateTime::from_millis(chrono::Utc::now().timestamp_millis());
            let mut t = Task::builder()
                .task_arn(&task.arn)
                .task_definition_arn(task.revision)
                .group(format!("service:{}", task.service))
                .last_status(status)
                .desired_status(status)
                .health_status(HealthStatus::from("UNKNOWN"))
                .started_at(now);
            if task.stopped {
                t = t.stopped_at(now).stopped_reason("Task stopped by the scheduler");
            }
            let tasks = out.tasks.get_or_insert_with(Vec::new);
            tasks.retain(|x| x.task_arn.as_ref() != Some(&task.arn));
            tasks.push(t.build());
        }
        Ok(())
    }
}

/// The watch lists stopped tasks only when they may matter: when a deployment counts failed
/// tasks, or when a task of the primary revision it saw running at its last look is gone
/// from the running ones. Here no failure is counted: only the vanished task tells, and the
/// look finds it among the stopped tasks and reports it STOPPED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_seen_running_that_is_gone_is_found_among_the_stopped() {
    let f = Fixture::new();
    let gone = Arc::new(GoneTask::default());
    let count = Arc::new(RequestCount::default());
    let sdk = f.moto.sdk_config();
    let config =
        ecs_config(&sdk).interceptor(GoneTaskLayer(gone.clone())).interceptor(CountingLayer(count.clone())).build();
    let rt = EcsRuntime::from_clients(
        &f.stage,
        &f.settings,
        aws_sdk_ecs::Client::from_conf(config),
        aws_sdk_cloudwatchlogs::Client::new(&sdk),
    );
    let v1 = rt.register_revision(&spec("web", 1)).await.unwrap();
    rt.deploy("web", &v1, 1, &DeploySettings::default()).await.unwrap();
    let task_id = "1a2b3c4d5e6f708192a3b4c5d6e7f809";
    *gone.task.lock().unwrap() = Some(GoneTaskState {
        arn: format!("arn:aws:ecs:{REGION}:123456789012:task/{}/{task_id}", f.settings.cluster),
        revision: v1.to_string(),
        service: format!("{}-web", f.stage),
        stopped: false,
    });
    let apps = vec!["web".to_string()];
    let id = ferry::runtime::TaskId(task_id.into());
    count.take();

    let first = rt.observe_changes(&apps, Duration::ZERO).await.unwrap().remove(0);
    assert_eq!(first.task(&id).map(|t| t.last_status), Some(Lifecycle::Running), "{first:#?}");
    assert_eq!(count.take().get("ListTasks"), Some(&1), "the running tasks only");

    gone.task.lock().unwrap().as_mut().unwrap().stopped = true;
    let second = rt.observe_changes(&apps, Duration::ZERO).await.unwrap().remove(0);
    assert_eq!(count.take().get("ListTasks"), Some(&2), "the stopped tasks too: a task seen running is gone");
    let t = second.task(&id).unwrap_or_else(|| panic!("the gone task is reported: {second:#?}"));
    assert_eq!(
        (t.last_status, t.stopped_reason.as_deref()),
        (Lifecycle::Stopped, Some("Task stopped by the scheduler"))
    );

    // Seen stopped, it is watched no more: the next look lists the running tasks only.
    rt.observe_changes(&apps, Duration::ZERO).await.unwrap();
    assert_eq!(count.take().get("ListTasks"), Some(&1));
}
