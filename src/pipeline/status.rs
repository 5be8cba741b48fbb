//! Status checks: `(app, digest, context) → pending | success | failure | error`, reported
//! by other systems (CI, QA) with a description and URL, kept with their history in the
//! project's record store as `status/<app>`. The latest report per context counts; a
//! pipeline step's `required_checks` must all be `success` before a digest is promoted
//! into it.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::records::{self, RecordStore, Result};
use crate::config::Digest;

/// The state of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum CheckState {
    Pending,
    Success,
    Failure,
    Error,
}

impl CheckState {
    /// The name as typed and stored.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckState::Pending => "pending",
            CheckState::Success => "success",
            CheckState::Failure => "failure",
            CheckState::Error => "error",
        }
    }
}

impl fmt::Display for CheckState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CheckState {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "pending" => Ok(CheckState::Pending),
            "success" => Ok(CheckState::Success),
            "failure" => Ok(CheckState::Failure),
            "error" => Ok(CheckState::Error),
            _ => Err(format!("`{s}` is not a check state (pending, success, failure, error)")),
        }
    }
}

/// One report of a check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    pub digest: Digest,
    pub context: String,
    pub state: CheckState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub at: DateTime<Utc>,
}

/// Every report for one app, oldest first: the document `status/<app>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusLog {
    #[serde(default)]
    pub reports: Vec<StatusReport>,
}

impl StatusLog {
    /// The latest report per context for `digest`, by context name.
    pub fn latest(&self, digest: &Digest) -> BTreeMap<&str, &StatusReport> {
        let mut latest = BTreeMap::new();
        for r in self.reports.iter().filter(|r| &r.digest == digest) {
            latest.insert(r.context.as_str(), r);
        }
        latest
    }

    /// Reports for `digest` (or every digest), oldest first.
    pub fn history<'a>(&'a self, digest: Option<&'a Digest>) -> impl Iterator<Item = &'a StatusReport> + 'a {
        self.reports.iter().filter(move |r| digest.is_none_or(|d| &r.digest == d))
    }

    /// The required contexts that are not `success` for `digest`, in `required` order.
    pub fn unmet(&self, digest: &Digest, required: &[String]) -> Vec<UnmetCheck> {
        let latest = self.latest(digest);
        required
            .iter()
            .filter_map(|context| match latest.get(context.as_str()) {
                Some(r) if r.state == CheckState::Success => None,
                Some(r) => Some(UnmetCheck { context: context.clone(), latest: Some((*r).clone()) }),
                None => Some(UnmetCheck { context: context.clone(), latest: None }),
            })
            .collect()
    }
}

/// A required check that does not allow a promotion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnmetCheck {
    pub context: String,
    /// The latest report; `None` when the check never reported for the digest.
    pub latest: Option<StatusReport>,
}

impl fmt::Display for UnmetCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.latest {
            None => write!(f, "{}: missing (no status reported)", self.context),
            Some(r) => {
                write!(f, "{}: {}", self.context, r.state)?;
                if let Some(d) = &r.description {
                    write!(f, " — {d}")?;
                }
                if let Some(u) = &r.url {
                    write!(f, " ({u})")?;
                }
                Ok(())
            }
        }
    }
}

/// Status checks of a project, over its record store.
pub struct StatusStore {
    records: Box<dyn RecordStore>,
}

impl StatusStore {
    /// Status checks kept in `records`.
    pub fn new(records: Box<dyn RecordStore>) -> Self {
        StatusStore { records }
    }

    fn key(app: &str) -> String {
        format!("status/{app}")
    }

    /// Where an app's checks are kept, for messages.
    pub fn location(&self, app: &str) -> String {
        self.records.location(&Self::key(app))
    }

    /// Every report for `app`.
    pub fn log(&self, app: &str) -> Result<StatusLog> {
        records::load(self.records.as_ref(), &Self::key(app))
    }

    /// Record a report (appended to the history; it becomes the latest for its context).
    pub fn set(&self, app: &str, report: StatusReport) -> Result<()> {
        records::update(self.records.as_ref(), &Self::key(app), |log: &mut StatusLog| {
            log.reports.push(report.clone());
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::records::InMemoryRecordStore;

    fn digest(c: char) -> Digest {
        format!("sha256:{}", c.to_string().repeat(64)).parse().unwrap()
    }

    fn report(d: &Digest, context: &str, state: CheckState, secs: i64) -> StatusReport {
        StatusReport {
            digest: d.clone(),
            context: context.into(),
            state,
            description: Some(format!("{context} said {state}")),
            url: Some(format!("https://ci.example/{context}")),
            at: DateTime::from_timestamp(secs, 0).unwrap(),
        }
    }

    #[test]
    fn the_latest_report_per_context_counts() {
        let store = StatusStore::new(Box::new(InMemoryRecordStore::default()));
        let (a, b) = (digest('a'), digest('b'));
        store.set("web", report(&a, "ci/tests", CheckState::Failure, 1)).unwrap();
        store.set("web", report(&a, "ci/tests", CheckState::Success, 2)).unwrap();
        store.set("web", report(&a, "qa/signoff", CheckState::Pending, 3)).unwrap();
        store.set("web", report(&b, "qa/signoff", CheckState::Success, 4)).unwrap();
        let log = store.log("web").unwrap();
        assert_eq!(log.history(Some(&a)).count(), 3);
        assert_eq!(log.history(None).count(), 4);
        let required = vec!["ci/tests".to_string(), "qa/signoff".to_string(), "sec/scan".to_string()];
        let unmet = log.unmet(&a, &required);
        let text: Vec<String> = unmet.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "qa/signoff: pending — qa/signoff said pending (https://ci.example/qa/signoff)",
                "sec/scan: missing (no status reported)"
            ]
        );
        assert!(log.unmet(&b, &required[1..2]).is_empty());
        assert!(store.log("api").unwrap().reports.is_empty());
    }
}
