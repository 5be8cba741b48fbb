//! Image tracking: an app with `track = "TAG"` follows that tag of its repository.
//!
//! [`sync_stage`] resolves every tracked tag of a stage in its registry; where the tag names
//! another digest than the active release's, the stage file gets the digest as the app's next
//! release (or re-activates the release that already holds it) and activates it. Each move
//! is recorded as an [`ImageImport`] in the record store (`imports/<app>`), for
//! `ferry images history APP`.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::promotion::open_edit;
use super::records::{self, RecordStore};
use super::{next_release_id, Result};
use crate::config::{Digest, Project, Stage};
use crate::edit::StageEdit;
use crate::registry::Registry;
use crate::state::StageState;

/// A tracked tag that moved: what `images sync` changes and records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageImport {
    pub at: DateTime<Utc>,
    pub stage: String,
    pub app: String,
    pub tag: String,
    /// The active release's digest before (`None`: the app had no active release).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Digest>,
    pub to: Digest,
    /// The release the new digest has in the stage.
    pub release: u64,
    /// Whether the stage already declared the digest (re-activated, not added).
    #[serde(default)]
    pub reactivated: bool,
}

/// Every import of an app, oldest first: the document `imports/<app>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportLog {
    #[serde(default)]
    pub imports: Vec<ImageImport>,
}

/// What syncing one stage found: the moves and, when there are any, the edited file.
#[derive(Debug)]
pub struct StageSync {
    pub moves: Vec<ImageImport>,
    /// The stage file (relative to the root) and its edit, when something moved.
    pub edit: Option<(PathBuf, StageEdit)>,
}

/// Resolve the tracked tags of `stage` in `registry` and edit its file where they moved.
/// Nothing is written.
pub fn sync_stage(
    project: &Project,
    stage: &Stage,
    recorded: Option<&StageState>,
    registry: &dyn Registry,
    at: DateTime<Utc>,
) -> Result<StageSync> {
    let mut moves = Vec::new();
    let mut edit: Option<(PathBuf, StageEdit)> = None;
    for (name, app) in &stage.apps {
        let Some(tag) = &app.track else { continue };
        let digest = registry.resolve_tag(&app.image, tag)?;
        let from = app.active_digest().cloned();
        if from.as_ref() == Some(&digest) {
            continue;
        }
        if edit.is_none() {
            edit = Some(open_edit(project, stage)?);
        }
        let (_, file) = edit.as_mut().expect("just opened");
        let held = app.releases.iter().find(|(_, d)| **d == digest).map(|(id, _)| *id);
        let release = match held {
            Some(id) => id,
            None => {
                let id = next_release_id(app, recorded.and_then(|s| s.apps.get(name)));
                file.add_release(name, id, &digest)?;
                id
            }
        };
        file.set_active(name, release)?;
        moves.push(ImageImport {
            at,
            stage: stage.name.clone(),
            app: name.clone(),
            tag: tag.clone(),
            from,
            to: digest,
            release,
            reactivated: held.is_some(),
        });
    }
    Ok(StageSync { moves, edit })
}

/// Record the imports of a sync.
pub fn record_imports(records: &dyn RecordStore, imports: &[ImageImport]) -> Result<()> {
    for import in imports {
        records::update(records, &format!("imports/{}", import.app), |log: &mut ImportLog| {
            log.imports.push(import.clone());
        })?;
    }
    Ok(())
}

/// Every recorded import of `app`, oldest first.
pub fn imports(records: &dyn RecordStore, app: &str) -> Result<ImportLog> {
    Ok(records::load(records, &format!("imports/{app}"))?)
}
