//! Preview stages, one per pull request, made from a template stage (`[pipeline.preview]`).
//!
//! A preview is a real stage: its own state, lock and history under its own name
//! (`pr-{number}`), but no file of its own. What differs from the template (ports, scale,
//! env, the release) is kept in one project record, `previews` (`pipeline::records`, so it
//! lives beside the state: local files or the S3 bucket), and the stage is rendered from the
//! template's file and that record whenever it is planned. Nothing per PR is written to
//! `stages/`, and the template's own state is never read or written by preview commands.
//!
//! The record is written first, ports reserved and marked `creating`, before anything runs:
//! a `preview up` killed half-way leaves a record that `preview down` finds and removes with
//! everything it made. The pure parts live here (rendering, port choice, names); the
//! commands are `cli::preview`.

pub mod ecs;
pub mod settings;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::{Diagnostics, Digest, Project, Stage};
use crate::pipeline::records::{self, RecordError, RecordStore};
pub use settings::{PreviewSettings, Vars};

/// The record key of the previews of a project.
pub const RECORD_KEY: &str = "previews";

/// Where a preview is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PreviewStatus {
    /// Reserved; its first commit has not finished (or ferry was killed during it).
    Creating,
    /// Its last commit succeeded.
    Up,
    /// Its last commit failed.
    Failed,
}

impl PreviewStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PreviewStatus::Creating => "creating",
            PreviewStatus::Up => "up",
            PreviewStatus::Failed => "failed",
        }
    }
}

/// One preview, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preview {
    pub pr: u64,
    /// Its stage name.
    pub stage: String,
    pub template: String,
    pub status: PreviewStatus,
    /// Local runtime: each app's port, taken from the range and kept for the preview's life.
    #[serde(default)]
    pub ports: BTreeMap<String, u16>,
    /// Each app's image; apps not named run the template's active release.
    #[serde(default)]
    pub images: BTreeMap<String, Digest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// ECS template: the target groups and host rule the preview made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ecs: Option<ecs::EcsMade>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Every preview of a project: the `previews` record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Book {
    /// By PR number (as a string: JSON object keys).
    #[serde(default)]
    pub previews: BTreeMap<String, Preview>,
}

impl Book {
    pub fn get(&self, pr: u64) -> Option<&Preview> {
        self.previews.get(&pr.to_string())
    }

    /// The preview whose stage is `stage`.
    pub fn by_stage(&self, stage: &str) -> Option<&Preview> {
        self.previews.values().find(|p| p.stage == stage)
    }

    /// Previews sorted by PR number.
    pub fn sorted(&self) -> Vec<&Preview> {
        let mut v: Vec<&Preview> = self.previews.values().collect();
        v.sort_by_key(|p| p.pr);
        v
    }
}

/// Read the project's previews.
pub fn load_book(store: &dyn RecordStore) -> Result<Book, RecordError> {
    records::load(store, RECORD_KEY)
}

/// Change the project's previews, compare-and-swap.
pub fn update_book<R>(store: &dyn RecordStore, change: impl FnMut(&mut Book) -> R) -> Result<R, RecordError> {
    records::update(store, RECORD_KEY, change)
}

/// A failure with what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviewError {
    pub message: String,
    pub hint: Option<String>,
}

impl PreviewError {
    fn new(message: impl Into<String>, hint: impl Into<String>) -> Self {
        PreviewError { message: message.into(), hint: Some(hint.into()) }
    }
}

/// A PR number: a positive integer.
pub fn parse_pr(text: &str) -> Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("`{text}` is not a pull request number: use a positive integer, e.g. 12")),
    }
}

/// The stage name of PR `pr`.
pub fn stage_name(settings: &PreviewSettings, pr: u64) -> Result<String, PreviewError> {
    let name = settings::substitute(&settings.name, &Vars { number: pr, ..Default::default() });
    match settings::stage_name_problem(&name) {
        None => Ok(name),
        Some(why) => Err(PreviewError::new(
            format!("PR {pr}: {why}"),
            "change `name` under [pipeline.preview] in ferry.toml, e.g. `pr-{number}`",
        )),
    }
}

