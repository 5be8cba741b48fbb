//! One `[apps.NAME]` section: image, releases, ports, env and secrets, health, deploy,
//! target groups and the ECS task keys, checked and turned into an `App`.

use super::*;
/// Check one app's section and build the app, moving the section's strings into it.
pub(super) fn check_app(
    src: &SourceFile,
    name: &str,
    a: AppSection,
    runtime: &Runtime,
    diags: &mut Diagnostics,
) -> Option<App> {
    let at = |rest: &[PathSeg]| {
        let mut p = path!["apps", name];
        p.extend_from_slice(rest);
        p
    };
    let before = diags.len();
    // Before the section's fields are moved out below.
    let ecs_task = crate::config::ecs_task::check(src, &at, name, &a, runtime, diags);

    if !is_dns_label(name, 32) {
        diags.push(
            src.diagnostic(
                &at(&[]),
                Target::Key,
                format!("app name `{name}` is not a DNS label of at most 32 characters"),
            )
            .with_hint("use lowercase letters, digits and `-`, not at the start or end"),
        );
    }
    if a.image.trim().is_empty() {
        diags.push(
            src.diagnostic(&at(&path!["image"]), Target::Value, "`image` is empty")
                .with_hint("name the image repository"),
        );
    } else if matches!(runtime, Runtime::Local { .. }) && !crate::registry::is_repository_name(&a.image) {
        // The local registry keeps a repository as a folder of that name: `../..` would
        // leave it. Found here rather than when the commit asks the registry.
        diags.push(
            src.diagnostic(
                &at(&path!["image"]),
                Target::Value,
                format!("`{}` is not a repository name of the local registry", a.image.escape_debug()),
            )
            .with_hint("use lowercase letters and digits with `.`, `_` or `-` between them, in `/`-separated parts, e.g. `web` or `team/web`"),
        );
    }

    let (releases, active) = check_releases(src, &at, name, a.releases, a.active, diags);

    let (scale, autoscaling) = check_scale(src, &at(&path!["scale"]), a.scale, runtime, diags);
    let cpu = int_field(src, || at(&path!["cpu"]), a.cpu, 256, 1, 16_384, "cpu", diags);
    let memory = int_field(src, || at(&path!["memory"]), a.memory, 512, 1, 122_880, "memory", diags);
    let port = a.port.map(|p| int_field(src, || at(&path!["port"]), Some(p), 1, 1, 65_535, "port", diags) as u16);
    let target_groups = check_target_groups(src, &at, &a.target_group, &a.target_groups, port, runtime, diags);

    let command_is_empty = a.command.as_ref().is_some_and(Vec::is_empty);
    let mut command = a.command.unwrap_or_default();
    if command_is_empty {
        diags.push(
            src.diagnostic(&at(&path!["command"]), Target::Value, "`command` is empty")
                .with_hint("remove it to use the image's own command"),
        );
        command.clear();
    }
    if port.is_none() && command.iter().any(|c| c.contains("${PORT}")) {
        diags.push(
            src.diagnostic(&at(&path!["command"]), Target::Value, "`command` uses ${PORT} but the app has no `port`")
                .with_hint("add `port = 8080` to the app"),
        );
    }

    for (key, value) in &a.env {
        if let Some(problem) = env_value_problem(key, value) {
            diags.push(src.diagnostic(&at(&path!["env", key]), Target::Value, problem).with_hint(
                "a process cannot be started with it; pass large or binary data as a file (a `file:` secret) instead",
            ));
        }
        if !is_env_name(key) {
            diags.push(
                src.diagnostic(
                    &at(&path!["env", key]),
                    Target::Key,
                    format!("`{key}` is not an environment variable name"),
                )
                .with_hint("use letters, digits and `_`, not starting with a digit"),
            );
        }
    }
    for (i, key) in a.sensitive_env.iter().enumerate() {
        if !a.env.contains_key(key) {
            diags.push(
                src.diagnostic(
                    &at(&path!["sensitive_env", i]),
                    Target::Value,
                    format!("`{key}` is marked sensitive but is not in [apps.{name}.env]"),
                )
                .with_hint("list only names of this app's env variables"),
            );
        }
    }

    let mut secrets = BTreeMap::new();
    for (key, reference) in a.secrets {
        let s_at = at(&path!["secrets", &key]);
        if !is_env_name(&key) {
            diags.push(
                src.diagnostic(&s_at, Target::Key, format!("`{key}` is not an environment variable name"))
                    .with_hint("use letters, digits and `_`, not starting with a digit"),
            );
        }
        if a.env.contains_key(&key) {
            diags.push(
                src.diagnostic(&s_at, Target::Key, format!("`{key}` is both in env and in secrets"))
                    .with_hint("keep it in one of the two"),
            );
        }
        match reference.parse::<SecretRef>() {
            Ok(r) => {
                if matches!(runtime, Runtime::Ecs(_)) && !r.is_aws() {
                    diags.push(
                        src.diagnostic(
                            &s_at,
                            Target::Value,
                            format!(
                                "secret `{key}`: `{}` references cannot be resolved on ECS",
                                reference.split(':').next().unwrap_or("")
                            ),
                        )
                        .with_hint("on ECS use an SSM parameter or Secrets Manager ARN"),
                    );
                }
                if let SecretRef::File(p) = &r {
                    if !is_inside_project(p) {
                        diags.push(
                            src.diagnostic(
                                &s_at,
                                Target::Value,
                                format!("secret `{key}`: `{p}` is outside the project"),
                            )
                            .with_hint("use a path relative to the project root, without `..`"),
                        );
                    }
                }
                secrets.insert(key, r);
            }
            // Never echo the value, not even in the quoted source line: it may be the secret
            // itself, and validate output ends up in CI logs.
            Err(_) => {
                let mut d = src
                    .diagnostic(&s_at, Target::Key, format!("secret `{key}` is a plain value, not a reference"))
                    .with_hint("secrets are references: arn:aws:ssm:…:parameter/…, arn:aws:secretsmanager:…:secret:…, env:NAME or file:PATH; remove the value from the file and from its history");
                if !reference.is_empty() {
                    d.source_line = d.source_line.replace(reference.as_str(), &"*".repeat(reference.chars().count()));
                }
                diags.push(d);
            }
        }
    }

    let health = check_health(src, &at, a.health.unwrap_or_default(), port, diags);

    let d = a.deploy.unwrap_or_default();
    let dd = DeploySettings::default();
    let d_at = |k: &str| at(&path!["deploy", k]);
    let deploy = DeploySettings {
        max_surge: parse_opt(src, || d_at("max_surge"), &d.max_surge, dd.max_surge, "a percentage", diags),
        min_healthy: parse_opt(src, || d_at("min_healthy"), &d.min_healthy, dd.min_healthy, "a percentage", diags),
        timeout: parse_opt(src, || d_at("timeout"), &d.timeout, dd.timeout, "a duration", diags),
        drain: parse_opt(src, || d_at("drain"), &d.drain, dd.drain, "a duration", diags),
        stop_timeout: parse_opt(src, || d_at("stop_timeout"), &d.stop_timeout, dd.stop_timeout, "a duration", diags),
        ecs: Box::new(crate::config::EcsDeploy {
            target_groups: target_groups.clone(),
            ..crate::config::ecs_deploy::check(
                src,
                &at,
                &d,
                runtime,
                a.target_group.as_deref().or(target_groups.first().map(|t| t.arn.as_str())),
                diags,
            )
        }),
        autoscaling,
        ecs_task: Box::new(ecs_task),
    };
    if deploy.min_healthy.0 > 100 {
        diags.push(
            src.diagnostic(
                &d_at("min_healthy"),
                Target::Value,
                format!("min_healthy {} is over 100%", deploy.min_healthy),
            )
            .with_hint("use 0% to 100%"),
        );
    }
    if deploy.max_surge.0 == 0 && deploy.min_healthy.0 == 100 && d.max_surge.is_some() {
        let min_healthy = if d.min_healthy.is_none() { "100% (the default)" } else { "100%" };
        diags.push(
            src.diagnostic(
                &d_at("max_surge"),
                Target::Value,
                format!("max_surge 0% with min_healthy {min_healthy} leaves no room to replace a task"),
            )
            .with_hint("allow a surge (e.g. \"100%\") or set min_healthy below 100%"),
        );
    }
    if deploy.timeout.as_millis() == 0 {
        diags.push(
            src.diagnostic(&d_at("timeout"), Target::Value, "deploy timeout is 0")
                .with_hint("give new tasks time to turn healthy, e.g. \"5m\""),
        );
    }

    let mut task_timeouts = Vec::with_capacity(a.release_tasks.len());
    let mut task_names = BTreeSet::new();
    for (i, t) in a.release_tasks.iter().enumerate() {
        let t_at = |k: &str| at(&path!["release_tasks", i, k]);
        if !task_names.insert(t.name.as_str()) {
            diags.push(
                src.diagnostic(&t_at("name"), Target::Value, format!("release task `{}` is declared twice", t.name))
                    .with_hint("give each release task its own name"),
            );
        }
        if !is_dns_label(&t.name, 32) {
            diags.push(
                src.diagnostic(
                    &t_at("name"),
                    Target::Value,
                    format!("release task name `{}` is not a DNS label", t.name),
                )
                .with_hint("use lowercase letters, digits and `-`"),
            );
        }
        if t.command.is_empty() {
            diags.push(
                src.diagnostic(&t_at("command"), Target::Value, "release task `command` is empty")
                    .with_hint("e.g. [\"bin/rails\", \"db:migrate\"]"),
            );
        }
        task_timeouts.push(parse_opt(
            src,
            || t_at("timeout"),
            &t.timeout,
            Duration::from_millis(600_000),
            "a duration",
            diags,
        ));
    }

    if let Some(tag) = &a.track {
        if tag.is_empty() || tag.len() > 128 || !tag.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
            diags.push(
                src.diagnostic(&at(&path!["track"]), Target::Value, format!("`{tag}` is not an image tag"))
                    .with_hint("tags use letters, digits, `.`, `_` and `-`"),
            );
        }
    }

    let build = a.build.unwrap_or_default();
    if let Some(context) = &build.context {
        let path = std::path::Path::new(context);
        if path.is_absolute() || path.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            diags.push(
                src.diagnostic(
                    &at(&path!["build", "context"]),
                    Target::Value,
                    format!("build context `{context}` is outside the source"),
                )
                .with_hint("use a folder relative to the source's root, e.g. `services/web`"),
            );
        }
    }

    if diags.len() > before {
        return None;
    }
    let release_tasks = a
        .release_tasks
        .into_iter()
        .zip(task_timeouts)
        .map(|(t, timeout)| ReleaseTask {
            name: t.name,
            command: t.command,
            timeout,
            run_on: t.run_on.unwrap_or_default(),
        })
        .collect();
    Some(App {
        name: name.to_string(),
        image: a.image,
        // Later entries win, as `insert` would (only a file with a duplicate id has any).
        releases: releases.into_iter().collect(),
        active,
        scale,
        track: a.track,
        depends_on: a.depends_on,
        config: AppConfig {
            cpu,
            memory,
            command,
            port,
            env: a.env,
            sensitive_env: a.sensitive_env.into_iter().collect(),
            secrets,
            health,
            deploy,
            release_tasks,
            target_group: a.target_group,
        },
        build: AppBuild {
            context: build.context,
            dockerfile: build.dockerfile,
            target: build.target,
            args: build.args,
        },
    })
}

