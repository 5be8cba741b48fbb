//! `[pipeline.preview]` of `ferry.toml`: the file type (read with the rest of the project
//! file) and the checked settings, with every problem located in `ferry.toml`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::source::{SourceFile, Target};
use crate::config::Diagnostics;

/// The default name pattern.
pub const DEFAULT_NAME: &str = "pr-{number}";
/// The default local port range.
pub const DEFAULT_PORTS: (u16, u16) = (19000, 19999);

/// `[pipeline.preview]` as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewSection {
    /// The stage each preview is made from (its file, with the overrides below).
    pub template: String,
    /// The preview's stage name; must hold `{number}`. Default: `pr-{number}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Local runtime: the range app ports are taken from, `FIRST-LAST`. Default: `19000-19999`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<String>,
    /// Tasks per app. Default: 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<i64>,
    /// Merged over the env of every app of the template; values may use `{number}`,
    /// `{branch}`, `{sha}` and `{url}`. Default: none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// ECS previews: how services, target groups and listener rules are named. Default: the
    /// defaults of each key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ecs: Option<PreviewEcsSection>,
}

/// `[pipeline.preview.ecs]` as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewEcsSection {
    /// Service names; `{stage}` and `{app}`. Default: `{stage}-{app}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Target group names (at most 32 characters); `{number}` and `{app}`. Default:
    /// `pr-{number}-{app}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_group: Option<String>,
    /// The listener the preview's host-header rules are added to (an ARN). Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener: Option<String>,
    /// The host header of a preview's rule, e.g. `pr-{number}.example.com`; also its URL.
    /// Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// `[pipeline.preview]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviewSettings {
    pub template: String,
    pub name: String,
    pub ports: (u16, u16),
    pub scale: u32,
    pub env: BTreeMap<String, String>,
    pub ecs: PreviewEcs,
}

/// `[pipeline.preview.ecs]`, checked (carried for the ECS runtime; see docs/PREVIEWS.md).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PreviewEcs {
    pub service: String,
    pub target_group: String,
    pub listener: Option<String>,
    pub host: Option<String>,
}

/// What a pattern's placeholders stand for.
#[derive(Debug, Clone, Default)]
pub struct Vars<'a> {
    pub number: u64,
    pub branch: &'a str,
    pub sha: &'a str,
    pub url: &'a str,
    pub stage: &'a str,
    pub app: &'a str,
}

/// `pattern` with its placeholders replaced. Other braces are left as they are (env values
/// may hold JSON).
pub fn substitute(pattern: &str, v: &Vars<'_>) -> String {
    let number = v.number.to_string();
    let pairs: [(&str, &str); 6] = [
        ("{number}", &number),
        ("{branch}", v.branch),
        ("{sha}", v.sha),
        ("{url}", v.url),
        ("{stage}", v.stage),
        ("{app}", v.app),
    ];
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut rest = pattern;
    'outer: while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        for (key, value) in pairs {
            if let Some(after) = tail.strip_prefix(key) {
                out.push_str(value);
                rest = after;
                continue 'outer;
            }
        }
        out.push('{');
        rest = &tail[1..];
    }
    out.push_str(rest);
    out
}

/// Why `name` cannot be a preview's stage name, if it cannot: a DNS label, since it also
/// names services and host names.
pub fn stage_name_problem(name: &str) -> Option<String> {
    if crate::config::validate::is_dns_label(name, 63) {
        None
    } else {
        Some(format!(
            "`{name}` is not a valid preview stage name: lowercase letters, digits and `-`, at most 63 characters"
        ))
    }
}

/// The largest PR number names are checked with: the longest names a preview can get.
const LONGEST: u64 = 99_999_999;

fn parse_ports(text: &str) -> Option<(u16, u16)> {
    let (a, b) = text.split_once('-')?;
    let (a, b): (u16, u16) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    (a > 0 && a <= b).then_some((a, b))
}

