//! `ferry fmt`: rewrite `ferry.toml` and stage files in canonical order and layout, keeping
//! comments; `--check` only shows what would change (for CI).

use std::path::{Path, PathBuf};

use clap::Args;

use crate::cli::{print_out, CliError, CliResult, Context};
use crate::config::{Diagnostics, PROJECT_FILE, STAGES_DIR};
use crate::edit::{self, FileKind};

/// Rewrite files in canonical key order and layout, keeping comments.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  ferry fmt\n  ferry fmt -s production\n  ferry fmt --check   # in CI: print a diff and exit 1 if a file would change"
)]
pub struct FmtArgs {
    /// Change nothing; print a diff of every file that would change and exit 1 if any would.
    #[arg(long)]
    pub check: bool,
    /// Format only this stage's file.
    #[arg(short, long)]
    pub stage: Option<String>,
}

pub fn run(ctx: &Context, args: FmtArgs) -> CliResult {
    let root = ctx.root()?;
    let files = files_to_format(&root, args.stage.as_deref())?;
    let mut problems = Diagnostics::default();
    let mut changed = Vec::new();
    for (rel, kind) in files {
        let text = match crate::config::validate::read_text(&root, &rel) {
            Ok(text) => text,
            Err(d) => {
                problems.push(d);
                continue;
            }
        };
        // A file that does not parse is reported and left as it is.
        let formatted = match edit::format_file(&rel, &text, kind) {
            Ok(f) => f,
            Err(d) => {
                problems.push(d);
                continue;
            }
        };
        if formatted == text {
            continue;
        }
        let shown = rel.to_string_lossy().into_owned();
        if args.check {
            print_out(&edit::unified_diff(&shown, &text, &formatted, ctx.color))?;
        } else {
            // Atomic, keeping mode and symlink: a killed `fmt` never truncates a file.
            crate::atomic_file::write(&root.join(&rel), formatted.as_bytes(), crate::atomic_file::Mode::Keep)?;
            print_out(&format!("formatted {shown}\n"))?;
        }
        changed.push(shown);
    }
    if !problems.is_empty() {
        return Err(CliError::Config(problems));
    }
    if args.check && !changed.is_empty() {
        let n = changed.len();
        eprintln!("{n} file{} not formatted; run `ferry fmt`", if n == 1 { " is" } else { "s are" });
        return Err(CliError::Exit(1));
    }
    Ok(())
}

/// `ferry.toml` and every stage file (both spellings of a stage, if both exist), or only the
/// file of `stage`.
fn files_to_format(root: &Path, stage: Option<&str>) -> CliResult<Vec<(PathBuf, FileKind)>> {
    let mut stages: Vec<PathBuf> = std::fs::read_dir(root.join(STAGES_DIR))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| Path::new(STAGES_DIR).join(e.file_name()))
                .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("toml" | "hcl")))
                .collect()
        })
        .unwrap_or_default();
    stages.sort();
    let Some(name) = stage else {
        let mut files = vec![(PathBuf::from(PROJECT_FILE), FileKind::Project)];
        files.extend(stages.into_iter().map(|p| (p, FileKind::Stage)));
        return Ok(files);
    };
    let mine: Vec<(PathBuf, FileKind)> = stages
        .into_iter()
        .filter(|p| p.file_stem().and_then(|s| s.to_str()) == Some(name))
        .map(|p| (p, FileKind::Stage))
        .collect();
    if mine.is_empty() {
        return Err(CliError::with_hint(
            format!("no stage `{name}`"),
            format!("stage files live in {STAGES_DIR}/NAME.toml or {STAGES_DIR}/NAME.hcl"),
        ));
    }
    Ok(mine)
}
