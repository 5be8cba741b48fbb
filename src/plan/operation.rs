//! Operations: the nodes of a changeset. Each carries everything the apply engine needs to
//! carry it out and everything a renderer needs to explain it, so a saved plan is applied and
//! shown exactly as reviewed, without reading the stage file again.

use serde::{Deserialize, Serialize};

use crate::config::{AppConfig, Digest};
use crate::state::DeploymentKind;

/// What an app runs (or will run): release, image, scale and config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Running {
    pub release: u64,
    pub digest: Digest,
    /// Image repository.
    pub image: String,
    pub scale: u32,
    pub config: AppConfig,
    /// [`crate::state::config_hash`] of `config`.
    pub config_hash: String,
}

impl Running {
    /// What an active deployment runs.
    pub fn of(a: &crate::state::ActiveDeployment) -> Running {
        Running {
            release: a.release,
            digest: a.digest.clone(),
            image: a.image.clone(),
            scale: a.scale,
            config: a.config.clone(),
            config_hash: a.config_hash.clone(),
        }
    }
}

/// Why a deploy replaces tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeployKind {
    /// A first deploy, or activation of another release.
    Activate,
    /// The same release with a new config.
    Config,
}

/// One operation of a changeset. Every variant names its app; [`Operation::id`] is stable
/// (`web/deploy`) so edges, saved plans and progress output refer to operations by id.
// Deploys carry two configs and the rest little; boxing would only add indirection to a
// list of a few thousand operations built once per plan.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Operation {
    /// Check that the digest exists in the stage's registry before anything depends on it.
    VerifyImage { app: String, release: u64, image: String, digest: Digest },
    /// Register a runtime revision (ECS task definition; local: a revision record) for a
    /// release and config.
    RegisterRevision {
        app: String,
        release: u64,
        image: String,
        digest: Digest,
        config_hash: String,
        config: AppConfig,
    },
    /// Run a release task (e.g. a migration) with the new release before its deploy. The
    /// task's definition is in the deploy's target config.
    RunReleaseTask { app: String, task: String, release: u64, digest: Digest },
    /// Health-gated replacement of the app's tasks. `from` is `None` on a first deploy.
    /// `record_as` is set by commands that know why the release changes (a promotion, a
    /// rollback) and then names the recorded deployment's kind instead of `kind`.
    Deploy {
        app: String,
        kind: DeployKind,
        from: Option<Running>,
        to: Running,
        description: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        record_as: Option<DeploymentKind>,
    },
    /// Change the number of tasks of the active deployment; no new revision.
    Scale { app: String, running: Running, from: u32, to: u32, description: String },
    /// Stop every task of the app. `running` is what it ran (`None`: nothing active).
    RemoveApp { app: String, running: Option<Running> },
    /// Deregister runtime revisions no longer needed.
    PruneRevisions { app: String, ids: Vec<String> },
}

impl Operation {
    /// The app this operation acts on.
    pub fn app(&self) -> &str {
        match self {
            Operation::VerifyImage { app, .. }
            | Operation::RegisterRevision { app, .. }
            | Operation::RunReleaseTask { app, .. }
            | Operation::Deploy { app, .. }
            | Operation::Scale { app, .. }
            | Operation::RemoveApp { app, .. }
            | Operation::PruneRevisions { app, .. } => app,
        }
    }

    /// Stable id, unique within a changeset: `web/verify`, `web/register`,
    /// `web/task/migrate`, `web/deploy`, `web/scale`, `web/remove`, `web/prune`.
    pub fn id(&self) -> String {
        match self {
            Operation::RunReleaseTask { task, .. } => format!("{}/task/{task}", self.app()),
            _ => format!("{}/{}", self.app(), self.slug()),
        }
    }

    /// Short snake_case name of the kind, as in JSON: `verify_image`, `deploy`, …
    pub fn kind_name(&self) -> &'static str {
        match self {
            Operation::VerifyImage { .. } => "verify_image",
            Operation::RegisterRevision { .. } => "register_revision",
            Operation::RunReleaseTask { .. } => "run_release_task",
            Operation::Deploy { .. } => "deploy",
            Operation::Scale { .. } => "scale",
            Operation::RemoveApp { .. } => "remove_app",
            Operation::PruneRevisions { .. } => "prune_revisions",
        }
    }

    fn slug(&self) -> &'static str {
        match self {
            Operation::VerifyImage { .. } => "verify",
            Operation::RegisterRevision { .. } => "register",
            Operation::RunReleaseTask { .. } => "task",
            Operation::Deploy { .. } => "deploy",
            Operation::Scale { .. } => "scale",
            Operation::RemoveApp { .. } => "remove",
            Operation::PruneRevisions { .. } => "prune",
        }
    }

    /// Terraform-like symbol: `<=` read, `+` create, `±` replace, `~` update in place,
    /// `-` destroy.
    pub fn symbol(&self) -> &'static str {
        match self {
            Operation::VerifyImage { .. } => "<=",
            Operation::RegisterRevision { .. } | Operation::RunReleaseTask { .. } => "+",
            Operation::Deploy { .. } => "±",
            Operation::Scale { .. } => "~",
            Operation::RemoveApp { .. } | Operation::PruneRevisions { .. } => "-",
        }
    }

    /// Whether this operation ends the app's change (deploy or scale): what `depends_on`
    /// orders across apps.
    pub fn is_rollout(&self) -> bool {
        matches!(self, Operation::Deploy { .. } | Operation::Scale { .. })
    }
}
