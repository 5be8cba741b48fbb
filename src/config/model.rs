//! The checked, typed model that everything above `config` works with.
//!
//! Built only by `config::validate` from the file types in `config::file`, with every default
//! applied, so the planner and runtimes never see a missing field or an unparsed string.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use crate::config::file::{LocalDriver, RunOn, RuntimeKind};

/// How many deployments per app the state keeps when `ferry.toml` does not say (`[state]
/// keep_deployments`).
pub const DEFAULT_KEEP_DEPLOYMENTS: usize = 50;

/// A loaded project: `ferry.toml` and every stage file under `stages/`.
#[derive(Debug, Clone, PartialEq)]
pub struct Project {
    /// The directory holding `ferry.toml`.
    pub root: PathBuf,
    /// `[project] name`.
    pub name: String,
    /// Where recorded state lives.
    pub state: StateBackend,
    /// Ordered pipeline steps (may be empty).
    pub pipeline: Vec<PipelineStep>,
    /// `[state] keep_deployments`: deployments per app kept in state; older ones are
    /// archived (`state::archive`).
    pub keep_deployments: usize,
    /// `[registry]`: the image registry of local stages.
    pub registry: RegistrySettings,
    /// `[pipeline.preview]`: preview stages per pull request.
    pub preview: Option<crate::preview::PreviewSettings>,
    /// `[[notify]]`: where deploy events are sent.
    pub notify: Vec<crate::events::notify::NotifyTarget>,
    /// `[ui] token`: where `ferry ui` reads its write token (`FERRY_UI_TOKEN` wins).
    pub ui_token: Option<SecretRef>,
}

/// `[registry]`, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrySettings {
    /// A registry the user runs: `HOST[:PORT][/NAMESPACE]`. `None`: ferry starts one.
    pub url: Option<String>,
    /// The port of the registry ferry starts (`None`: a free one).
    pub port: Option<u16>,
    /// Where the registry ferry starts stores images, relative to the project root.
    pub storage: Option<PathBuf>,
}

/// Where recorded state lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "backend", rename_all = "lowercase")]
pub enum StateBackend {
    /// `.ferry/state/<stage>.json` under the project root.
    Local,
    /// `s3://bucket/prefix/<stage>.json`.
    S3 { bucket: String, prefix: String, region: Option<String> },
}

impl Project {
    /// A stand-in for a project whose `ferry.toml` did not load, so its stage files can
    /// still be checked and every problem reported in one run.
    pub fn unchecked(root: &std::path::Path) -> Project {
        Project {
            root: root.to_path_buf(),
            name: String::new(),
            state: StateBackend::Local,
            pipeline: Vec::new(),
            keep_deployments: DEFAULT_KEEP_DEPLOYMENTS,
            registry: RegistrySettings::default(),
            preview: None,
            notify: Vec::new(),
            ui_token: None,
        }
    }
}

/// One pipeline step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineStep {
    pub name: String,
    pub stages: Vec<String>,
    pub required_checks: Vec<String>,
}

/// One stage: an environment with its runtime and apps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    /// The stage's name (the file name without extension).
    pub name: String,
    /// The file it was loaded from.
    pub file: PathBuf,
    /// Where it runs.
    pub runtime: Runtime,
    /// Apps by name.
    pub apps: BTreeMap<String, App>,
}

/// Where a stage runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Runtime {
    /// The local runtime on this machine. `driver`: as the stage file says (`None`: chosen
    /// when a command runs, see `runtime::local::resolve_driver`).
    Local {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        driver: Option<LocalDriver>,
    },
    /// AWS ECS.
    Ecs(EcsRuntime),
}

impl Runtime {
    /// `local` or `ecs`.
    pub fn kind(&self) -> RuntimeKind {
        match self {
            Runtime::Local { .. } => RuntimeKind::Local,
            Runtime::Ecs(_) => RuntimeKind::Ecs,
        }
    }
}

/// `[runtime]` of an ECS stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EcsRuntime {
    pub region: String,
    pub cluster: String,
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    pub assign_public_ip: bool,
    pub execution_role: Option<String>,
    pub task_role: Option<String>,
    pub log_group: Option<String>,
}

/// One app of a stage, with every default applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct App {
    pub name: String,
    /// Image repository.
    pub image: String,
    /// Declared releases: id → digest.
    pub releases: BTreeMap<u64, Digest>,
    /// The release that should run; `None`: declared but not deployed.
    pub active: Option<u64>,
    pub scale: u32,
    pub track: Option<String>,
    pub depends_on: Vec<String>,
    /// Everything that defines a runtime revision besides the image digest.
    pub config: AppConfig,
    /// `[apps.NAME.build]`: how `release create --source` builds the image.
    pub build: AppBuild,
}

