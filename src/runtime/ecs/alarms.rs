//! The CloudWatch alarms a deployment rolls back on must exist: ECS takes any name and never
//! fires on one that does not, so a typo would silently disarm the rollback. Checked with
//! DescribeAlarms (100 names a call) at `plan --refresh` and `commit`, never at a plain
//! `plan`, which needs no AWS access.

use crate::config::{Runtime, Stage};
use crate::runtime::{RuntimeError, RuntimeResult};

/// DescribeAlarms takes at most this many names per call.
const ALARMS_PER_CALL: usize = 100;

/// An alarm of the stage file that CloudWatch does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingAlarm {
    pub app: String,
    /// Its index in the app's `alarms`.
    pub index: usize,
    pub name: String,
}

/// The alarms of `stage`'s apps that do not exist in its region (none for a local stage).
pub async fn missing(stage: &Stage) -> RuntimeResult<Vec<MissingAlarm>> {
    let Runtime::Ecs(ecs) = &stage.runtime else { return Ok(Vec::new()) };
    let wanted: Vec<(&str, usize, &str)> = stage
        .apps
        .iter()
        .flat_map(|(name, app)| {
            app.config.deploy.ecs.alarms.iter().enumerate().map(move |(i, a)| (name.as_str(), i, a.as_str()))
        })
        .collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let sdk = super::load_sdk_config(&ecs.region).await;
    let client = crate::aws::cloudwatch_client(&sdk);
    let mut names: Vec<&str> = wanted.iter().map(|(_, _, n)| *n).collect();
    names.sort_unstable();
    names.dedup();
    let mut found = std::collections::HashSet::new();
    for chunk in names.chunks(ALARMS_PER_CALL) {
        let out = client
            .describe_alarms()
            .set_alarm_names(Some(chunk.iter().map(|n| n.to_string()).collect()))
            .max_records(ALARMS_PER_CALL as i32)
            .send()
            .await
            .map_err(|e| {
                RuntimeError::Unavailable(format!("cannot describe CloudWatch alarms: {}", crate::aws::error_text(&e)))
            })?;
        found.extend(out.metric_alarms().iter().filter_map(|a| a.alarm_name()).map(str::to_string));
        found.extend(out.composite_alarms().iter().filter_map(|a| a.alarm_name()).map(str::to_string));
    }
    Ok(wanted
        .into_iter()
        .filter(|(_, _, n)| !found.contains(*n))
        .map(|(app, index, name)| MissingAlarm { app: app.to_string(), index, name: name.to_string() })
        .collect())
}
