//! The ECS deployment keys of `[apps.NAME.deploy]` (strategy, bake times, circuit breaker,
//! alarms, the blue/green load balancer pieces, lifecycle hooks): checked against what the
//! file alone shows, every problem located, and turned into [`EcsDeploy`]. What needs AWS
//! (alarms exist) is checked at `plan --refresh` and `commit`.

// `path![…]` builds a `Vec` (see validate.rs).
#![allow(clippy::useless_vec)]

use crate::config::diagnostic::Diagnostics;
use crate::config::file::DeploySection;
use crate::config::model::{EcsDeploy, HookTarget, LifecycleHook, Percent, Runtime, Strategy};
use crate::config::source::{PathSeg, SourceFile, Target};
use crate::path;

/// The longest bake time ECS takes (`bakeTimeInMinutes` is 0–1440).
pub const MAX_BAKE_MINUTES: u32 = 1440;

/// Lifecycle stages a hook may run at, as written in the file (ECS's names in lower case).
pub const HOOK_STAGES: [&str; 8] = [
    "reconcile_service",
    "pre_scale_up",
    "post_scale_up",
    "test_traffic_shift",
    "post_test_traffic_shift",
    "pre_production_traffic_shift",
    "production_traffic_shift",
    "post_production_traffic_shift",
];

/// ECS's `healthCheckGracePeriodSeconds` (0 to 2,147,483,647 s) from
/// `health_check_grace_period`; it means something only with a target group.
fn grace_period(
    src: &SourceFile,
    key: &[PathSeg],
    d: &DeploySection,
    target_group: Option<&str>,
    diags: &mut Diagnostics,
) -> Option<u32> {
    let text = d.health_check_grace_period.as_ref()?;
    let Ok(duration) = text.parse::<crate::config::Duration>() else {
        diags.push(
            src.diagnostic(key, Target::Value, format!("`{text}` is not a duration"))
                .with_hint("write a whole number with a unit: \"30s\", \"2m\""),
        );
        return None;
    };
    if target_group.is_none() {
        diags.push(
            src.diagnostic(key, Target::Key, "`health_check_grace_period` needs a target group")
                .with_hint("ECS applies it to load balancer health checks: add `target_group`, or remove it"),
        );
        return None;
    }
    let secs = duration.as_millis() / 1000;
    if secs > u64::from(i32::MAX as u32) {
        diags.push(
            src.diagnostic(key, Target::Value, format!("health_check_grace_period {text} is longer than ECS allows"))
                .with_hint("ECS takes up to 2147483647 seconds"),
        );
        return None;
    }
    Some(secs as u32)
}

