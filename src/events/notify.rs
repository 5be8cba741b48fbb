//! `[[notify]]`: deploy events sent to webhooks, one compact JSON object per request
//! (`format = "json"`) or Slack's incoming-webhook shape with a one-line summary
//! (`format = "slack"`), signed with HMAC-SHA256 in `X-Ferry-Signature-256: sha256=HEX` when a
//! `secret` reference is given (the scheme GitHub uses for its webhooks, so receivers verify
//! it the same way).
//!
//! Delivery never fails a deploy: each request is retried with doubling pauses, every target
//! is served at once, and the whole delivery stops at a deadline (`Policy::budget`); what
//! could not be delivered is reported. Reports name the webhook by scheme and host only:
//! a Slack webhook URL's path is itself a credential.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Event, EventKind};
use crate::config::SecretRef;

/// `[[notify]]` as written in `ferry.toml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifySection {
    /// The webhook: an `http://` or `https://` URL, or a secret reference (`env:NAME`,
    /// `file:PATH`) holding it, for URLs that are credentials themselves (Slack's).
    pub url: String,
    /// `json`: the event as one JSON object; `slack`: `{"text": SUMMARY}`. Default: `json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<NotifyFormat>,
    /// Event kinds to send: `commit`, `release`, `promote`, `rollback`, `abort`, `status`,
    /// `preview`. Default: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,
    /// A secret reference (`env:NAME` or `file:PATH`) to the HMAC key: each request is signed
    /// in `X-Ferry-Signature-256: sha256=HEX`. Default: unsigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// The body's shape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NotifyFormat {
    #[default]
    Json,
    Slack,
}

/// Where a webhook's URL comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlSource {
    Plain(String),
    Secret(SecretRef),
}

/// One checked `[[notify]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyTarget {
    pub url: UrlSource,
    pub format: NotifyFormat,
    /// `None`: every kind.
    pub events: Option<BTreeSet<EventKind>>,
    pub secret: Option<SecretRef>,
}

impl NotifyTarget {
    pub fn wants(&self, kind: EventKind) -> bool {
        self.events.as_ref().is_none_or(|set| set.contains(&kind))
    }

    /// For reports: `scheme://host[:port]`, or the secret reference.
    pub fn label(&self) -> String {
        match &self.url {
            UrlSource::Plain(url) => redact_url(url),
            UrlSource::Secret(r) => r.reference(),
        }
    }
}

/// `scheme://host[:port]` of a URL: its path and query may be credentials.
fn redact_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    format!("{scheme}://{host}")
}

/// Check one `[[notify]]` entry; the problems are `(key, message, hint)` for the caller to
/// locate in `ferry.toml`.
pub fn check(section: &NotifySection) -> Result<NotifyTarget, Vec<(&'static str, String, String)>> {
    let mut problems = Vec::new();
    let url = if section.url.starts_with("http://") || section.url.starts_with("https://") {
        if redact_url(&section.url).ends_with("://") {
            problems.push(("url", "the webhook URL has no host".to_string(), "write https://HOST/PATH".to_string()));
        }
        UrlSource::Plain(section.url.clone())
    } else {
        match section.url.parse::<SecretRef>() {
            Ok(r @ (SecretRef::Env(_) | SecretRef::File(_))) => UrlSource::Secret(r),
            _ => {
                problems.push((
                    "url",
                    "the webhook is neither an http(s) URL nor an `env:`/`file:` secret reference".to_string(),
                    "write https://HOST/PATH, or `env:NAME` for a URL kept in an environment variable".to_string(),
                ));
                UrlSource::Plain(String::new())
            }
        }
    };
    let events = match &section.events {
        None => None,
        Some(names) => {
            let mut set = BTreeSet::new();
            for name in names {
                match EventKind::parse(name) {
                    Some(k) => {
                        set.insert(k);
                    }
                    None => problems.push((
                        "events",
                        format!("unknown event kind `{name}`"),
                        format!(
                            "use some of: {}",
                            EventKind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
                        ),
                    )),
                }
            }
            Some(set)
        }
    };
    let secret = match &section.secret {
        None => None,
        Some(s) => match s.parse::<SecretRef>() {
            Ok(r @ (SecretRef::Env(_) | SecretRef::File(_))) => Some(r),
            Ok(_) => {
                problems.push((
                    "secret",
                    "ferry signs webhooks itself, so the key must be readable here".to_string(),
                    "use `env:NAME` or `file:PATH`".to_string(),
                ));
                None
            }
            Err(_) => {
                problems.push((
                    "secret",
                    "`secret` is a reference to the key, not the key".to_string(),
                    "write `env:NAME` (an environment variable) or `file:PATH` (a file in the project)".to_string(),
                ));
                None
            }
        },
    };
    if problems.is_empty() {
        Ok(NotifyTarget { url, format: section.format.unwrap_or_default(), events, secret })
    } else {
        Err(problems)
    }
}

