//! What a deployment changed, in words and as a [`DeploymentKind`].

use std::collections::BTreeMap;

use crate::config::{AppConfig, Digest};
use crate::state::{ActiveDeployment, DeploymentKind};

/// What a deployment is about to make an app run, as the apply engine knows it.
#[derive(Debug, Clone, Copy)]
pub struct NextDeployment<'a> {
    pub release: u64,
    pub digest: &'a Digest,
    pub scale: u32,
    pub config: &'a AppConfig,
    /// The deployment vN this change restores, from
    /// [`rollback_target_matching`](super::rollback_target_matching).
    pub rollback_to: Option<u64>,
    /// The stage a promotion brought the release from.
    pub promoted_from: Option<&'a str>,
}

/// Which kind of deployment `next` is after `prev` (what ran before; `None` for the first).
/// A promotion or rollback is that whatever else changes; otherwise the biggest change
/// names it: a new release, then config, then scale.
pub fn change_kind(prev: Option<&ActiveDeployment>, next: &NextDeployment<'_>) -> DeploymentKind {
    if next.promoted_from.is_some() {
        return DeploymentKind::Promotion;
    }
    if next.rollback_to.is_some() {
        return DeploymentKind::Rollback;
    }
    match prev {
        None => DeploymentKind::Activate,
        Some(p) if p.release != next.release || p.digest != *next.digest => DeploymentKind::Activate,
        Some(p) if p.config != *next.config => DeploymentKind::Config,
        Some(p) if p.scale != next.scale => DeploymentKind::Scale,
        // Nothing changed: a redeploy of what runs (after a failed attempt, say).
        Some(_) => DeploymentKind::Activate,
    }
}

/// The description recorded with deployment `next`, e.g. "Activate release 3
/// (sha256:2b51cd…)". When several things change, the first names the kind and the others
/// follow: "Activate release 3 (sha256:2b51cd…), config change: +FEATURE_X, scale 2 → 4".
pub fn describe_change(prev: Option<&ActiveDeployment>, next: &NextDeployment<'_>) -> String {
    if let Some(stage) = next.promoted_from {
        return format!("Promotion from {stage} (release {})", next.release);
    }
    if let Some(n) = next.rollback_to {
        return format!("Rollback to v{n}");
    }
    let mut parts = Vec::new();
    let release_changed = prev.is_none_or(|p| p.release != next.release || p.digest != *next.digest);
    if release_changed {
        parts.push(format!("Activate release {} ({})", next.release, short_digest(next.digest)));
    }
    if let Some(p) = prev {
        let config = config_changes(&p.config, next.config);
        if !config.is_empty() {
            parts.push(format!("Config change: {}", config.join(" ")));
        }
        if p.scale != next.scale {
            parts.push(format!("Scale {} → {}", p.scale, next.scale));
        }
    }
    if parts.is_empty() {
        return format!("Redeploy release {}", next.release);
    }
    let mut text = parts.remove(0);
    for part in parts {
        text.push_str(", ");
        text.push_str(&lowercase_first(&part));
    }
    text
}

/// `sha256:` and six hex digits with an ellipsis: enough to tell releases apart in a list.
pub fn short_digest(digest: &Digest) -> String {
    format!("sha256:{}…", &digest.hex()[..6])
}

fn lowercase_first(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map(|c| c.to_lowercase().chain(chars).collect()).unwrap_or_default()
}

/// `+NAME` added, `~NAME` changed, `-NAME` removed for env vars and secrets (values are
/// never shown: they may be sensitive), then `~field` for every other changed setting.
fn config_changes(old: &AppConfig, new: &AppConfig) -> Vec<String> {
    let mut out = Vec::new();
    let secrets = |c: &AppConfig| -> BTreeMap<String, String> {
        c.secrets.iter().map(|(k, v)| (k.clone(), v.reference())).collect()
    };
    for (a, b) in [(&old.env, &new.env), (&secrets(old), &secrets(new))] {
        out.extend(b.keys().filter(|k| !a.contains_key(*k)).map(|k| format!("+{k}")));
        out.extend(b.iter().filter(|(k, v)| a.get(*k).is_some_and(|o| o != *v)).map(|(k, _)| format!("~{k}")));
        out.extend(a.keys().filter(|k| !b.contains_key(*k)).map(|k| format!("-{k}")));
    }
    let fields = [
        ("cpu", old.cpu != new.cpu),
        ("memory", old.memory != new.memory),
        ("command", old.command != new.command),
        ("port", old.port != new.port),
        ("sensitive_env", old.sensitive_env != new.sensitive_env),
        ("health", old.health != new.health),
        ("deploy", without_target_groups(&old.deploy) != without_target_groups(&new.deploy)),
        ("release_tasks", old.release_tasks != new.release_tasks),
        ("target_group", old.target_group != new.target_group),
        ("target_groups", old.deploy.ecs.target_groups != new.deploy.ecs.target_groups),
    ];
    out.extend(fields.iter().filter(|(_, changed)| *changed).map(|(name, _)| format!("~{name}")));
    out
}