/// `[apps.NAME.build]`, checked: how the app's image is built from sources.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppBuild {
    pub context: Option<String>,
    pub dockerfile: Option<String>,
    pub target: Option<String>,
    pub args: BTreeMap<String, String>,
}

impl App {
    /// The digest of the active release, if any.
    pub fn active_digest(&self) -> Option<&Digest> {
        self.active.and_then(|id| self.releases.get(&id))
    }
}

/// The part of an app that, when it changes, needs a new revision and a rollout: everything
/// but the release and the scale. Recorded in state as the deployment's config snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AppConfig {
    pub cpu: u32,
    pub memory: u32,
    /// Empty: the image's own command.
    pub command: Vec<String>,
    pub port: Option<u16>,
    pub env: BTreeMap<String, String>,
    /// Names of env vars whose values are masked in every output.
    pub sensitive_env: BTreeSet<String>,
    pub secrets: BTreeMap<String, SecretRef>,
    pub health: Health,
    pub deploy: DeploySettings,
    pub release_tasks: Vec<ReleaseTask>,
    pub target_group: Option<String>,
}

/// Health checks of an app.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Health {
    /// Container check command (`CMD-SHELL …`, `CMD …` or plain argv).
    pub command: Option<Vec<String>>,
    /// HTTP path of the network check.
    pub path: Option<String>,
    pub interval: Duration,
    /// Time a check may take; when the file sets none, the shorter of 2s and `interval`.
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    pub grace_period: Duration,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            command: None,
            path: None,
            interval: Duration::from_millis(5_000),
            timeout: Duration::from_millis(2_000),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            grace_period: Duration::from_millis(10_000),
        }
    }
}

/// Rollout settings of an app.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DeploySettings {
    pub max_surge: Percent,
    pub min_healthy: Percent,
    pub timeout: Duration,
    pub drain: Duration,
    pub stop_timeout: Duration,
    /// How ECS deploys the app (strategy, alarms, hooks); the local runtime ignores it.
    /// Left out of state while it is the default, so older state reads the same. Boxed: most
    /// apps keep the default, and deploy settings travel in the local agent's requests.
    #[serde(default, skip_serializing_if = "is_default")]
    pub ecs: Box<EcsDeploy>,
    /// `scale = { min, max, … }`: the count is Application Auto Scaling's within this
    /// range, and a deploy keeps the count it finds. Left out of state when unset, so
    /// config hashes recorded before it existed still match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,
    /// The ECS task definition and service beyond the app's one container: sidecars, roles,
    /// logging, architecture, storage, capacity providers, Exec, tags. Here rather than
    /// beside the container's fields because both the revision (through the config) and
    /// the service update (`Runtime::deploy` gets these settings) read it. Left out of state
    /// while empty.
    #[serde(default, skip_serializing_if = "is_default")]
    pub ecs_task: Box<EcsTask>,
}

/// An autoscaled range of tasks, with its target-tracking targets (percent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Autoscaling {
    pub min: u32,
    pub max: u32,
    pub cpu_target: Option<u32>,
    pub memory_target: Option<u32>,
}

impl Autoscaling {
    /// Whether `count` tasks is a count autoscaling may have chosen.
    pub fn allows(&self, count: u32) -> bool {
        (self.min..=self.max).contains(&count)
    }
}

impl Default for DeploySettings {
    fn default() -> Self {
        DeploySettings {
            max_surge: Percent(100),
            min_healthy: Percent(100),
            timeout: Duration::from_millis(5 * 60_000),
            drain: Duration::from_millis(5_000),
            stop_timeout: Duration::from_millis(10_000),
            ecs: Box::default(),
            autoscaling: None,
            ecs_task: Box::default(),
        }
    }
}

pub use crate::config::ecs_task::{CapacityProvider, EcsTask, Logging, Sidecar};
pub use crate::config::file::Strategy;

/// Whether `v` is its type's default (for `skip_serializing_if`).
fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// The ECS deployment settings of an app (`[apps.NAME.deploy]`): what ECS itself runs and
/// watches. Bake times are whole minutes, as ECS takes them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EcsDeploy {
    pub strategy: Strategy,
    pub bake_minutes: u32,
    pub step_percent: Percent,
    pub step_bake_minutes: u32,
    pub canary_percent: Percent,
    pub canary_bake_minutes: u32,
    pub circuit_breaker: bool,
    pub circuit_breaker_rollback: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alarms: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alternate_target_group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub production_listener_rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_listener_rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_role: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<LifecycleHook>,
    /// `target_groups = [{ … }, …]`, the long form: every load balancer of the service. The
    /// short form `target_group = "ARN"` stays the app's `target_group` (so state recorded
    /// before the long form existed reads, and hashes, the same).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_groups: Vec<TargetGroup>,
    /// `health_check_grace_period`, whole seconds (`None`: the container check's grace period).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_grace_period_s: Option<u32>,
}

