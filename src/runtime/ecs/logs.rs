//! Task output from CloudWatch Logs: the awslogs streams `<prefix>/<container>/<task-id>`
//! of the app's log group (`[apps.NAME.logging]`; by default `ferry/…` in the stage's),
//! read with FilterLogEvents (one call covers every stream of an app).
//! With `follow`, it polls every 2 s from the newest event seen until the receiver is
//! dropped (also while the group or stream does not exist yet: a task that just started
//! has logged nothing); events already sent are skipped by id.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::runtime::{LogLine, LogQuery, LogStream, TaskId};

/// Start streaming the lines of container `app` from the streams under `prefix` in
/// `group` into the returned receiver. Without `follow`,
/// an error (a missing group: nothing was logged yet) ends the stream; with it, the next
/// poll tries again.
pub fn stream(
    client: aws_sdk_cloudwatchlogs::Client,
    group: String,
    prefix: String,
    app: String,
    query: LogQuery,
) -> LogStream {
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    tokio::spawn(async move {
        // One task: its exact stream; else every stream under the app's prefix. Events are
        // also filtered here, so a server that ignores the prefix cannot mix apps up.
        let (one, prefix) = match &query.task {
            Some(task) => (Some(format!("{prefix}/{app}/{task}")), None),
            None => (None, Some(format!("{prefix}/{app}/"))),
        };
        let mut since = query.since.map(|t| t.timestamp_millis());
        let mut seen: HashSet<String> = HashSet::new();
        loop {
            let mut pages = client
                .filter_log_events()
                .log_group_name(&group)
                .set_log_stream_names(one.clone().map(|s| vec![s]))
                .set_log_stream_name_prefix(prefix.clone())
                .set_start_time(since)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                // Nothing logged yet (no group or stream): a follow waits for the first line.
                let Ok(page) = page else { break };
                for e in page.events() {
                    let stream = e.log_stream_name().unwrap_or_default();
                    let wanted = match (&one, &prefix) {
                        (Some(name), _) => stream == name,
                        (None, Some(p)) => stream.starts_with(p.as_str()),
                        (None, None) => true,
                    };
                    if !wanted {
                        continue;
                    }
                    if let Some(id) = e.event_id() {
                        if !seen.insert(id.to_string()) {
                            continue;
                        }
                    }
                    let millis = e.timestamp().unwrap_or_default();
                    since = Some(since.map_or(millis, |s| s.max(millis)));
                    let task = stream.rsplit('/').next().unwrap_or_default();
                    let line = LogLine {
                        task: TaskId(task.to_string()),
                        time: DateTime::<Utc>::from_timestamp_millis(millis).unwrap_or_default(),
                        text: e.message().unwrap_or_default().trim_end_matches('\n').to_string(),
                    };
                    if tx.send(line).await.is_err() {
                        return;
                    }
                }
            }
            if !query.follow {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = tx.closed() => return,
            }
        }
    });
    rx
}

/// Create `group` unless it exists (CreateLogGroup; "already exists" is success), before a
/// task definition whose awslogs driver writes to it is registered.
pub async fn ensure_group(client: &aws_sdk_cloudwatchlogs::Client, group: &str) -> crate::runtime::RuntimeResult<()> {
    match client.create_log_group().log_group_name(group).send().await {
        Ok(_) => Ok(()),
        Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_already_exists_exception()) => Ok(()),
        Err(e) => Err(super::sdk_error(&format!("cannot create log group {group}"), e)),
    }
}
