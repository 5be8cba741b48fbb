//! `ferry releases APP`: the releases an app declares, with their digests, when each was
//! first deployed, and which one is active; plus releases recorded in state but since
//! deleted from the stage file (their ids stay taken).

use std::collections::BTreeSet;

use clap::Args;
use serde_json::json;

use crate::cli::release::{app_state, find_app, load_stage};
use crate::cli::{print_out, CliResult, Context};
use crate::config::{App, Digest};
use crate::history::{now, relative_time};
use crate::state::AppState;

/// List an app's releases, newest first.
///
/// `*` marks the active one in the stage file. Releases recorded in state but deleted from
/// the file are listed too: their ids stay taken.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  ferry releases web\n  ferry releases web -s production --json")]
pub struct ReleasesArgs {
    /// The app.
    pub app: String,
    /// The stage. Default: the project's only stage.
    #[arg(short, long)]
    pub stage: Option<String>,
    /// Print JSON: `{"app", "stage", "releases": [{"id", "digest", "declared", "active",
    /// "running", "first_seen", "first_deployed"}]}`.
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, args: ReleasesArgs) -> CliResult {
    let project = ctx.project()?;
    let stage = load_stage(&project, args.stage)?;
    let app = find_app(&stage, &args.app)?;
    let recorded = app_state(&project, &stage.name, &app.name)?;
    let now = now();
    let listed = release_rows(app, &recorded);
    let docs: Vec<_> = listed
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "digest": r.digest,
                "declared": r.declared,
                "active": r.active,
                "running": r.running,
                "first_seen": r.first_seen,
                "first_deployed": r.first_deployed,
            })
        })
        .collect();
    let rows: Vec<[String; 5]> = listed
        .iter()
        .map(|r| {
            [
                if r.active { "*".to_string() } else { " ".to_string() },
                r.id.to_string(),
                r.digest.to_string(),
                r.first_deployed.map_or_else(|| "never deployed".to_string(), |t| relative_time(t, now)),
                r.note.to_string(),
            ]
        })
        .collect();
    if args.json {
        let doc = json!({ "app": app.name, "stage": stage.name, "releases": docs });
        return print_out(&format!("{}\n", serde_json::to_string_pretty(&doc).expect("JSON")));
    }
    if rows.is_empty() {
        return print_out(&format!(
            "{} declares no releases; add one with `ferry release create {} DIGEST`\n",
            app.name, app.name
        ));
    }
    let width = |i: usize| rows.iter().map(|r| console::measure_text_width(&r[i])).max().unwrap_or(0);
    let (id_w, when_w) = (width(1), width(3));
    let mut out = String::new();
    for [mark, id, digest, when, note] in rows {
        let line = format!("{mark} {id:<id_w$}  {digest}  {when:<when_w$}  {note}");
        out.push_str(line.trim_end());
        out.push('\n');
    }
    print_out(&out)
}

/// One release of an app as `ferry releases` and the dashboard list it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReleaseRow {
    pub id: u64,
    pub digest: Digest,
    /// Whether the stage file declares it (else only state remembers it).
    pub declared: bool,
    /// Whether the stage file makes it the active one.
    pub active: bool,
    /// Whether the last succeeded deployment runs it.
    pub running: bool,
    pub first_seen: Option<chrono::DateTime<chrono::Utc>>,
    pub first_deployed: Option<chrono::DateTime<chrono::Utc>>,
    /// What to make of it: `active`, `deleted from the file`, …
    pub note: &'static str,
}

/// The releases of `app` (declared in the file, or recorded in state), newest first.
pub fn release_rows(app: &App, recorded: &AppState) -> Vec<ReleaseRow> {
    let running = recorded.active.as_ref().map(|a| a.release);
    let ids: BTreeSet<u64> = app.releases.keys().chain(recorded.releases.keys()).copied().collect();
    let mut rows = Vec::new();
    for id in ids.into_iter().rev() {
        let record = recorded.releases.get(&id);
        let Some(digest) = app.releases.get(&id).or(record.map(|r| &r.digest)) else { continue };
        let declared = app.releases.contains_key(&id);
        let active = app.active == Some(id);
        let note = match (declared, active, running == Some(id)) {
            (false, _, true) => "running, deleted from the file",
            (false, _, false) => "deleted from the file",
            (true, true, true) => "active",
            (true, true, false) => "active, not applied yet",
            (true, false, true) => "running until the active one is applied",
            (true, false, false) => "",
        };
        rows.push(ReleaseRow {
            id,
            digest: digest.clone(),
            declared,
            active,
            running: running == Some(id),
            first_seen: record.map(|r| r.first_seen),
            first_deployed: record.and_then(|r| r.first_deployed),
            note,
        });
    }
    rows
}