/// One load balancer of an ECS service: the target group, and the container and port it
/// registers (`None`: the app's).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TargetGroup {
    pub arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// The plan diff's lines of `target_groups`, one `{ arn = …, container = …, port = N }` each
/// (a field of its own, not among the deploy settings they are kept with).
pub fn render_target_groups(groups: &[TargetGroup]) -> String {
    let mut out = String::new();
    for tg in groups {
        let mut entry = format!("{{ arn = {:?}", tg.arn);
        if let Some(c) = &tg.container {
            entry.push_str(&format!(", container = {c:?}"));
        }
        if let Some(p) = tg.port {
            entry.push_str(&format!(", port = {p}"));
        }
        out.push_str(&entry);
        out.push_str(" }\n");
    }
    out
}

impl Default for EcsDeploy {
    fn default() -> Self {
        EcsDeploy {
            strategy: Strategy::Rolling,
            bake_minutes: 0,
            step_percent: Percent(10),
            step_bake_minutes: 6,
            canary_percent: Percent(5),
            canary_bake_minutes: 10,
            circuit_breaker: true,
            circuit_breaker_rollback: true,
            alarms: Vec::new(),
            alternate_target_group: None,
            production_listener_rule: None,
            test_listener_rule: None,
            traffic_role: None,
            hooks: Vec::new(),
            target_groups: Vec::new(),
            health_check_grace_period_s: None,
        }
    }
}

impl EcsDeploy {
    pub fn is_default(&self) -> bool {
        *self == EcsDeploy::default()
    }

    /// The plan diff's lines of the settings that differ from the defaults.
    pub fn render(&self) -> String {
        let d = EcsDeploy::default();
        let mut out = String::new();
        let mut line = |k: &str, v: String| out.push_str(&format!("{k} = {v}\n"));
        if self.strategy != d.strategy {
            line("strategy", format!("{:?}", self.strategy).to_lowercase());
        }
        if self.bake_minutes != d.bake_minutes {
            line("bake_time", format!("{}m", self.bake_minutes));
        }
        if self.strategy == Strategy::Linear {
            line("step_percent", self.step_percent.to_string());
            line("step_bake_time", format!("{}m", self.step_bake_minutes));
        }
        if self.strategy == Strategy::Canary {
            line("canary_percent", self.canary_percent.to_string());
            line("canary_bake_time", format!("{}m", self.canary_bake_minutes));
        }
        if (self.circuit_breaker, self.circuit_breaker_rollback) != (d.circuit_breaker, d.circuit_breaker_rollback) {
            line(
                "circuit_breaker",
                format!("{{ enable = {}, rollback = {} }}", self.circuit_breaker, self.circuit_breaker_rollback),
            );
        }
        if !self.alarms.is_empty() {
            line("alarms", format!("{:?}", self.alarms));
        }
        for (k, v) in [
            ("alternate_target_group", &self.alternate_target_group),
            ("production_listener_rule", &self.production_listener_rule),
            ("test_listener_rule", &self.test_listener_rule),
            ("traffic_role", &self.traffic_role),
        ] {
            if let Some(v) = v {
                line(k, format!("{v:?}"));
            }
        }
        if let Some(s) = self.health_check_grace_period_s {
            line("health_check_grace_period", format!("{s}s"));
        }
        for h in &self.hooks {
            let target = match &h.target {
                HookTarget::Pause => "pause = true".to_string(),
                HookTarget::Lambda { arn, role } => format!("lambda = {arn:?}, role = {role:?}"),
            };
            line("hook", format!("{{ stages = {:?}, {target} }}", h.stages));
        }
        out
    }
}

/// A lifecycle hook: at `stages` (ECS stage names, e.g. `POST_SCALE_UP`), a Lambda function
/// or a pause until `ferry continue`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LifecycleHook {
    pub stages: Vec<String>,
    pub target: HookTarget,
}

/// What a lifecycle hook runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookTarget {
    Lambda { arn: String, role: String },
    Pause,
}

/// A task run with a new release before it is activated.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReleaseTask {
    pub name: String,
    pub command: Vec<String>,
    pub timeout: Duration,
    pub run_on: RunOn,
}

/// An image digest: `sha256:` followed by 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(String);

