//! Stage and project files: the file format (`file`), the checked model (`model`), loading
//! from TOML or HCL with located diagnostics (`source`, `validate`), and canonical formatting.
//!
//! Entry points: [`load_project`], [`load_stage`], [`load_stages`].

pub mod diagnostic;
pub mod ecs_deploy;
pub mod ecs_task;
pub mod fast_toml;
pub mod file;
pub mod hcl_source;
pub mod model;
pub mod names;
pub mod source;
pub mod source_tree;
pub mod toml_source;
pub mod validate;

use std::path::{Path, PathBuf};

pub use diagnostic::{Diagnostic, Diagnostics};
pub use model::*;

/// The project file's name.
pub const PROJECT_FILE: &str = "ferry.toml";
/// The folder holding stage files.
pub const STAGES_DIR: &str = "stages";

/// A stage file found under `stages/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageRef {
    pub name: String,
    /// Path relative to the project root, e.g. `stages/production.toml`.
    pub path: PathBuf,
}

/// Find the project root: `start` or the nearest parent holding `ferry.toml`.
pub fn find_root(start: &Path) -> Option<PathBuf> {
    start.ancestors().find(|dir| dir.join(PROJECT_FILE).is_file()).map(Path::to_path_buf)
}

/// The stage files of a project, sorted by name. A stage written both as `.toml` and `.hcl`
/// is reported as an error by [`load_stage`]; here the TOML one is listed.
pub fn stage_refs(root: &Path) -> Vec<StageRef> {
    let mut refs: Vec<StageRef> = Vec::new();
    let Ok(entries) = std::fs::read_dir(root.join(STAGES_DIR)) else { return refs };
    for entry in entries.flatten() {
        let path = entry.path();
        let (Some(stem), Some(ext)) =
            (path.file_stem().and_then(|s| s.to_str()), path.extension().and_then(|e| e.to_str()))
        else {
            continue;
        };
        if (ext == "toml" || ext == "hcl") && !refs.iter().any(|r| r.name == stem) {
            refs.push(StageRef {
                name: stem.to_string(),
                path: Path::new(STAGES_DIR).join(path.file_name().unwrap_or_default()),
            });
        }
    }
    refs.sort_by(|a, b| a.name.cmp(&b.name));
    refs
}

/// Load and check `ferry.toml` under `root`. The pipeline is checked against the stage files
/// present.
pub fn load_project(root: &Path) -> Result<Project, Diagnostics> {
    validate::load_project(root)
}

/// Load and check one stage by name.
/// A preview (`[pipeline.preview]`) has no file: a name that is no stage file but a recorded
/// preview's is rendered from its template (`preview::load_stage`).
pub fn load_stage(project: &Project, name: &str) -> Result<Stage, Diagnostics> {
    validate::load_stage(project, name).or_else(|missing| {
        let is_file = stage_refs(&project.root).iter().any(|r| r.name == name);
        match project.preview.is_some() && !is_file {
            true => crate::preview::load_stage(project, name).unwrap_or(Err(missing)),
            false => Err(missing),
        }
    })
}

/// A located diagnostic at `at` in `stage`'s file, for a problem found after the stage
/// loaded (by the planner, by an edit). The file is read and parsed again: only an error
/// needs its positions. Where it cannot be read or no longer parses, the diagnostic names
/// the whole file.
pub fn stage_diagnostic(
    project_root: &Path,
    stage: &Stage,
    at: &[source::PathSeg],
    target: source::Target,
    message: impl Into<String>,
) -> Diagnostic {
    let message = message.into();
    let parsed = std::fs::read_to_string(project_root.join(&stage.file))
        .ok()
        .and_then(|text| source::SourceFile::parse(&stage.file, text, source::Format::of_path(&stage.file)).ok());
    match parsed {
        Some(src) => src.diagnostic(at, target, message),
        None => Diagnostic::whole_file(&stage.file, message),
    }
}

/// Load every stage; all problems of all files are reported together.
pub fn load_stages(project: &Project) -> Result<Vec<Stage>, Diagnostics> {
    let mut stages = Vec::new();
    let mut all = Diagnostics::default();
    for r in stage_refs(&project.root) {
        match load_stage(project, &r.name) {
            Ok(s) => stages.push(s),
            Err(d) => all.0.extend(d.0),
        }
    }
    if all.is_empty() {
        Ok(stages)
    } else {
        Err(all)
    }
}
