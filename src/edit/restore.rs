//! Restoring what an app ran in an earlier deployment into its stage file: `ferry rollback`
//! writes back the release, scale and config snapshot of deployment vN key by key, touching
//! only keys whose value differs from what the file declares now, so the diff (and the plan
//! made from it) shows exactly what the rollback changes and nothing else moves.

use crate::config::{App, AppConfig, Digest};
use crate::edit::{EditError, EditResult, FileValue, StageEdit};

/// What to restore: an app's release, scale and config as one deployment recorded them.
#[derive(Debug, Clone, Copy)]
pub struct Restore<'a> {
    pub release: u64,
    pub digest: &'a Digest,
    pub scale: u32,
    /// The config snapshot (secrets as references, which is what the file holds too).
    pub config: &'a AppConfig,
}

/// Parts of a snapshot the stage file keeps as it is, for the command to mention.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unrestored(pub Vec<&'static str>);

impl StageEdit {
    /// Make app `current.name` declare what `target` describes: re-add its release when it
    /// was deleted from the file, activate it, and set every setting the file can express
    /// (scale, cpu, memory, command, port, target group, env, sensitive env, secrets,
    /// health, deploy, release tasks) to the snapshot's value: a rollback to vN brings back
    /// the release tasks vN ran with, so rolling forward again runs the right ones.
    pub fn restore(&mut self, current: &App, target: Restore<'_>) -> EditResult<Unrestored> {
        let app = current.name.as_str();
        match current.releases.get(&target.release) {
            Some(declared) if declared != target.digest => {
                return Err(EditError::ReleaseChanged {
                    file: self.path.clone(),
                    app: app.to_string(),
                    id: target.release,
                    declared: declared.clone(),
                    expected: target.digest.clone(),
                })
            }
            Some(_) => {}
            None => self.add_release(app, target.release, target.digest)?,
        }
        if current.active != Some(target.release) {
            self.set_active(app, target.release)?;
        }
        let (now, then) = (&current.config, target.config);
        let int = |n: u32| Some(FileValue::Int(i64::from(n)));
        let str = |s: &str| Some(FileValue::Str(s.to_string()));
        let list = |l: &[String]| (!l.is_empty()).then(|| FileValue::List(l.to_vec()));
        let top: [(&str, Option<FileValue>, Option<FileValue>); 7] = [
            ("scale", int(current.scale), int(target.scale)),
            ("cpu", int(now.cpu), int(then.cpu)),
            ("memory", int(now.memory), int(then.memory)),
            ("command", list(&now.command), list(&then.command)),
            ("port", now.port.and_then(|p| int(p.into())), then.port.and_then(|p| int(p.into()))),
            ("target_group", now.target_group.as_deref().and_then(str), then.target_group.as_deref().and_then(str)),
            (
                "sensitive_env",
                list(&now.sensitive_env.iter().cloned().collect::<Vec<_>>()),
                list(&then.sensitive_env.iter().cloned().collect::<Vec<_>>()),
            ),
        ];
        for (key, was, wanted) in top {
            if was != wanted {
                self.set_app_value(app, key, wanted.as_ref())?;
            }
        }
        // The long form, `target_groups = [{ arn, container, port }, …]` (ECS keeps it with
        // the deploy settings); the short form above was cleared when vN used this one.
        let (groups_now, groups_then) =
            (target_groups(&now.deploy.ecs.target_groups), target_groups(&then.deploy.ecs.target_groups));
        if groups_now != groups_then {
            self.set_app_value(app, "target_groups", groups_then.as_ref())?;
        }
        let env = |m: &std::collections::BTreeMap<String, String>, k: &str| m.get(k).and_then(|v| str(v));
        // Env and secrets first: a TOML section created for them must come before a new
        // `health` one, as `fmt` orders them.
        for key in now.env.keys().chain(then.env.keys()) {
            let wanted = env(&then.env, key);
            if env(&now.env, key) != wanted {
                self.set_section_value(app, "env", key, wanted.as_ref())?;
            }
        }
        for key in now.secrets.keys().chain(then.secrets.keys()) {
            let wanted = then.secrets.get(key).map(|r| FileValue::Str(r.reference()));
            if now.secrets.get(key).map(|r| FileValue::Str(r.reference())) != wanted {
                self.set_section_value(app, "secrets", key, wanted.as_ref())?;
            }
        }
        let (h0, h1) = (&now.health, &then.health);
        let (d0, d1) = (&now.deploy, &then.deploy);
        let show = |d: &dyn std::fmt::Display| Some(FileValue::Str(d.to_string()));
        let sections: [(&str, &str, Option<FileValue>, Option<FileValue>); 12] = [
            ("health", "command", h0.command.as_deref().and_then(list), h1.command.as_deref().and_then(list)),
            ("health", "path", h0.path.as_deref().and_then(str), h1.path.as_deref().and_then(str)),
            ("health", "interval", show(&h0.interval), show(&h1.interval)),
            ("health", "timeout", show(&h0.timeout), show(&h1.timeout)),
            ("health", "healthy_threshold", int(h0.healthy_threshold), int(h1.healthy_threshold)),
            ("health", "unhealthy_threshold", int(h0.unhealthy_threshold), int(h1.unhealthy_threshold)),
            ("health", "grace_period", show(&h0.grace_period), show(&h1.grace_period)),
            ("deploy", "max_surge", show(&d0.max_surge), show(&d1.max_surge)),
            ("deploy", "min_healthy", show(&d0.min_healthy), show(&d1.min_healthy)),
            ("deploy", "timeout", show(&d0.timeout), show(&d1.timeout)),
            ("deploy", "drain", show(&d0.drain), show(&d1.drain)),
            ("deploy", "stop_timeout", show(&d0.stop_timeout), show(&d1.stop_timeout)),
        ];
        for (section, key, was, wanted) in sections {
            if was != wanted {
                self.set_section_value(app, section, key, wanted.as_ref())?;
            }
        }
        if now.release_tasks != then.release_tasks {
            self.set_release_tasks(app, &then.release_tasks)?;
        }
        // What the file keeps as it is (the command says so): the rest of the ECS deploy
        // settings (strategy, alarms, hooks…), the task definition's extras and autoscaling.
        let mut unrestored = Unrestored::default();
        let without_groups =
            |d: &crate::config::EcsDeploy| crate::config::EcsDeploy { target_groups: Vec::new(), ..d.clone() };
        if without_groups(&d0.ecs) != without_groups(&d1.ecs) {
            unrestored.0.push("ECS deployment settings");
        }
        if d0.ecs_task != d1.ecs_task {
            unrestored.0.push("ECS task settings");
        }
        if d0.autoscaling != d1.autoscaling {
            unrestored.0.push("autoscaling");
        }
        Ok(unrestored)
    }
}