impl Digest {
    /// The full digest, `sha256:…`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `sha256:` and the first 12 hex digits, for humans.
    pub fn short(&self) -> &str {
        &self.0[..self.0.len().min(19)]
    }

    /// The 64 hex digits.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    /// The digest of some bytes.
    pub fn of_bytes(bytes: &[u8]) -> Digest {
        use sha2::Digest as _;
        Digest(format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes))))
    }

    /// Whether `s` is `sha256:` and 64 lowercase hex digits.
    fn is_valid(s: &str) -> bool {
        // A fold rather than `all`: without the early exit the check runs branch-free over
        // all 64 digits, which matters when a large state file holds tens of thousands.
        s.strip_prefix("sha256:").is_some_and(|hex| {
            hex.len() == 64 && hex.bytes().fold(true, |ok, b| ok & matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        })
    }
}

/// Why a string is not a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an image digest")]
pub struct DigestError(pub String);

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if Digest::is_valid(s) {
            Ok(Digest(s.to_string()))
        } else {
            Err(DigestError(s.into()))
        }
    }
}

impl TryFrom<String> for Digest {
    type Error = DigestError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        if Digest::is_valid(&s) {
            Ok(Digest(s))
        } else {
            Err(DigestError(s))
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A reference to a secret, never its value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SecretRef {
    /// `arn:aws:ssm:…:parameter/…`
    Ssm(String),
    /// `arn:aws:secretsmanager:…:secret:…`
    SecretsManager(String),
    /// `env:NAME`: read from ferry's own environment (local runtime).
    Env(String),
    /// `file:PATH`: read from a file inside the project (local runtime).
    File(String),
}

impl SecretRef {
    /// The reference as written in the stage file.
    pub fn reference(&self) -> String {
        match self {
            SecretRef::Ssm(arn) | SecretRef::SecretsManager(arn) => arn.clone(),
            SecretRef::Env(name) => format!("env:{name}"),
            SecretRef::File(path) => format!("file:{path}"),
        }
    }

    /// Whether the ECS runtime can resolve it (`valueFrom`).
    pub fn is_aws(&self) -> bool {
        matches!(self, SecretRef::Ssm(_) | SecretRef::SecretsManager(_))
    }
}

/// Why a string is not a secret reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a secret reference")]
pub struct SecretRefError;

impl FromStr for SecretRef {
    type Err = SecretRefError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(rest) = s.strip_prefix("arn:") {
            // arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE
            let parts: Vec<&str> = rest.splitn(5, ':').collect();
            if parts.len() == 5 && !parts[4].is_empty() {
                match parts[1] {
                    "ssm" if parts[4].starts_with("parameter/") => return Ok(SecretRef::Ssm(s.into())),
                    "secretsmanager" if parts[4].starts_with("secret:") => {
                        return Ok(SecretRef::SecretsManager(s.into()))
                    }
                    _ => {}
                }
            }
            return Err(SecretRefError);
        }
        if let Some(name) = s.strip_prefix("env:") {
            let valid = !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !name.as_bytes()[0].is_ascii_digit();
            return if valid { Ok(SecretRef::Env(name.into())) } else { Err(SecretRefError) };
        }
        if let Some(path) = s.strip_prefix("file:") {
            return if path.is_empty() { Err(SecretRefError) } else { Ok(SecretRef::File(path.into())) };
        }
        Err(SecretRefError)
    }
}

impl Serialize for SecretRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.reference())
    }
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(|_| serde::de::Error::custom(format!("`{s}` is not a secret reference")))
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Digest::try_from(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A duration with millisecond precision, written `"500ms"`, `"5s"`, `"10m"`, `"1h"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(u64);

impl Duration {
    pub const fn from_millis(ms: u64) -> Duration {
        Duration(ms)
    }
    pub fn as_millis(self) -> u64 {
        self.0
    }
    pub fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.0)
    }
}

/// Why a string is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a duration")]
pub struct DurationError(pub String);

impl FromStr for Duration {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || DurationError(s.into());
        let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
        let (num, unit) = s.split_at(split);
        let n: u64 = num.parse().map_err(|_| err())?;
        let factor = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return Err(err()),
        };
        n.checked_mul(factor).map(Duration).ok_or_else(err)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0;
        if ms != 0 && ms % 3_600_000 == 0 {
            write!(f, "{}h", ms / 3_600_000)
        } else if ms != 0 && ms % 60_000 == 0 {
            write!(f, "{}m", ms / 60_000)
        } else if ms % 1_000 == 0 {
            write!(f, "{}s", ms / 1_000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_str(d)
    }
}

/// Deserialize a value written as a string by parsing the string where the deserializer
/// has it, not a copy: a state file holds a dozen durations and percentages per app.
/// Errors read as `String::deserialize` and `FromStr` say them.
fn parse_str<'de, D: Deserializer<'de>, T: FromStr>(d: D) -> Result<T, D::Error>
where
    T::Err: fmt::Display,
{
    struct Parse<T>(std::marker::PhantomData<T>);
    impl<T: FromStr> serde::de::Visitor<'_> for Parse<T>
    where
        T::Err: fmt::Display,
    {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<T, E> {
            s.parse().map_err(E::custom)
        }
    }
    d.deserialize_str(Parse(std::marker::PhantomData))
}

/// A percentage, written `"100%"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Percent(pub u16);

impl Percent {
    /// `ceil(n * self / 100)`.
    pub fn of_ceil(self, n: u32) -> u32 {
        (n * u32::from(self.0)).div_ceil(100)
    }
    /// `floor(n * self / 100)`.
    pub fn of_floor(self, n: u32) -> u32 {
        n * u32::from(self.0) / 100
    }
}

/// Why a string is not a percentage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a percentage")]
pub struct PercentError(pub String);

impl FromStr for Percent {
    type Err = PercentError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let num = s.strip_suffix('%').ok_or_else(|| PercentError(s.into()))?;
        if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PercentError(s.into()));
        }
        num.parse::<u16>().map(Percent).map_err(|_| PercentError(s.into()))
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0)
    }
}