/// `[apps.NAME.releases]` and `active`: positive ids, each declared once, valid digests; the
/// active release among them.
fn check_releases(
    src: &SourceFile,
    at: &dyn Fn(&[PathSeg]) -> Vec<PathSeg>,
    name: &str,
    declared: BTreeMap<String, String>,
    active: Option<i64>,
    diags: &mut Diagnostics,
) -> (Vec<(u64, Digest)>, Option<u64>) {
    // Releases: positive, unique ids; valid digests.
    let mut releases: Vec<(u64, Digest)> = Vec::with_capacity(declared.len());
    // Each declared id and where its key is in `in_file_order`.
    let mut written: BTreeMap<u64, usize> = BTreeMap::new();
    // In file order, so a duplicate is reported where it is written the second time.
    // Only ids written twice (`1` and `01`) make the order matter, and finding where each
    // key is written costs a walk of the file's tree, so sort only then.
    let mut in_file_order: Vec<(String, String)> = declared.into_iter().collect();
    let mut ids: Vec<i64> =
        in_file_order.iter().filter_map(|(key, _)| key.parse::<i64>().ok()).filter(|&id| id > 0).collect();
    ids.sort_unstable();
    let written_twice = ids.windows(2).any(|w| w[0] == w[1]);
    if written_twice {
        in_file_order.sort_by_cached_key(|(key, _)| src.span_of(&at(&path!["releases", key]), Target::Key).start);
    } else {
        // Each id once: the map is built in one go below, with no duplicate to report.
        written = in_file_order
            .iter()
            .enumerate()
            .filter_map(|(i, (key, _))| Some((key.parse::<i64>().ok().filter(|&id| id > 0)? as u64, i)))
            .collect();
    }
    for i in 0..in_file_order.len() {
        // The digest moves into the model; the key stays for the messages.
        let digest = std::mem::take(&mut in_file_order[i].1);
        let key = &in_file_order[i].0;
        let rel_at = || at(&path!["releases", key]);
        match key.parse::<i64>() {
            Ok(id) if id > 0 => {
                if let Some(other) = written_twice.then(|| written.insert(id as u64, i)).flatten() {
                    let other = &in_file_order[other].0;
                    diags.push(
                        src.diagnostic(
                            &rel_at(),
                            Target::Key,
                            format!(
                                "release id {id} is declared twice: as `{other}` on line {} and as `{key}`",
                                line_of(src, &at(&path!["releases", other]), Target::Key)
                            ),
                        )
                        .with_hint("every release needs its own id; ids are never reused"),
                    );
                }
                match Digest::try_from(digest) {
                    Ok(d) => releases.push((id as u64, d)),
                    Err(DigestError(digest)) => diags.push(
                        src.diagnostic(
                            &rel_at(),
                            Target::Value,
                            format!("release {id}: `{digest}` is not an image digest"),
                        )
                        .with_hint(
                            "a digest is `sha256:` followed by 64 lowercase hex digits; `ferry image push` prints one",
                        ),
                    ),
                }
            }
            _ => diags.push(
                src.diagnostic(&rel_at(), Target::Key, format!("release id `{key}` is not a positive integer"))
                    .with_hint("release ids are 1, 2, 3…, one more than the highest ever used"),
            ),
        }
    }
    let active = match active {
        None => None,
        Some(id) if id > 0 && written.contains_key(&(id as u64)) => Some(id as u64),
        Some(id) => {
            let declared: Vec<String> = written.keys().map(u64::to_string).collect();
            diags.push(
                src.diagnostic(
                    &at(&path!["active"]),
                    Target::Value,
                    format!("active release {id} is not declared in [apps.{name}.releases]"),
                )
                .with_hint(if declared.is_empty() {
                    "declare it first: `ferry release create APP DIGEST`".to_string()
                } else {
                    format!("declared releases: {}", declared.join(", "))
                }),
            );
            None
        }
    };
    (releases, active)
}