/// Check `[pipeline.preview]` against the stages that exist.
pub fn check(
    src: &SourceFile,
    section: Option<&PreviewSection>,
    stages: &[String],
    diags: &mut Diagnostics,
) -> Option<PreviewSettings> {
    let section = section?;
    let at = |key: &str| crate::path!["pipeline", "preview", key];
    let before = diags.0.len();
    if !stages.iter().any(|s| s == &section.template) {
        let known = if stages.is_empty() { "none".to_string() } else { stages.join(", ") };
        diags.push(
            src.diagnostic(&at("template"), Target::Value, format!("unknown template stage `{}`", section.template))
                .with_hint(format!("name a stage of stages/ ({known})")),
        );
    }
    let name = section.name.clone().unwrap_or_else(|| DEFAULT_NAME.to_string());
    if !name.contains("{number}") {
        diags.push(
            src.diagnostic(&at("name"), Target::Value, format!("the preview name `{name}` has no `{{number}}`"))
                .with_hint("every pull request needs a stage of its own, e.g. `pr-{number}`"),
        );
    } else {
        let sample = substitute(&name, &Vars { number: LONGEST, ..Default::default() });
        if let Some(why) = stage_name_problem(&sample) {
            diags.push(
                src.diagnostic(&at("name"), Target::Value, format!("the preview name `{name}` gives {why}"))
                    .with_hint("use lowercase letters, digits, `-` and `{number}`, e.g. `pr-{number}`"),
            );
        } else if stages.iter().any(|s| s == &substitute(&name, &Vars { number: 1, ..Default::default() })) {
            diags.push(
                src.diagnostic(&at("name"), Target::Value, format!("the preview name `{name}` names existing stages"))
                    .with_hint("previews have no stage file: rename the stage files, or choose another pattern"),
            );
        }
    }
    let ports = match &section.ports {
        None => DEFAULT_PORTS,
        Some(text) => parse_ports(text).unwrap_or_else(|| {
            diags.push(
                src.diagnostic(&at("ports"), Target::Value, format!("`{text}` is not a port range"))
                    .with_hint("write FIRST-LAST with ports from 1 to 65535, e.g. \"19000-19999\""),
            );
            DEFAULT_PORTS
        }),
    };
    let scale = match section.scale {
        None => 1,
        Some(n) if (0..=1000).contains(&n) => n as u32,
        Some(n) => {
            diags.push(
                src.diagnostic(&at("scale"), Target::Value, format!("scale {n} is not between 0 and 1000"))
                    .with_hint("previews usually run 1 task per app"),
            );
            1
        }
    };
    for key in section.env.keys() {
        let valid = !key.is_empty()
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !key.as_bytes()[0].is_ascii_digit();
        if !valid {
            let at_key = crate::path!["pipeline", "preview", "env", key.as_str()];
            diags.push(
                src.diagnostic(&at_key, Target::Key, format!("`{key}` is not an environment variable name"))
                    .with_hint("use letters, digits and `_`, not starting with a digit"),
            );
        }
    }
    let ecs = check_ecs(src, section.ecs.as_ref(), diags);
    (diags.0.len() == before).then(|| PreviewSettings {
        template: section.template.clone(),
        name,
        ports,
        scale,
        env: section.env.clone(),
        ecs,
    })
}