/// Check every `[[notify]]` entry of `ferry.toml`, locating each problem.
pub fn check_all(
    src: &crate::config::source::SourceFile,
    sections: &[NotifySection],
    diags: &mut crate::config::Diagnostics,
) -> Vec<NotifyTarget> {
    let mut targets = Vec::new();
    for (i, section) in sections.iter().enumerate() {
        match check(section) {
            Ok(t) => targets.push(t),
            Err(problems) => {
                for (key, message, hint) in problems {
                    let at = crate::path!["notify", i, key];
                    diags.push(src.diagnostic(&at, crate::config::source::Target::Value, message).with_hint(hint));
                }
            }
        }
    }
    targets
}

/// Retries and the bound on the whole delivery.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Tries per event.
    pub attempts: u32,
    /// The first pause between tries; doubled each time.
    pub backoff: Duration,
    /// One request's limit.
    pub request_timeout: Duration,
    /// The whole delivery's limit, all targets at once: what a deploy can be delayed by.
    pub budget: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            attempts: 4,
            backoff: Duration::from_millis(250),
            request_timeout: Duration::from_secs(5),
            budget: Duration::from_secs(10),
        }
    }
}

/// What happened with one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    pub target: String,
    pub delivered: usize,
    /// Events not delivered, with the last reason.
    pub failed: Vec<(EventKind, String)>,
}

impl DeliveryReport {
    /// The warning to print, when something was not delivered.
    pub fn failure_line(&self) -> Option<String> {
        let (_, why) = self.failed.last()?;
        Some(format!(
            "warning: notify {}: {} event(s) not delivered ({}); the deploy is not affected",
            self.target,
            self.failed.len(),
            crate::render::escape_line(why)
        ))
    }
}

/// The key's bytes, read from its reference.
fn resolve(root: &Path, r: &SecretRef, what: &str) -> Result<String, String> {
    match r {
        SecretRef::Env(name) => {
            std::env::var(name).map_err(|_| format!("{what}: environment variable {name} is not set"))
        }
        SecretRef::File(path) => crate::runtime::local::secrets::read_file(root, what, path),
        other => Err(format!("{what}: {} cannot be read by ferry", other.reference())),
    }
}

/// `sha256=HEX` of `body` under `key`.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2_hmac::Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The request body of `event` in `format`.
pub fn body(event: &Event, format: NotifyFormat) -> String {
    match format {
        NotifyFormat::Json => event.to_json(),
        NotifyFormat::Slack => serde_json::json!({ "text": event.summary() }).to_string(),
    }
}

/// Send `events` to every target that wants them, all targets at once, within the policy's
/// budget. Blocks; safe to call from inside or outside a tokio runtime.
pub fn deliver_all(root: &Path, targets: &[NotifyTarget], events: &[Event], policy: &Policy) -> Vec<DeliveryReport> {
    let jobs: Vec<(&NotifyTarget, Vec<&Event>)> =
        targets.iter().map(|t| (t, events.iter().filter(|e| t.wants(e.kind)).collect::<Vec<_>>())).collect();
    if jobs.iter().all(|(_, evs)| evs.is_empty()) {
        return Vec::new();
    }
    let client = match reqwest::Client::builder().timeout(policy.request_timeout).build() {
        Ok(c) => c,
        Err(why) => {
            return jobs
                .iter()
                .map(|(t, evs)| DeliveryReport {
                    target: t.label(),
                    delivered: 0,
                    failed: evs.iter().map(|e| (e.kind, format!("no HTTP client: {why}"))).collect(),
                })
                .collect()
        }
    };
    let deadline = Instant::now() + policy.budget;
    crate::aws::block_on(async {
        let runs = jobs.into_iter().map(|(t, evs)| deliver_one(&client, root, t, evs, policy, deadline));
        futures_util::future::join_all(runs).await
    })
}

