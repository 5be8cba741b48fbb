//! Task log files: one per task, `<RFC 3339 time> <line>` per line, so `--since` can filter
//! without an index and the files stay readable with `less`. Lines starting with `ferry: `
//! are the agent's own notes about the task (started, exited, restarting).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::runtime::{LogLine, LogQuery, LogStream, RuntimeResult, TaskId};

/// An open task log, shared by the stdout and stderr pumps and the agent's notes.
#[derive(Debug, Clone)]
pub struct TaskLog {
    file: Arc<Mutex<File>>,
}

impl TaskLog {
    /// Open (appending) the log at `path`, creating folders; both are private to the owner
    /// (the app's output may carry the secrets it was given).
    pub fn open(path: &Path) -> io::Result<TaskLog> {
        if let Some(dir) = path.parent() {
            crate::private_files::create_dir_all(dir)?;
        }
        let file = crate::private_files::open_append(path)?;
        Ok(TaskLog { file: Arc::new(Mutex::new(file)) })
    }

    /// Append one line, stamped now. Errors are ignored: a full disk must not kill a task.
    pub fn line(&self, text: &str) {
        let stamp = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
        let text = text.strip_suffix('\n').unwrap_or(text);
        let text = text.strip_suffix('\r').unwrap_or(text);
        if let Ok(mut f) = self.file.lock() {
            let _ = writeln!(f, "{stamp} {text}");
        }
    }

    /// Append an agent note.
    pub fn note(&self, text: &str) {
        self.line(&format!("ferry: {text}"));
    }
}

/// How many task logs an app's log folder keeps: without a bound, every task ever started
/// (each restart and one-off included) leaves a file forever.
pub const KEEP_TASK_LOGS: usize = 100;

/// Delete the oldest `<task>.log` files of `dir` (by modification time) beyond the newest
/// `keep`, never one named in `in_use` (a task still running writes to it). Returns how many
/// went; errors only leave files in place.
pub fn prune(dir: &Path, keep: usize, in_use: &[String]) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut logs: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.ends_with(".log") && !in_use.iter().any(|u| u == n)))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    let keep = keep.saturating_sub(in_use.len());
    if logs.len() <= keep {
        return 0;
    }
    logs.sort();
    let excess = logs.len() - keep;
    logs.into_iter().take(excess).filter(|(_, path)| std::fs::remove_file(path).is_ok()).count()
}

/// Copy a child's output stream into the log line by line until it closes.
pub async fn pump(stream: impl tokio::io::AsyncRead + Unpin, log: TaskLog) {
    use tokio::io::AsyncBufReadExt;
    let mut reader = tokio::io::BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => log.line(&String::from_utf8_lossy(&buf)),
        }
    }
}

/// Parse one stored line.
pub fn parse_line(line: &str) -> Option<(DateTime<Utc>, &str)> {
    let (stamp, text) = line.split_once(' ').unwrap_or((line, ""));
    let time = DateTime::parse_from_rfc3339(stamp).ok()?.with_timezone(&Utc);
    Some((time, text))
}

/// Stream the logs in `dir` (every `*.log`, or the one task's) as asked. Without `follow`
/// the existing lines of all files are sent in time order and the stream ends; with it,
/// files are then tailed (new tasks' files included) until the receiver is dropped.
pub fn stream(dir: PathBuf, query: LogQuery) -> RuntimeResult<LogStream> {
    if let Some(task) = &query.task {
        if !dir.join(format!("{task}.log")).exists() && !query.follow {
            return Err(crate::runtime::RuntimeError::NotFound(format!("no log for task {task}")));
        }
    }
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    tokio::spawn(async move {
        let mut offsets: BTreeMap<PathBuf, u64> = BTreeMap::new();
        let mut first = true;
        loop {
            let mut batch = Vec::new();
            for path in files(&dir, query.task.as_ref()) {
                let offset = offsets.entry(path.clone()).or_insert(0);
                let task = TaskId(path.file_stem().unwrap_or_default().to_string_lossy().into_owned());
                if let Ok(lines) = read_from(&path, offset) {
                    for l in lines {
                        if let Some((time, text)) = parse_line(&l) {
                            if query.since.is_none_or(|s| time >= s) {
                                batch.push(LogLine { task: task.clone(), time, text: text.to_string() });
                            }
                        }
                    }
                }
            }
            if first {
                // Interleave tasks by time for the backlog; later batches are already live.
                batch.sort_by_key(|l| l.time);
                first = false;
            }
            for line in batch {
                if tx.send(line).await.is_err() {
                    return;
                }
            }
            if !query.follow || tx.is_closed() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    Ok(rx)
}

fn files(dir: &Path, task: Option<&TaskId>) -> Vec<PathBuf> {
    if let Some(task) = task {
        let p = dir.join(format!("{task}.log"));
        return if p.exists() { vec![p] } else { Vec::new() };
    }
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "log")).collect())
        .unwrap_or_default();
    out.sort();
    out
}

/// Complete lines after `offset`, advancing it past them (a partial last line waits).
fn read_from(path: &Path, offset: &mut u64) -> io::Result<Vec<String>> {
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(*offset))?;
    let mut reader = BufReader::new(f);
    let mut lines = Vec::new();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf)?;
        if n == 0 || buf.last() != Some(&b'\n') {
            return Ok(lines);
        }
        *offset += n as u64;
        lines.push(String::from_utf8_lossy(&buf[..n - 1]).into_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_keeps_the_newest_logs_and_those_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let base = std::time::SystemTime::now() - Duration::from_secs(1000);
        for i in 0..10u64 {
            let path = dir.path().join(format!("t{i}.log"));
            std::fs::write(&path, "x\n").unwrap();
            let file = File::options().write(true).open(&path).unwrap();
            file.set_modified(base + Duration::from_secs(i)).unwrap();
        }
        std::fs::write(dir.path().join("notes.txt"), "not a log").unwrap();
        // t0 is the oldest but still written to.
        let removed = prune(dir.path(), 4, &["t0.log".to_string()]);
        assert_eq!(removed, 6, "four logs stay, the one in use among them");
        let mut left: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(left, ["notes.txt", "t0.log", "t7.log", "t8.log", "t9.log"]);
        assert_eq!(prune(dir.path(), 4, &["t0.log".to_string()]), 0);
    }
}