/// Ports for the apps `apps` (those with a port in the template) of PR `pr`: the ones it
/// already holds, then the lowest of the range no other preview holds and `is_free` accepts
/// (nothing else listens there now).
pub fn allocate_ports(
    book: &Book,
    settings: &PreviewSettings,
    pr: u64,
    apps: &[&str],
    is_free: impl Fn(u16) -> bool,
) -> Result<BTreeMap<String, u16>, PreviewError> {
    let held_by_others: std::collections::BTreeSet<u16> =
        book.previews.values().filter(|p| p.pr != pr).flat_map(|p| p.ports.values().copied()).collect();
    let own = book.get(pr).map(|p| p.ports.clone()).unwrap_or_default();
    let mut out = BTreeMap::new();
    let mut taken: std::collections::BTreeSet<u16> = own.values().copied().collect();
    let (first, last) = settings.ports;
    let mut next = first;
    for app in apps {
        if let Some(port) = own.get(*app) {
            out.insert(app.to_string(), *port);
            continue;
        }
        let found = loop {
            if next > last || next == 0 {
                break None;
            }
            let candidate = next;
            next = next.checked_add(1).unwrap_or(0);
            if !held_by_others.contains(&candidate) && !taken.contains(&candidate) && is_free(candidate) {
                break Some(candidate);
            }
        };
        match found {
            Some(port) => {
                taken.insert(port);
                out.insert(app.to_string(), port);
            }
            None => {
                return Err(PreviewError::new(
                    format!(
                        "the preview port range {first}-{last} is exhausted: {} previews hold {} of its ports, \
                         and PR {pr} needs {} more",
                        book.previews.len() - usize::from(book.get(pr).is_some()),
                        held_by_others.len(),
                        apps.len() - own.len().min(apps.len())
                    ),
                    "remove stale previews (`ferry preview prune --older-than 7d`, `ferry preview down PR`), or \
                     widen `ports` under [pipeline.preview]",
                ))
            }
        }
    }
    Ok(out)
}

/// Whether nothing listens on 127.0.0.1:`port` now.
pub fn port_is_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// The app whose URL is the preview's: `web` when it has a port, else the first app (by
/// name) with one.
pub fn url_app(ports: &BTreeMap<String, u16>) -> Option<(&str, u16)> {
    ports.get_key_value("web").or_else(|| ports.iter().next()).map(|(a, p)| (a.as_str(), *p))
}

/// The preview's URL on the local runtime.
pub fn local_url(ports: &BTreeMap<String, u16>) -> Option<String> {
    url_app(ports).map(|(_, port)| format!("http://127.0.0.1:{port}"))
}

/// The preview's stage: the template with the preview's name, ports, scale, env and images.
/// The template's file stays the stage's file, so located errors point at it.
pub fn render(settings: &PreviewSettings, template: &Stage, preview: &Preview) -> Stage {
    let mut stage = template.clone();
    stage.name = preview.stage.clone();
    let vars = Vars {
        number: preview.pr,
        branch: preview.branch.as_deref().unwrap_or(""),
        sha: preview.sha.as_deref().unwrap_or(""),
        url: preview.url.as_deref().unwrap_or(""),
        stage: &preview.stage,
        app: "",
    };
    for app in stage.apps.values_mut() {
        app.scale = settings.scale;
        if let Some(port) = preview.ports.get(&app.name) {
            app.config.port = Some(*port);
        }
        for (key, value) in &settings.env {
            let value = settings::substitute(value, &Vars { app: &app.name, ..vars.clone() });
            app.config.env.insert(key.clone(), value);
        }
        if let Some(digest) = preview.images.get(&app.name) {
            let id = match app.releases.iter().find(|(_, d)| *d == digest) {
                Some((id, _)) => *id,
                None => {
                    let id = app.releases.keys().next_back().map_or(1, |last| last + 1);
                    app.releases.insert(id, digest.clone());
                    id
                }
            };
            app.active = Some(id);
        }
    }
    if let Some(made) = &preview.ecs {
        ecs::render_apps(&mut stage, made);
    }
    stage
}

/// The rendered stage of a recorded preview named `name`, when `name` is one: so `ferry ps`,
/// `logs`, `history`, `promote --from` and the rest reach previews like any stage. `None`
/// when the project has no previews or none is named so.
pub fn load_stage(project: &Project, name: &str) -> Option<Result<Stage, Diagnostics>> {
    let settings = project.preview.as_ref()?;
    let store = records::open_records(project).ok()?;
    let book = load_book(store.as_ref()).ok()?;
    let preview = book.by_stage(name)?;
    Some(crate::config::validate::load_stage(project, &settings.template).map(|t| render(settings, &t, preview)))
}