fn check_ecs(src: &SourceFile, section: Option<&PreviewEcsSection>, diags: &mut Diagnostics) -> PreviewEcs {
    let section = section.cloned().unwrap_or_default();
    let at = |key: &str| crate::path!["pipeline", "preview", "ecs", key];
    let longest = Vars { number: LONGEST, stage: "pr-99999999", app: "an-app-name-of-twenty", ..Default::default() };
    let service = section.service.unwrap_or_else(|| "{stage}-{app}".into());
    let rendered = substitute(&service, &longest);
    if (!service.contains("{stage}") && !service.contains("{number}")) || !service.contains("{app}") {
        diags.push(
            src.diagnostic(
                &at("service"),
                Target::Value,
                format!("service name `{service}` is not unique per preview and app"),
            )
            .with_hint("use `{stage}` (or `{number}`) and `{app}`, e.g. `{stage}-{app}`"),
        );
    } else if rendered.len() > 255 || !rendered.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        diags.push(
            src.diagnostic(
                &at("service"),
                Target::Value,
                format!("service name `{service}` gives invalid ECS service names"),
            )
            .with_hint("letters, digits, `-` and `_`, at most 255 characters"),
        );
    }
    let target_group = section.target_group.unwrap_or_else(|| "pr-{number}-{app}".into());
    let rendered = substitute(&target_group, &Vars { app: "app", ..longest.clone() });
    if !target_group.contains("{number}") || !target_group.contains("{app}") {
        diags.push(
            src.diagnostic(
                &at("target_group"),
                Target::Value,
                format!("target group name `{target_group}` is not unique per preview and app"),
            )
            .with_hint("use `{number}` and `{app}`, e.g. `pr-{number}-{app}`"),
        );
    } else if rendered.len() > 32 || !crate::config::validate::is_dns_label(&rendered.to_lowercase(), 32) {
        diags.push(
            src.diagnostic(
                &at("target_group"),
                Target::Value,
                format!("target group name `{target_group}` gives names ELB refuses (`{rendered}` for app `app`)"),
            )
            .with_hint("at most 32 letters, digits and `-`, e.g. `pr-{number}-{app}`"),
        );
    }
    if let Some(host) = &section.host {
        let rendered = substitute(host, &longest);
        let valid = rendered.len() <= 253 && rendered.split('.').all(|l| crate::config::validate::is_dns_label(l, 63));
        if !host.contains("{number}") || !valid {
            diags.push(
                src.diagnostic(&at("host"), Target::Value, format!("host `{host}` is not a host name per preview"))
                    .with_hint("use `{number}` in a DNS name, e.g. `pr-{number}.example.com`"),
            );
        }
    }
    if let Some(listener) = &section.listener {
        if !listener.starts_with("arn:") || !listener.contains(":listener/") {
            diags.push(
                src.diagnostic(&at("listener"), Target::Value, "`listener` is not a load balancer listener ARN")
                    .with_hint("arn:aws:elasticloadbalancing:REGION:ACCOUNT:listener/app/NAME/ID/ID"),
            );
        }
    }
    // A rule needs both: a host with no listener to put it on, or a listener with no host to
    // match, would make previews without the URL the user asked for. Refused, located at the
    // key that is there, rather than quietly making no rule.
    match (&section.listener, &section.host) {
        (Some(_), None) => diags.push(
            src.diagnostic(&at("listener"), Target::Key, "`listener` is set without `host`: the rule has no host to match")
                .with_hint("add `host = \"pr-{number}.example.com\"` (a name your DNS sends to the load balancer), or remove `listener`"),
        ),
        (None, Some(_)) => diags.push(
            src.diagnostic(&at("host"), Target::Key, "`host` is set without `listener`: there is no listener to add its rule to")
                .with_hint("add `listener = \"arn:aws:elasticloadbalancing:…:listener/app/…\"` (the load balancer's listener), or remove `host`"),
        ),
        _ => {}
    }
    PreviewEcs { service, target_group, listener: section.listener, host: section.host }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutes_known_placeholders_and_leaves_other_braces() {
        let v = Vars { number: 12, branch: "feat/x", sha: "abc", url: "http://127.0.0.1:19000", ..Default::default() };
        assert_eq!(substitute("pr-{number}", &v), "pr-12");
        assert_eq!(substitute("{url}/?b={branch}&s={sha}", &v), "http://127.0.0.1:19000/?b=feat/x&s=abc");
        assert_eq!(substitute(r#"{"a": {number}}"#, &v), r#"{"a": 12}"#);
        assert_eq!(substitute("{nope}{", &v), "{nope}{");
    }

    #[test]
    fn port_ranges() {
        assert_eq!(parse_ports("19000-19999"), Some((19000, 19999)));
        assert_eq!(parse_ports("5-5"), Some((5, 5)));
        assert_eq!(parse_ports("9-5"), None);
        assert_eq!(parse_ports("0-5"), None);
        assert_eq!(parse_ports("19000"), None);
        assert_eq!(parse_ports("1-70000"), None);
    }
}