/// The ECS deployment settings of one app; `at` locates a path under the app.
pub(crate) fn check(
    src: &SourceFile,
    at: &dyn Fn(&[PathSeg]) -> Vec<PathSeg>,
    d: &DeploySection,
    runtime: &Runtime,
    target_group: Option<&str>,
    diags: &mut Diagnostics,
) -> EcsDeploy {
    let d_at = |k: &str| at(&path!["deploy", k]);
    let dd = EcsDeploy::default();
    if !matches!(runtime, Runtime::Ecs(_)) {
        let set = [
            ("strategy", d.strategy.is_some()),
            ("bake_time", d.bake_time.is_some()),
            ("step_percent", d.step_percent.is_some()),
            ("step_bake_time", d.step_bake_time.is_some()),
            ("canary_percent", d.canary_percent.is_some()),
            ("canary_bake_time", d.canary_bake_time.is_some()),
            ("circuit_breaker", d.circuit_breaker.is_some()),
            ("alarms", d.alarms.is_some()),
            ("alternate_target_group", d.alternate_target_group.is_some()),
            ("production_listener_rule", d.production_listener_rule.is_some()),
            ("test_listener_rule", d.test_listener_rule.is_some()),
            ("traffic_role", d.traffic_role.is_some()),
            ("hooks", !d.hooks.is_empty()),
            ("health_check_grace_period", d.health_check_grace_period.is_some()),
        ];
        for (key, _) in set.iter().filter(|(_, on)| *on) {
            diags.push(
                src.diagnostic(&d_at(key), Target::Key, format!("`{key}` only applies to the ecs runtime"))
                    .with_hint("remove it; the local runtime rolls out with max_surge and min_healthy"),
            );
        }
        return dd;
    }
    let strategy = d.strategy.unwrap_or_default();
    let minutes = |key: &str, value: &Option<String>, default: u32, diags: &mut Diagnostics| -> u32 {
        let Some(text) = value else { return default };
        match parse_minutes(text) {
            Some(m) if m <= MAX_BAKE_MINUTES => m,
            Some(_) => {
                diags.push(
                    src.diagnostic(&d_at(key), Target::Value, format!("{key} {text} is longer than ECS allows"))
                        .with_hint("ECS bakes for at most 24h (1440 minutes)"),
                );
                default
            }
            None => {
                diags.push(
                    src.diagnostic(&d_at(key), Target::Value, format!("`{text}` is not a whole number of minutes"))
                        .with_hint("ECS counts bake times in minutes: write e.g. \"5m\" or \"1h\""),
                );
                default
            }
        }
    };
    let percent = |key: &str, value: &Option<String>, default: Percent, diags: &mut Diagnostics| -> Percent {
        let Some(text) = value else { return default };
        match text.parse::<Percent>() {
            Ok(p) if (1..=100).contains(&p.0) => p,
            Ok(p) => {
                diags.push(
                    src.diagnostic(&d_at(key), Target::Value, format!("{key} {p} is not between 1% and 100%"))
                        .with_hint("use 1% to 100%"),
                );
                default
            }
            Err(_) => {
                diags.push(
                    src.diagnostic(&d_at(key), Target::Value, format!("`{text}` is not a percentage"))
                        .with_hint("write a whole number with a percent sign, e.g. \"10%\""),
                );
                default
            }
        }
    };
    let mut out = EcsDeploy {
        strategy,
        bake_minutes: minutes("bake_time", &d.bake_time, dd.bake_minutes, diags),
        step_percent: percent("step_percent", &d.step_percent, dd.step_percent, diags),
        step_bake_minutes: minutes("step_bake_time", &d.step_bake_time, dd.step_bake_minutes, diags),
        canary_percent: percent("canary_percent", &d.canary_percent, dd.canary_percent, diags),
        canary_bake_minutes: minutes("canary_bake_time", &d.canary_bake_time, dd.canary_bake_minutes, diags),
        circuit_breaker: d.circuit_breaker.as_ref().and_then(|c| c.enable).unwrap_or(dd.circuit_breaker),
        circuit_breaker_rollback: d
            .circuit_breaker
            .as_ref()
            .and_then(|c| c.rollback)
            .unwrap_or(dd.circuit_breaker_rollback),
        alarms: d.alarms.clone().unwrap_or_default(),
        alternate_target_group: d.alternate_target_group.clone(),
        production_listener_rule: d.production_listener_rule.clone(),
        test_listener_rule: d.test_listener_rule.clone(),
        traffic_role: d.traffic_role.clone(),
        hooks: Vec::new(),
        // The app's `target_groups` (validate's, beside the app's other keys).
        target_groups: Vec::new(),
        health_check_grace_period_s: grace_period(src, &d_at("health_check_grace_period"), d, target_group, diags),
    };
    for (key, set, only) in [
        ("step_percent", d.step_percent.is_some(), Strategy::Linear),
        ("step_bake_time", d.step_bake_time.is_some(), Strategy::Linear),
        ("canary_percent", d.canary_percent.is_some(), Strategy::Canary),
        ("canary_bake_time", d.canary_bake_time.is_some(), Strategy::Canary),
    ] {
        if set && strategy != only {
            diags.push(
                src.diagnostic(&d_at(key), Target::Key, format!("`{key}` applies to strategy `{}` only", name(only)))
                    .with_hint(format!("set strategy = \"{}\" or remove it", name(only))),
            );
        }
    }
    let traffic_shifting = strategy != Strategy::Rolling;
    if traffic_shifting {
        let mut missing = Vec::new();
        if target_group.is_none() {
            missing.push("`target_group` (in the app)");
        }
        if d.alternate_target_group.is_none() {
            missing.push("`alternate_target_group`");
        }
        if d.production_listener_rule.is_none() {
            missing.push("`production_listener_rule`");
        }
        if d.traffic_role.is_none() {
            missing.push("`traffic_role`");
        }
        if !missing.is_empty() {
            diags.push(
                src.diagnostic(
                    &d_at("strategy"),
                    Target::Value,
                    format!("strategy `{}` needs {}", name(strategy), missing.join(", ")),
                )
                .with_hint(
                    "ECS moves traffic between two target groups through a listener rule: give the second \
                     target group, the production listener rule and the role ECS changes it with",
                ),
            );
        }
    } else {
        for (key, set) in [
            ("alternate_target_group", d.alternate_target_group.is_some()),
            ("production_listener_rule", d.production_listener_rule.is_some()),
            ("test_listener_rule", d.test_listener_rule.is_some()),
            ("traffic_role", d.traffic_role.is_some()),
        ] {
            if set {
                diags.push(
                    src.diagnostic(
                        &d_at(key),
                        Target::Key,
                        format!("`{key}` applies to blue_green, linear and canary"),
                    )
                    .with_hint("set strategy, or remove it: a rolling deployment uses one target group"),
                );
            }
        }
    }
    if let Some(alt) = &d.alternate_target_group {
        if !alt.starts_with("arn:aws") || !alt.contains(":targetgroup/") {
            diags.push(
                src.diagnostic(
                    &d_at("alternate_target_group"),
                    Target::Value,
                    format!("`{alt}` is not a target group ARN"),
                )
                .with_hint("use arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID"),
            );
        } else if Some(alt.as_str()) == target_group {
            diags.push(
                src.diagnostic(
                    &d_at("alternate_target_group"),
                    Target::Value,
                    "the alternate target group is the app's own `target_group`",
                )
                .with_hint("blue/green needs a second target group for the new tasks"),
            );
        }
    }
    for key in ["production_listener_rule", "test_listener_rule"] {
        let value = if key == "production_listener_rule" { &d.production_listener_rule } else { &d.test_listener_rule };
        if let Some(rule) = value {
            if !rule.starts_with("arn:aws") || !rule.contains(":listener-rule/") {
                diags.push(
                    src.diagnostic(&d_at(key), Target::Value, format!("`{rule}` is not a listener rule ARN"))
                        .with_hint("use arn:aws:elasticloadbalancing:REGION:ACCOUNT:listener-rule/app/…"),
                );
            }
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, alarm) in out.alarms.iter().enumerate() {
        if alarm.is_empty() || alarm.len() > 255 {
            diags.push(
                src.diagnostic(
                    &at(&path!["deploy", "alarms", i]),
                    Target::Value,
                    "an alarm name is 1 to 255 characters",
                )
                .with_hint("give the CloudWatch alarm's name"),
            );
        } else if !seen.insert(alarm) {
            diags.push(
                src.diagnostic(
                    &at(&path!["deploy", "alarms", i]),
                    Target::Value,
                    format!("alarm `{alarm}` is listed twice"),
                )
                .with_hint("remove one"),
            );
        }
    }
    for (i, h) in d.hooks.iter().enumerate() {
        let h_at = |k: &str| at(&path!["deploy", "hooks", i, k]);
        let pause = h.pause == Some(true);
        let target = match (&h.lambda, pause) {
            (Some(_), true) => {
                diags.push(
                    src.diagnostic(&h_at("pause"), Target::Key, "a hook is a Lambda function or a pause, not both")
                        .with_hint("split it into two hooks"),
                );
                None
            }
            (None, true) => Some(HookTarget::Pause),
            (Some(arn), false) => {
                if !arn.starts_with("arn:aws") || !arn.contains(":lambda:") {
                    diags.push(
                        src.diagnostic(&h_at("lambda"), Target::Value, format!("`{arn}` is not a Lambda function ARN"))
                            .with_hint("use arn:aws:lambda:REGION:ACCOUNT:function:NAME"),
                    );
                }
                match &h.role {
                    Some(role) => Some(HookTarget::Lambda { arn: arn.clone(), role: role.clone() }),
                    None => {
                        diags.push(
                            src.diagnostic(&h_at("lambda"), Target::Key, "a Lambda hook needs `role`")
                                .with_hint("give the IAM role ECS invokes the function with"),
                        );
                        None
                    }
                }
            }
            (None, false) => {
                diags.push(
                    src.diagnostic(
                        &at(&path!["deploy", "hooks", i]),
                        Target::Value,
                        "a hook needs `lambda` or `pause = true`",
                    )
                    .with_hint("e.g. { stages = [\"post_test_traffic_shift\"], pause = true }"),
                );
                None
            }
        };
        if h.stages.is_empty() {
            diags.push(
                src.diagnostic(&h_at("stages"), Target::Value, "a hook needs at least one stage")
                    .with_hint(format!("stages are {}", HOOK_STAGES.join(", "))),
            );
        }
        let mut stages = Vec::with_capacity(h.stages.len());
        for (j, stage) in h.stages.iter().enumerate() {
            let s_at = || at(&path!["deploy", "hooks", i, "stages", j]);
            if !HOOK_STAGES.contains(&stage.as_str()) {
                diags.push(
                    src.diagnostic(&s_at(), Target::Value, format!("`{stage}` is not a deployment lifecycle stage"))
                        .with_hint(format!("stages are {}", HOOK_STAGES.join(", "))),
                );
            } else if pause && matches!(stage.as_str(), "test_traffic_shift" | "production_traffic_shift") {
                diags.push(
                    src.diagnostic(&s_at(), Target::Value, format!("ECS cannot pause at `{stage}`"))
                        .with_hint("pause after it instead: post_test_traffic_shift or post_production_traffic_shift"),
                );
            } else if !traffic_shifting && stage.contains("traffic_shift") {
                diags.push(
                    src.diagnostic(&s_at(), Target::Value, format!("a rolling deployment has no `{stage}` stage"))
                        .with_hint("set strategy = \"blue_green\", \"linear\" or \"canary\", or hook at post_scale_up"),
                );
            }
            stages.push(stage.to_ascii_uppercase());
        }
        if let Some(target) = target {
            out.hooks.push(LifecycleHook { stages, target });
        }
    }
    out
}

/// The file's name of a strategy.
pub fn name(s: Strategy) -> &'static str {
    match s {
        Strategy::Rolling => "rolling",
        Strategy::BlueGreen => "blue_green",
        Strategy::Linear => "linear",
        Strategy::Canary => "canary",
    }
}

/// `"5m"` → 5, `"2h"` → 120; anything else (seconds, no unit) is not whole minutes.
fn parse_minutes(text: &str) -> Option<u32> {
    let (num, per) = match text.as_bytes().last()? {
        b'm' => (&text[..text.len() - 1], 1),
        b'h' => (&text[..text.len() - 1], 60),
        _ => return None,
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) || num.ends_with("m") {
        return None;
    }
    num.parse::<u32>().ok()?.checked_mul(per)
}

#[cfg(test)]
mod tests {
    use super::parse_minutes;

    #[test]
    fn minutes() {
        assert_eq!(parse_minutes("5m"), Some(5));
        assert_eq!(parse_minutes("2h"), Some(120));
        assert_eq!(parse_minutes("0m"), Some(0));
        assert_eq!(parse_minutes("90s"), None);
        assert_eq!(parse_minutes("5ms"), None);
        assert_eq!(parse_minutes("m"), None);
        assert_eq!(parse_minutes("5"), None);
    }
}
