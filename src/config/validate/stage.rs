//! The stage-level sections: `[runtime]` and the scale of an app.

use super::*;

pub(super) fn check_runtime(src: &SourceFile, file: &StageFile, diags: &mut Diagnostics) -> Runtime {
    let Some(rt) = &file.runtime else { return Runtime::Local { driver: None } };
    match rt.kind {
        file::RuntimeKind::Local => {
            let ecs_only = [
                ("region", rt.region.is_some()),
                ("cluster", rt.cluster.is_some()),
                ("subnets", !rt.subnets.is_empty()),
                ("security_groups", !rt.security_groups.is_empty()),
                ("assign_public_ip", rt.assign_public_ip.is_some()),
                ("execution_role", rt.execution_role.is_some()),
                ("task_role", rt.task_role.is_some()),
                ("log_group", rt.log_group.is_some()),
            ];
            for (key, set) in ecs_only {
                if set {
                    diags.push(
                        src.diagnostic(
                            &path!["runtime", key],
                            Target::Key,
                            format!("`{key}` only applies to the ecs runtime"),
                        )
                        .with_hint("remove it, or set `kind = \"ecs\"`"),
                    );
                }
            }
            Runtime::Local { driver: rt.driver }
        }
        file::RuntimeKind::Ecs => {
            if rt.driver.is_some() {
                diags.push(
                    src.diagnostic(
                        &path!["runtime", "driver"],
                        Target::Key,
                        "`driver` only applies to the local runtime",
                    )
                    .with_hint("remove it (ECS runs every task as a container)"),
                );
            }
            for (key, missing, example) in [
                ("region", rt.region.is_none(), "region = \"eu-central-1\""),
                ("cluster", rt.cluster.is_none(), "cluster = \"my-cluster\""),
            ] {
                if missing {
                    diags.push(
                        src.diagnostic(&path!["runtime"], Target::Key, format!("the ecs runtime needs a `{key}`"))
                            .with_hint(format!("add `{example}` under [runtime]")),
                    );
                }
            }
            for (key, arn) in [("execution_role", &rt.execution_role), ("task_role", &rt.task_role)] {
                if let Some(arn) = arn {
                    if !(arn.starts_with("arn:aws") && arn.contains(":iam::") && arn.contains(":role/")) {
                        diags.push(
                            src.diagnostic(
                                &path!["runtime", key],
                                Target::Value,
                                format!("`{arn}` is not an IAM role ARN"),
                            )
                            .with_hint("use arn:aws:iam::ACCOUNT:role/NAME"),
                        );
                    }
                }
            }
            Runtime::Ecs(EcsRuntime {
                region: rt.region.clone().unwrap_or_default(),
                cluster: rt.cluster.clone().unwrap_or_default(),
                subnets: rt.subnets.clone(),
                security_groups: rt.security_groups.clone(),
                assign_public_ip: rt.assign_public_ip.unwrap_or(false),
                execution_role: rt.execution_role.clone(),
                task_role: rt.task_role.clone(),
                log_group: rt.log_group.clone(),
            })
        }
    }
}

/// Parse an optional string field with `FromStr`, reporting a located error. `at` makes
/// the field's path, only when there is something to report.
pub(super) fn parse_opt<T: std::str::FromStr>(
    src: &SourceFile,
    at: impl FnOnce() -> Vec<PathSeg>,
    value: &Option<String>,
    default: T,
    what: &str,
    diags: &mut Diagnostics,
) -> T {
    match value {
        None => default,
        Some(s) => s.parse().unwrap_or_else(|_| {
            diags.push(src.diagnostic(&at(), Target::Value, format!("`{s}` is not {what}")).with_hint(match what {
                "a duration" => "write a whole number with a unit: \"500ms\", \"5s\", \"10m\", \"1h\"",
                _ => "write a whole number with a percent sign, e.g. \"100%\"",
            }));
            default
        }),
    }
}

/// A positive integer field (at least `min`).
#[allow(clippy::too_many_arguments)]
pub(super) fn int_field(
    src: &SourceFile,
    at: impl FnOnce() -> Vec<PathSeg>,
    value: Option<i64>,
    default: u32,
    min: i64,
    max: i64,
    what: &str,
    diags: &mut Diagnostics,
) -> u32 {
    match value {
        None => default,
        Some(v) if v >= min && v <= max => v as u32,
        Some(v) => {
            diags.push(
                src.diagnostic(&at(), Target::Value, format!("{what} {v} is out of range"))
                    .with_hint(format!("use a whole number from {min} to {max}")),
            );
            default
        }
    }
}

/// `scale`: the count a deploy asks for (for an autoscaled range, its `min`: what a new
/// service starts with) and the range, if any.
pub(super) fn check_scale(
    src: &SourceFile,
    at: &[PathSeg],
    scale: Option<file::ScaleSection>,
    runtime: &Runtime,
    diags: &mut Diagnostics,
) -> (u32, Option<Autoscaling>) {
    let auto = match scale {
        None => return (1, None),
        Some(file::ScaleSection::Count(n)) => {
            return (int_field(src, || at.to_vec(), Some(n), 1, 0, 1000, "scale", diags), None)
        }
        Some(file::ScaleSection::Auto(auto)) => auto,
    };
    let key = |k: &str| {
        let mut p = at.to_vec();
        p.push(PathSeg::Key(k.to_string()));
        p
    };
    let min = int_field(src, || key("min"), Some(auto.min), 1, 0, 1000, "scale min", diags);
    let max = int_field(src, || key("max"), Some(auto.max), min.max(1), 1, 1000, "scale max", diags);
    let target = |k: &str, v: Option<i64>, diags: &mut Diagnostics| {
        v.map(|v| int_field(src, || key(k), Some(v), 70, 1, 100, &format!("scale {k}"), diags))
    };
    let cpu_target = target("cpu_target", auto.cpu_target, diags);
    let memory_target = target("memory_target", auto.memory_target, diags);
    if auto.min > auto.max && auto.max >= 1 {
        diags.push(
            src.diagnostic(&key("min"), Target::Value, format!("scale min {} is above max {}", auto.min, auto.max))
                .with_hint("autoscaling keeps the count between min and max: make min at most max"),
        );
    }
    if !matches!(runtime, Runtime::Ecs(_)) {
        diags.push(
            src.diagnostic(at, Target::Value, "an autoscaled `scale` needs the ECS runtime")
                .with_hint("the local runtime runs a fixed number of tasks: write `scale = N`"),
        );
    }
    let cpu_target = cpu_target.or(memory_target.is_none().then_some(70));
    (min, Some(Autoscaling { min, max, cpu_target, memory_target }))
}
