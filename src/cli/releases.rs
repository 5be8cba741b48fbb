//! `ferry releases APP`: the releases an app declares, with their digests, when each was
//! first deployed, and which one is active; plus releases recorded in state but since
//! deleted from the stage file (their ids stay taken).

use std::collections::BTreeSet;

use clap::Args;
use serde_json::json;

use crate::cli::release::{app_state, find_app, load_stage};
use crate::cli::{print_out, CliResult, Context};
use crate::history::{now, relative_time};

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
    let running = recorded.active.as_ref().map(|a| a.release);
    let ids: BTreeSet<u64> = app.releases.keys().chain(recorded.releases.keys()).copied().collect();
    let now = now();
    let mut rows = Vec::new();
    let mut docs = Vec::new();
    for id in ids.into_iter().rev() {
        let record = recorded.releases.get(&id);
        let Some(digest) = app.releases.get(&id).or(record.map(|r| &r.digest)) else { continue };
        let declared = app.releases.contains_key(&id);
        let active = app.active == Some(id);
        let first_deployed = record.and_then(|r| r.first_deployed);
        let note = match (declared, active, running == Some(id)) {
            (false, _, true) => "running, deleted from the file",
            (false, _, false) => "deleted from the file",
            (true, true, true) => "active",
            (true, true, false) => "active, not applied yet",
            (true, false, true) => "running until the active one is applied",
            (true, false, false) => "",
        };
        docs.push(json!({
            "id": id,
            "digest": digest,
            "declared": declared,
            "active": active,
            "running": running == Some(id),
            "first_seen": record.map(|r| r.first_seen),
            "first_deployed": first_deployed,
        }));
        rows.push([
            if active { "*".to_string() } else { " ".to_string() },
            id.to_string(),
            digest.to_string(),
            first_deployed.map_or_else(|| "never deployed".to_string(), |t| relative_time(t, now)),
            note.to_string(),
        ]);
    }
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