/// Deploy settings less `target_groups`, which the config keeps there but a history names
/// on their own, as the short `target_group`.
fn without_target_groups(d: &crate::config::DeploySettings) -> crate::config::DeploySettings {
    let mut d = d.clone();
    d.ecs.target_groups.clear();
    d
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::{DeploySettings, Health};
    use crate::state::config_hash;

    pub(crate) fn config() -> AppConfig {
        AppConfig {
            cpu: 256,
            memory: 512,
            command: vec![],
            port: Some(8080),
            env: [("RAILS_ENV", "production"), ("OLD", "1")].map(|(k, v)| (k.into(), v.into())).into(),
            sensitive_env: Default::default(),
            secrets: Default::default(),
            health: Health::default(),
            deploy: DeploySettings::default(),
            release_tasks: vec![],
            target_group: None,
        }
    }

    fn digest(c: char) -> Digest {
        format!("sha256:{}", c.to_string().repeat(64)).parse().unwrap()
    }

    fn active(release: u64, scale: u32, config: AppConfig) -> ActiveDeployment {
        ActiveDeployment {
            deployment: 4,
            image: "web".into(),
            release,
            digest: digest(char::from_digit(release as u32, 10).unwrap()),
            scale,
            config_hash: config_hash(&config),
            config,
            revision: None,
        }
    }

    fn next<'a>(release: u64, digest: &'a Digest, scale: u32, config: &'a AppConfig) -> NextDeployment<'a> {
        NextDeployment { release, digest, scale, config, rollback_to: None, promoted_from: None }
    }

    #[test]
    fn describes_each_kind_of_change() {
        let c = config();
        let (d2, d3) = (digest('2'), "sha256:2b51cdaabcdc9c35b36e998ec81d2ed8507def0e4709a4d5003414e727e67fa9");
        let d3: Digest = d3.parse().unwrap();
        let prev = active(2, 2, c.clone());
        let cases: Vec<(Option<&ActiveDeployment>, NextDeployment<'_>, &str, DeploymentKind)> = vec![
            (None, next(3, &d3, 2, &c), "Activate release 3 (sha256:2b51cd…)", DeploymentKind::Activate),
            (Some(&prev), next(3, &d3, 2, &c), "Activate release 3 (sha256:2b51cd…)", DeploymentKind::Activate),
            (Some(&prev), next(2, &d2, 4, &c), "Scale 2 → 4", DeploymentKind::Scale),
            (Some(&prev), next(2, &d2, 2, &c), "Redeploy release 2", DeploymentKind::Activate),
            (
                Some(&prev),
                NextDeployment { rollback_to: Some(5), ..next(1, &d2, 2, &c) },
                "Rollback to v5",
                DeploymentKind::Rollback,
            ),
            (
                Some(&prev),
                NextDeployment { promoted_from: Some("staging"), ..next(3, &d3, 2, &c) },
                "Promotion from staging (release 3)",
                DeploymentKind::Promotion,
            ),
        ];
        for (prev, next, text, kind) in cases {
            assert_eq!(describe_change(prev, &next), text);
            assert_eq!(change_kind(prev, &next), kind, "{text}");
        }
    }

    #[test]
    fn config_changes_name_variables_never_values() {
        let prev = active(2, 2, config());
        let mut c = config();
        c.env.insert("FEATURE_X".into(), "on".into());
        c.env.insert("RAILS_ENV".into(), "staging".into());
        c.env.remove("OLD");
        let d2 = prev.digest.clone();
        let n = next(2, &d2, 2, &c);
        assert_eq!(describe_change(Some(&prev), &n), "Config change: +FEATURE_X ~RAILS_ENV -OLD");
        assert_eq!(change_kind(Some(&prev), &n), DeploymentKind::Config);

        c.memory = 1024;
        c.secrets.insert("DB".into(), "env:DB".parse().unwrap());
        let d3 = digest('3');
        let n = next(3, &d3, 4, &c);
        assert_eq!(
            describe_change(Some(&prev), &n),
            "Activate release 3 (sha256:333333…), config change: +FEATURE_X ~RAILS_ENV -OLD +DB ~memory, scale 2 → 4"
        );
        assert_eq!(change_kind(Some(&prev), &n), DeploymentKind::Activate);
    }

    /// Several target groups (the long form, kept with the ECS deploy settings) are named
    /// as such, not as a change of the deploy settings.
    #[test]
    fn target_groups_are_named_on_their_own() {
        let prev = active(2, 2, config());
        let mut c = config();
        let group = |name: &str| crate::config::TargetGroup {
            arn: format!("arn:aws:elasticloadbalancing:eu-central-1:123456789012:targetgroup/{name}/1"),
            container: None,
            port: Some(9090),
        };
        c.deploy.ecs.target_groups = vec![group("web"), group("admin")];
        let d2 = prev.digest.clone();
        assert_eq!(describe_change(Some(&prev), &next(2, &d2, 2, &c)), "Config change: ~target_groups");
        c.deploy.timeout = crate::config::Duration::from_millis(1_000);
        assert_eq!(describe_change(Some(&prev), &next(2, &d2, 2, &c)), "Config change: ~deploy ~target_groups");
    }
}