async fn deliver_one(
    client: &reqwest::Client,
    root: &Path,
    target: &NotifyTarget,
    events: Vec<&Event>,
    policy: &Policy,
    deadline: Instant,
) -> DeliveryReport {
    let mut report = DeliveryReport { target: target.label(), delivered: 0, failed: Vec::new() };
    if events.is_empty() {
        return report;
    }
    let setup = (|| {
        let url = match &target.url {
            UrlSource::Plain(u) => u.clone(),
            UrlSource::Secret(r) => resolve(root, r, "notify url")?,
        };
        let key = target.secret.as_ref().map(|r| resolve(root, r, "notify secret")).transpose()?;
        Ok::<_, String>((url, key))
    })();
    let (url, key) = match setup {
        Ok(v) => v,
        Err(why) => {
            report.failed = events.iter().map(|e| (e.kind, why.clone())).collect();
            return report;
        }
    };
    for event in events {
        let body = body(event, target.format);
        let mut pause = policy.backoff;
        let mut last = String::new();
        let mut sent = false;
        for attempt in 1..=policy.attempts {
            if Instant::now() >= deadline {
                last = format!("gave up at the {}s notification deadline: {last}", policy.budget.as_secs());
                break;
            }
            let mut request = client
                .post(&url)
                .header("content-type", "application/json")
                .header("user-agent", concat!("ferry/", env!("CARGO_PKG_VERSION")))
                .header("x-ferry-event", event.kind.as_str())
                .timeout(policy.request_timeout.min(deadline.saturating_duration_since(Instant::now())));
            if let Some(key) = &key {
                request = request.header("x-ferry-signature-256", signature(key.as_bytes(), body.as_bytes()));
            }
            match request.body(body.clone()).send().await {
                Ok(r) if r.status().is_success() => {
                    sent = true;
                    break;
                }
                // Errors are shown without the URL: its path may be a credential.
                Ok(r) => last = format!("HTTP {} on try {attempt}", r.status().as_u16()),
                Err(e) => last = format!("{} on try {attempt}", describe(e)),
            }
            if attempt < policy.attempts {
                let left = deadline.saturating_duration_since(Instant::now());
                tokio::time::sleep(pause.min(left)).await;
                pause *= 2;
            }
        }
        if sent {
            report.delivered += 1;
        } else {
            report.failed.push((event.kind, last));
        }
    }
    report
}

/// A request error in a few words, without the URL reqwest's Display would include.
fn describe(e: reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "cannot connect".into()
    } else {
        let mut e = e.without_url().to_string();
        e.truncate(200);
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(url: &str) -> NotifySection {
        NotifySection { url: url.into(), ..Default::default() }
    }

    #[test]
    fn checks_urls_kinds_and_secret_references() {
        let t = check(&section("https://hooks.example.com/T000/B000/XXXX")).unwrap();
        assert_eq!(t.label(), "https://hooks.example.com");
        assert!(t.wants(EventKind::Abort));
        let t = check(&section("env:SLACK_URL")).unwrap();
        assert_eq!(t.url, UrlSource::Secret(SecretRef::Env("SLACK_URL".into())));

        let bad = NotifySection {
            url: "hooks.example.com".into(),
            events: Some(vec!["commit".into(), "deploy".into()]),
            secret: Some("hunter2".into()),
            ..Default::default()
        };
        let problems = check(&bad).unwrap_err();
        let keys: Vec<&str> = problems.iter().map(|p| p.0).collect();
        assert_eq!(keys, ["url", "events", "secret"]);
        assert!(problems[1].1.contains("`deploy`"));
        assert!(!problems[2].1.contains("hunter2"), "a mistyped secret is not echoed");

        let only = NotifySection { events: Some(vec!["preview".into()]), ..section("http://127.0.0.1:1/x") };
        let t = check(&only).unwrap();
        assert!(t.wants(EventKind::Preview) && !t.wants(EventKind::Commit));
    }

    #[test]
    fn labels_never_show_paths_queries_or_userinfo() {
        assert_eq!(redact_url("https://user:pw@hooks.example.com:8443/a/b?token=x"), "https://hooks.example.com:8443");
        assert_eq!(redact_url("http://127.0.0.1:9/x"), "http://127.0.0.1:9");
    }

    #[test]
    fn signature_matches_the_rfc_4231_vector() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn slack_bodies_are_a_text_summary() {
        let e = Event::new(EventKind::Preview, "shop", super::super::Outcome::Succeeded);
        let v: serde_json::Value = serde_json::from_str(&body(&e, NotifyFormat::Slack)).unwrap();
        assert_eq!(v["text"], e.summary());
    }
}