/// `7d`, `12h`, `30m`, `45s` (and anything `config::Duration` reads) as a chrono duration.
pub fn parse_age(text: &str) -> Result<chrono::Duration, String> {
    let text = text.trim();
    if let Some(days) = text.strip_suffix('d') {
        if let Ok(n) = days.parse::<i64>() {
            if (0..=36_500).contains(&n) {
                return Ok(chrono::Duration::days(n));
            }
        }
    }
    let d: crate::config::Duration =
        text.parse().map_err(|_| format!("`{text}` is not an age: write e.g. `7d`, `12h` or `30m`"))?;
    chrono::Duration::from_std(std::time::Duration::from_millis(d.as_millis()))
        .map_err(|_| format!("`{text}` is too long an age"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(ports: (u16, u16)) -> PreviewSettings {
        PreviewSettings {
            template: "dev".into(),
            name: "pr-{number}".into(),
            ports,
            scale: 1,
            env: BTreeMap::new(),
            ecs: Default::default(),
        }
    }

    fn preview(pr: u64, ports: &[(&str, u16)]) -> Preview {
        Preview {
            pr,
            stage: format!("pr-{pr}"),
            template: "dev".into(),
            status: PreviewStatus::Up,
            ports: ports.iter().map(|(a, p)| (a.to_string(), *p)).collect(),
            images: BTreeMap::new(),
            branch: None,
            sha: None,
            url: None,
            ecs: None,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn pr_numbers_are_positive_integers() {
        assert_eq!(parse_pr("12"), Ok(12));
        for bad in ["0", "-3", "abc", "1.5", "", "99999999999999999999999"] {
            assert!(parse_pr(bad).unwrap_err().contains("positive integer"), "{bad}");
        }
    }

    #[test]
    fn ports_are_kept_shared_out_and_run_out_clearly() {
        let s = settings((100, 104));
        let mut book = Book::default();
        book.previews.insert("1".into(), preview(1, &[("api", 100), ("web", 101)]));
        // PR 1 keeps its own ports; PR 2 takes the lowest free ones, skipping a busy port.
        assert_eq!(allocate_ports(&book, &s, 1, &["api", "web"], |_| false).unwrap()["web"], 101);
        let two = allocate_ports(&book, &s, 2, &["api", "web"], |p| p != 102).unwrap();
        assert_eq!(two.values().copied().collect::<Vec<_>>(), [103, 104]);
        book.previews.insert("2".into(), preview(2, &[("api", 103), ("web", 104)]));
        // 102 is free again: PR 3 gets it; PR 4 finds nothing.
        assert_eq!(allocate_ports(&book, &s, 3, &["api"], |_| true).unwrap()["api"], 102);
        book.previews.insert("3".into(), preview(3, &[("api", 102)]));
        let err = allocate_ports(&book, &s, 4, &["api"], |_| true).unwrap_err();
        assert!(err.message.contains("100-104 is exhausted"), "{}", err.message);
        assert!(err.hint.unwrap().contains("prune"));
    }

    #[test]
    fn names_that_are_not_stage_names_are_refused() {
        let mut s = settings((1, 2));
        assert_eq!(stage_name(&s, 7).unwrap(), "pr-7");
        s.name = "PR_{number}".into();
        let err = stage_name(&s, 7).unwrap_err();
        assert!(err.message.contains("`PR_7` is not a valid preview stage name"), "{}", err.message);
    }

    #[test]
    fn the_url_is_web_s_or_the_first_app_s() {
        let ports: BTreeMap<String, u16> = [("api".to_string(), 5), ("web".to_string(), 6)].into();
        assert_eq!(local_url(&ports).as_deref(), Some("http://127.0.0.1:6"));
        let ports: BTreeMap<String, u16> = [("api".to_string(), 5), ("zz".to_string(), 6)].into();
        assert_eq!(local_url(&ports).as_deref(), Some("http://127.0.0.1:5"));
        assert_eq!(local_url(&BTreeMap::new()), None);
    }

    #[test]
    fn ages() {
        assert_eq!(parse_age("7d").unwrap(), chrono::Duration::days(7));
        assert_eq!(parse_age("90m").unwrap(), chrono::Duration::minutes(90));
        assert!(parse_age("soon").is_err());
    }
}