/// `target_groups` as the file writes it (`None`: none, so the key goes).
fn target_groups(groups: &[crate::config::TargetGroup]) -> Option<FileValue> {
    (!groups.is_empty()).then(|| {
        FileValue::Tables(
            groups
                .iter()
                .map(|g| {
                    let mut entry = vec![("arn".to_string(), FileValue::Str(g.arn.clone()))];
                    if let Some(c) = &g.container {
                        entry.push(("container".to_string(), FileValue::Str(c.clone())));
                    }
                    if let Some(p) = g.port {
                        entry.push(("port".to_string(), FileValue::Int(i64::from(p))));
                    }
                    entry
                })
                .collect(),
        )
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::source::{Format, SourceFile};
    use crate::config::{Duration, Stage};

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    const TOML: &str = r#"# Staging.

[apps.web]
image = "web"
active = 2        # shipped on Monday
scale = 4
command = ["bin/web", "--port", "${PORT}"]
port = 8080

[apps.web.releases]
2 = "sha256:2222222222222222222222222222222222222222222222222222222222222222"

[apps.web.env]
RAILS_ENV = "staging"  # keep
FEATURE_X = "on"

[apps.web.deploy]
timeout = "10m"
"#;

    const HCL: &str = r#"# Staging.

app "web" {
  image   = "web"
  active  = 2 # shipped on Monday
  scale   = 4
  command = ["bin/web", "--port", "${PORT}"]
  port    = 8080

  releases = {
    2 = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
  }

  env = {
    RAILS_ENV = "staging" # keep
    FEATURE_X = "on"
  }

  deploy {
    timeout = "10m"
  }
}
"#;

    fn load(path: &str, text: &str) -> Stage {
        let p = Path::new(path);
        let src = SourceFile::parse(p, text.to_string(), Format::of_path(p)).unwrap();
        crate::config::validate::check_stage(&src, "staging").unwrap()
    }

    /// What v1 ran: release 1 (since deleted from the file), scale 2, another command and port,
    /// other env, a health path, default deploy settings and a secret reference.
    fn v1(web: &App) -> (Digest, AppConfig) {
        let mut config = web.config.clone();
        config.command = vec!["bin/web".into(), "${PORT}".into()];
        config.port = Some(9000);
        config.env.remove("FEATURE_X");
        config.env.insert("RAILS_ENV".into(), "production".into());
        config.env.insert("OLD".into(), "1".into());
        config.health.path = Some("/up".into());
        config.health.interval = Duration::from_millis(3_000);
        config.deploy.timeout = Duration::from_millis(5 * 60_000);
        config.secrets.insert("DB".into(), "env:DB_URL".parse().unwrap());
        (D1.parse().unwrap(), config)
    }

    fn restored(path: &str, text: &str) -> (StageEdit, App, AppConfig) {
        let web = load(path, text).apps["web"].clone();
        let (digest, config) = v1(&web);
        let mut edit = StageEdit::parse(Path::new(path), text).unwrap();
        let unrestored =
            edit.restore(&web, Restore { release: 1, digest: &digest, scale: 2, config: &config }).unwrap();
        assert_eq!(unrestored, Unrestored::default());
        (edit, web, config)
    }

    #[test]
    fn restores_release_scale_and_config_in_toml_and_hcl() {
        for (path, text) in [("stages/staging.toml", TOML), ("stages/staging.hcl", HCL)] {
            let (edit, _, config) = restored(path, text);
            let after = load(path, &edit.to_string()).apps["web"].clone();
            assert_eq!(after.active, Some(1), "{path}");
            assert_eq!(after.releases.len(), 2, "{path}: release 2 stays declared");
            assert_eq!(after.releases[&1].as_str(), D1, "{path}");
            assert_eq!(after.scale, 2, "{path}");
            assert_eq!(after.config, config, "{path}:\n{edit}");
            assert!(edit.to_string().contains("# shipped on Monday"), "{path}");
            assert!(edit.to_string().contains("# keep"), "{path}");
        }
    }

    #[test]
    fn toml_restore_diff() {
        insta::assert_snapshot!(restored("stages/staging.toml", TOML).0.diff(false));
    }

    #[test]
    fn hcl_restore_diff() {
        insta::assert_snapshot!(restored("stages/staging.hcl", HCL).0.diff(false));
    }

    #[test]
    fn restoring_what_the_file_declares_changes_nothing() {
        for (path, text) in [("stages/staging.toml", TOML), ("stages/staging.hcl", HCL)] {
            let web = load(path, text).apps["web"].clone();
            let mut edit = StageEdit::parse(Path::new(path), text).unwrap();
            let digest: Digest = D2.parse().unwrap();
            edit.restore(&web, Restore { release: 2, digest: &digest, scale: 4, config: &web.config }).unwrap();
            assert!(!edit.is_changed(), "{path}:\n{}", edit.diff(false));
        }
    }

    #[test]
    fn settings_without_a_value_are_removed_and_defaults_written_out() {
        for (path, text) in [("stages/staging.toml", TOML), ("stages/staging.hcl", HCL)] {
            let web = load(path, text).apps["web"].clone();
            let mut config = web.config.clone();
            config.command = vec![];
            config.port = None;
            config.deploy = Default::default();
            let mut edit = StageEdit::parse(Path::new(path), text).unwrap();
            let digest: Digest = D2.parse().unwrap();
            edit.restore(&web, Restore { release: 2, digest: &digest, scale: 4, config: &config }).unwrap();
            let out = edit.to_string();
            assert!(!out.contains("command") && !out.contains("port"), "{path}: no command, no port:\n{out}");
            // A default is written out rather than the key dropped: the diff says what it is.
            assert!(out.contains("timeout = \"5m\""), "{path}:\n{out}");
            assert_eq!(load(path, &out).apps["web"].config, config, "{path}");
        }
    }

    #[test]
    fn a_new_hcl_attribute_lines_up_with_its_neighbours() {
        let web = load("stages/staging.hcl", HCL).apps["web"].clone();
        let mut config = web.config.clone();
        config.cpu = 512;
        let mut edit = StageEdit::parse(Path::new("stages/staging.hcl"), HCL).unwrap();
        let digest: Digest = D2.parse().unwrap();
        edit.restore(&web, Restore { release: 2, digest: &digest, scale: 4, config: &config }).unwrap();
        assert!(edit.to_string().contains("  scale   = 4\n  cpu     = 512\n  command = ["), "{edit}");
    }

    #[test]
    fn release_tasks_are_restored_and_removed_in_toml_and_hcl() {
        use crate::config::{ReleaseTask, RunOn};
        let tasks = vec![
            ReleaseTask {
                name: "migrate".into(),
                command: vec!["bin/migrate".into(), "--fast".into()],
                timeout: Duration::from_millis(5 * 60_000),
                run_on: RunOn::Release,
            },
            ReleaseTask {
                name: "warm".into(),
                command: vec!["bin/warm".into()],
                timeout: Duration::from_millis(30_000),
                run_on: RunOn::EveryDeploy,
            },
        ];
        for (path, text) in [("stages/staging.toml", TOML), ("stages/staging.hcl", HCL)] {
            let web = load(path, text).apps["web"].clone();
            let digest: Digest = D2.parse().unwrap();
            let mut config = web.config.clone();
            config.release_tasks = tasks.clone();
            let mut edit = StageEdit::parse(Path::new(path), text).unwrap();
            let unrestored =
                edit.restore(&web, Restore { release: 2, digest: &digest, scale: 4, config: &config }).unwrap();
            assert_eq!(unrestored, Unrestored::default(), "{path}");
            let out = edit.to_string();
            let after = load(path, &out).apps["web"].clone();
            assert_eq!(after.config, config, "{path}:\n{out}");
            assert!(out.contains("# keep"), "{path}");

            // And back to none: the sections go.
            let mut edit = StageEdit::parse(Path::new(path), &out).unwrap();
            edit.restore(&after, Restore { release: 2, digest: &digest, scale: 4, config: &web.config }).unwrap();
            let back = edit.to_string();
            assert!(!back.contains("release_task"), "{path}:\n{back}");
            assert_eq!(load(path, &back).apps["web"].config, web.config, "{path}");
        }
    }

    /// An ECS app moved from several target groups to one: rolling back to the deployment
    /// with several writes them back as `target_groups` and drops `target_group`, and
    /// forward again the other way; the file then loads as exactly what each ran.
    #[test]
    fn several_target_groups_are_restored_in_toml_and_hcl() {
        const ARN: &str = "arn:aws:elasticloadbalancing:eu-central-1:123456789012:targetgroup";
        let toml = format!(
            "[runtime]\nkind = \"ecs\"\nregion = \"eu-central-1\"\ncluster = \"c\"\nsubnets = [\"subnet-1\"]\n\n\
             [apps.web]\nimage = \"web\"\nactive = 2\nport = 8080\ntarget_group = \"{ARN}/web/1\"\n\n\
             [apps.web.releases]\n2 = \"{D2}\"\n"
        );
        let hcl = format!(
            "runtime {{\n  kind    = \"ecs\"\n  region  = \"eu-central-1\"\n  cluster = \"c\"\n  subnets = [\"subnet-1\"]\n}}\n\n\
             app \"web\" {{\n  image        = \"web\"\n  active       = 2\n  port         = 8080\n  \
             target_group = \"{ARN}/web/1\"\n\n  releases = {{\n    2 = \"{D2}\"\n  }}\n}}\n"
        );
        let digest: Digest = D2.parse().unwrap();
        for (path, text) in [("stages/prod.toml", toml), ("stages/prod.hcl", hcl)] {
            let web = load(path, &text).apps["web"].clone();
            let mut several = web.config.clone();
            several.target_group = None;
            several.deploy.ecs.target_groups = vec![
                crate::config::TargetGroup { arn: format!("{ARN}/web/1"), container: None, port: None },
                crate::config::TargetGroup {
                    arn: format!("{ARN}/admin/2"),
                    container: Some("web".into()),
                    port: Some(9090),
                },
            ];
            let mut edit = StageEdit::parse(Path::new(path), &text).unwrap();
            let unrestored =
                edit.restore(&web, Restore { release: 2, digest: &digest, scale: 1, config: &several }).unwrap();
            assert_eq!(unrestored, Unrestored::default(), "{path}");
            let out = edit.to_string();
            assert!(!out.contains("target_group "), "{path}: the short form goes:\n{out}");
            let after = load(path, &out).apps["web"].clone();
            assert_eq!(after.config, several, "{path}:\n{out}");

            let mut edit = StageEdit::parse(Path::new(path), &out).unwrap();
            edit.restore(&after, Restore { release: 2, digest: &digest, scale: 1, config: &web.config }).unwrap();
            let back = edit.to_string();
            assert!(!back.contains("target_groups"), "{path}:\n{back}");
            assert_eq!(load(path, &back).apps["web"].config, web.config, "{path}:\n{back}");
        }
    }

    /// ECS settings restore does not write yet are reported, not silently kept.
    #[test]
    fn ecs_settings_left_as_they_are_are_reported() {
        let web = load("stages/staging.toml", TOML).apps["web"].clone();
        let mut config = web.config.clone();
        config.deploy.ecs.alarms = vec!["errors".into()];
        config.deploy.ecs_task.exec = true;
        let mut edit = StageEdit::parse(Path::new("stages/staging.toml"), TOML).unwrap();
        let digest: Digest = D2.parse().unwrap();
        let unrestored =
            edit.restore(&web, Restore { release: 2, digest: &digest, scale: 4, config: &config }).unwrap();
        assert_eq!(unrestored, Unrestored(vec!["ECS deployment settings", "ECS task settings"]));
    }

    #[test]
    fn a_release_bound_to_another_digest_is_refused() {
        let web = load("stages/staging.toml", TOML).apps["web"].clone();
        let mut edit = StageEdit::parse(Path::new("stages/staging.toml"), TOML).unwrap();
        let other: Digest = D1.parse().unwrap();
        let err = edit.restore(&web, Restore { release: 2, digest: &other, scale: 4, config: &web.config });
        assert!(matches!(err, Err(EditError::ReleaseChanged { id: 2, .. })), "{err:?}");
    }
}