/// `[apps.NAME.health]`, with its defaults: a timeout within the interval, a path that needs
/// a port, a command with something to run.
fn check_health(
    src: &SourceFile,
    at: &dyn Fn(&[PathSeg]) -> Vec<PathSeg>,
    h: file::HealthSection,
    port: Option<u16>,
    diags: &mut Diagnostics,
) -> Health {
    let hd = Health::default();
    let h_at = |k: &str| at(&path!["health", k]);
    let health = Health {
        command: h.command,
        path: h.path,
        interval: parse_opt(src, || h_at("interval"), &h.interval, hd.interval, "a duration", diags),
        // Filled in below: its default follows the interval.
        timeout: hd.timeout,
        healthy_threshold: int_field(
            src,
            || h_at("healthy_threshold"),
            h.healthy_threshold,
            hd.healthy_threshold,
            1,
            100,
            "healthy_threshold",
            diags,
        ),
        unhealthy_threshold: int_field(
            src,
            || h_at("unhealthy_threshold"),
            h.unhealthy_threshold,
            hd.unhealthy_threshold,
            1,
            100,
            "unhealthy_threshold",
            diags,
        ),
        grace_period: parse_opt(src, || h_at("grace_period"), &h.grace_period, hd.grace_period, "a duration", diags),
    };
    // A default must never make a file invalid: a check interval set below the default
    // timeout shortens the timeout with it.
    let health = Health {
        timeout: parse_opt(src, || h_at("timeout"), &h.timeout, hd.timeout.min(health.interval), "a duration", diags),
        ..health
    };
    if let Some(p) = &health.path {
        if !p.starts_with('/') {
            diags.push(
                src.diagnostic(&h_at("path"), Target::Value, format!("health path `{p}` does not start with `/`"))
                    .with_hint("write e.g. \"/health\""),
            );
        }
        if port.is_none() {
            diags.push(
                src.diagnostic(&h_at("path"), Target::Key, "a network health check needs the app's `port`")
                    .with_hint("add `port = 8080` to the app"),
            );
        }
    }
    if health.command.as_ref().is_some_and(|c| c.is_empty() || (c.len() == 1 && (c[0] == "CMD" || c[0] == "CMD-SHELL")))
    {
        diags.push(
            src.diagnostic(&h_at("command"), Target::Value, "health `command` has nothing to run")
                .with_hint("e.g. [\"CMD-SHELL\", \"curl -f http://localhost:8080/health\"]"),
        );
    }
    // Only a timeout the file sets can be longer than the interval (the default adapts).
    if health.timeout > health.interval {
        let (interval, hint) = if h.interval.is_none() {
            (
                format!("{} (the default interval)", health.interval),
                format!("set `interval` to {} or more, or shorten `timeout`", health.timeout),
            )
        } else {
            (health.interval.to_string(), "a check must finish before the next one starts".to_string())
        };
        diags.push(
            src.diagnostic(
                &h_at("timeout"),
                Target::Value,
                format!("health timeout {} is longer than its interval {interval}", health.timeout),
            )
            .with_hint(hint),
        );
    }
    health
}