impl Serialize for Percent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_str(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print_round_trip() {
        for (text, ms) in [("500ms", 500), ("5s", 5_000), ("10m", 600_000), ("1h", 3_600_000), ("0s", 0)] {
            let d: Duration = text.parse().unwrap();
            assert_eq!(d.as_millis(), ms);
            assert_eq!(d.to_string(), text);
        }
        for bad in ["", "5", "s", "5 s", "-1s", "1.5s", "5d"] {
            assert!(bad.parse::<Duration>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn durations_and_percentages_deserialize_from_strings_with_the_errors_of_their_parse() {
        let read = |json: &str| serde_json::from_str::<(Duration, Percent)>(json).map_err(|e| e.to_string());
        assert_eq!(read(r#"["5s", "50%"]"#), Ok((Duration::from_millis(5_000), Percent(50))));
        assert_eq!(read(r#"["\u0035m", "5\u0025"]"#), Ok((Duration::from_millis(300_000), Percent(5))), "escaped");
        assert_eq!(read(r#"["5 s", "50%"]"#), Err("`5 s` is not a duration at line 1 column 6".to_string()));
        assert_eq!(read(r#"["5s", "x%"]"#), Err("`x%` is not a percentage at line 1 column 11".to_string()));
        assert_eq!(
            read(r#"[5, "50%"]"#),
            Err("invalid type: integer `5`, expected a string at line 1 column 2".into())
        );
    }

    #[test]
    fn percentages_parse() {
        assert_eq!("100%".parse::<Percent>().unwrap(), Percent(100));
        assert_eq!(Percent(50).of_ceil(3), 2);
        assert_eq!(Percent(50).of_floor(3), 1);
        for bad in ["100", "%", "-5%", "x%"] {
            assert!(bad.parse::<Percent>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn digests_are_sha256_and_64_lowercase_hex() {
        let good = format!("sha256:{}", "a".repeat(64));
        assert!(good.parse::<Digest>().is_ok());
        assert!(format!("sha256:{}", "A".repeat(64)).parse::<Digest>().is_err());
        assert!(format!("sha256:{}", "a".repeat(63)).parse::<Digest>().is_err());
        assert!(format!("md5:{}", "a".repeat(64)).parse::<Digest>().is_err());
        assert_eq!(Digest::of_bytes(b"").hex().len(), 64);
    }

    #[test]
    fn secret_references_are_recognised() {
        assert!(matches!("arn:aws:ssm:eu-central-1:123456789012:parameter/shop/db".parse(), Ok(SecretRef::Ssm(_))));
        assert!(matches!(
            "arn:aws:secretsmanager:eu-central-1:123456789012:secret:shop/db-AbCdEf".parse(),
            Ok(SecretRef::SecretsManager(_))
        ));
        assert_eq!("env:DB_URL".parse(), Ok(SecretRef::Env("DB_URL".into())));
        assert_eq!("file:secrets/db".parse(), Ok(SecretRef::File("secrets/db".into())));
        for plain in ["hunter2", "postgres://u:p@db/x", "env:", "arn:aws:s3:::bucket", "file:"] {
            assert!(plain.parse::<SecretRef>().is_err(), "{plain:?} accepted");
        }
    }
}