/// The 1-based line of `path` in the file, for messages that mention a second place.
pub(super) fn line_of(src: &SourceFile, path: &[PathSeg], target: Target) -> usize {
    let start = src.span_of(path, target).start.min(src.text.len());
    src.text[..start].matches('\n').count() + 1
}

/// Linux's limit on one `KEY=VALUE` string of a process's environment, with its NUL
/// (`MAX_ARG_STRLEN`, 32 pages): a longer one fails the task's start with E2BIG.
pub(super) const MAX_ENV_STRING: usize = 128 * 1024;

/// Why an env var cannot be passed to a process, if it cannot: a NUL byte ends the string
/// early, and a string over [`MAX_ENV_STRING`] is refused by `execve`.
pub(super) fn env_value_problem(key: &str, value: &str) -> Option<String> {
    if value.contains('\0') {
        return Some(format!("the value of `{key}` holds a NUL byte"));
    }
    let len = key.len() + 1 + value.len() + 1;
    (len > MAX_ENV_STRING)
        .then(|| format!("`{key}=…` is {len} bytes, over the 128 KiB a process's environment string may hold"))
}

pub(super) fn is_env_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') && !s.as_bytes()[0].is_ascii_digit()
}

/// `target_group = "ARN"` or `target_groups = [{ arn, container, port }, …]` (not both):
/// ARNs, ECS only, a port to register. The long form, with what it leaves out left `None`
/// (the runtime implies the app's container and port); the short form stays the app's.
pub(super) fn check_target_groups(
    src: &SourceFile,
    at: &dyn Fn(&[PathSeg]) -> Vec<PathSeg>,
    target_group: &Option<String>,
    target_groups: &Option<Vec<file::TargetGroupSection>>,
    port: Option<u16>,
    runtime: &Runtime,
    diags: &mut Diagnostics,
) -> Vec<crate::config::TargetGroup> {
    let not_an_arn = |tg: &str| !tg.starts_with("arn:aws") || !tg.contains(":targetgroup/");
    let arn_hint = "use arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID";
    let ecs = matches!(runtime, Runtime::Ecs(_));
    for (key, set) in [("target_group", target_group.is_some()), ("target_groups", target_groups.is_some())] {
        if set && !ecs {
            diags.push(
                src.diagnostic(&at(&path![key]), Target::Key, format!("`{key}` only applies to the ecs runtime"))
                    .with_hint("remove it; the local runtime proxies `port` itself"),
            );
        }
    }
    if !ecs {
        return Vec::new();
    }
    if target_group.is_some() && target_groups.is_some() {
        diags.push(
            src.diagnostic(
                &at(&path!["target_groups"]),
                Target::Key,
                "`target_group` and `target_groups` are both set",
            )
            .with_hint("keep one: `target_group = \"ARN\"` is the short form of `target_groups = [{ arn = \"ARN\" }]`"),
        );
    }
    if let Some(tg) = &target_group {
        if not_an_arn(tg) {
            diags.push(
                src.diagnostic(&at(&path!["target_group"]), Target::Value, format!("`{tg}` is not a target group ARN"))
                    .with_hint(arn_hint),
            );
        }
    }
    let mut out = Vec::new();
    for (i, tg) in target_groups.iter().flatten().enumerate() {
        let before = diags.len();
        if not_an_arn(&tg.arn) {
            diags.push(
                src.diagnostic(
                    &at(&path!["target_groups", i, "arn"]),
                    Target::Value,
                    format!("`{}` is not a target group ARN", tg.arn),
                )
                .with_hint(arn_hint),
            );
        }
        let own_port = tg.port.map(|p| {
            int_field(src, || at(&path!["target_groups", i, "port"]), Some(p), 1, 1, 65_535, "port", diags) as u16
        });
        if own_port.or(port).is_none() {
            diags.push(
                src.diagnostic(
                    &at(&path!["target_groups", i]),
                    Target::Value,
                    format!("target group `{}` has no port to register", tg.arn),
                )
                .with_hint("give the app a `port`, or this entry `port = N`"),
            );
        }
        if tg.container.as_ref().is_some_and(|c| c.is_empty() || c.len() > 255) {
            diags.push(
                src.diagnostic(
                    &at(&path!["target_groups", i, "container"]),
                    Target::Value,
                    "a container name is 1 to 255 characters",
                )
                .with_hint("name a container of the task definition, or leave it out for the app's"),
            );
        }
        if diags.len() == before {
            out.push(crate::config::TargetGroup {
                arn: tg.arn.clone(),
                container: tg.container.clone(),
                port: own_port,
            });
        }
    }
    out
}
