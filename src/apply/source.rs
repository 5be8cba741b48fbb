//! Where a deployment comes from: the git checkout (commit, branch, author) and the CI run
//! that applied it, recorded in each deployment's `source`. Kept small and isolated: CI
//! variables first (a CI checkout is often a detached HEAD, so its variables know the branch
//! better than git), then git, then the local user.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::state::Source;

/// Detect the source of a commit run in `dir`, from the environment and git.
pub fn detect(dir: &Path) -> Source {
    detect_with(dir, |k| std::env::var(k).ok().filter(|v| !v.is_empty()))
}

/// [`detect`] with the environment given as a lookup, for tests.
pub fn detect_with(dir: &Path, env: impl Fn(&str) -> Option<String>) -> Source {
    let mut source = Source::default();
    if let Some(sha) = env("GITHUB_SHA") {
        source.commit = Some(sha);
        source.branch = env("GITHUB_HEAD_REF").or_else(|| env("GITHUB_REF_NAME"));
        source.author = env("GITHUB_ACTOR");
        source.ci = match (env("GITHUB_SERVER_URL"), env("GITHUB_REPOSITORY"), env("GITHUB_RUN_ID")) {
            (Some(server), Some(repo), Some(run)) => Some(format!("{server}/{repo}/actions/runs/{run}")),
            (_, _, run) => run,
        };
    } else if let Some(sha) = env("CI_COMMIT_SHA") {
        source.commit = Some(sha);
        source.branch = env("CI_COMMIT_REF_NAME");
        source.author = env("GITLAB_USER_LOGIN").or_else(|| env("CI_COMMIT_AUTHOR"));
        source.ci = env("CI_PIPELINE_URL").or_else(|| env("CI_PIPELINE_ID"));
    } else if let Some(sha) = env("CIRCLE_SHA1").or_else(|| env("BUILDKITE_COMMIT")).or_else(|| env("GIT_COMMIT")) {
        source.commit = Some(sha);
        source.branch = env("CIRCLE_BRANCH").or_else(|| env("BUILDKITE_BRANCH")).or_else(|| env("GIT_BRANCH"));
        source.ci = env("CIRCLE_BUILD_URL").or_else(|| env("BUILDKITE_BUILD_URL")).or_else(|| env("BUILD_URL"));
    }
    if source.commit.is_none() {
        source.commit = git(dir, &["rev-parse", "HEAD"]);
    }
    if source.commit.is_some() {
        if source.branch.is_none() {
            source.branch = git(dir, &["symbolic-ref", "--short", "-q", "HEAD"]);
        }
        if source.author.is_none() {
            source.author = git(dir, &["log", "-1", "--format=%an <%ae>"]);
        }
    }
    let user = env("USER").or_else(|| env("LOGNAME"));
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_string());
    source.user = match (user, host) {
        (Some(u), Some(h)) if !h.is_empty() => Some(format!("{u}@{h}")),
        (u, _) => u,
    };
    source
}

/// One line of git's output, or `None` outside a checkout or without git.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out =
        Command::new("git").arg("-C").arg(dir).args(args).stdin(Stdio::null()).stderr(Stdio::null()).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ci_variables_win_over_git() {
        let env = |k: &str| {
            match k {
                "GITHUB_SHA" => Some("abc123"),
                "GITHUB_REF_NAME" => Some("main"),
                "GITHUB_ACTOR" => Some("octo"),
                "GITHUB_SERVER_URL" => Some("https://github.com"),
                "GITHUB_REPOSITORY" => Some("shop/deploy"),
                "GITHUB_RUN_ID" => Some("42"),
                "USER" => Some("runner"),
                _ => None,
            }
            .map(str::to_string)
        };
        let s = detect_with(Path::new("/nonexistent"), env);
        assert_eq!(s.commit.as_deref(), Some("abc123"));
        assert_eq!(s.branch.as_deref(), Some("main"));
        assert_eq!(s.author.as_deref(), Some("octo"));
        assert_eq!(s.ci.as_deref(), Some("https://github.com/shop/deploy/actions/runs/42"));
        assert!(s.user.unwrap().starts_with("runner"));
    }

    #[test]
    fn outside_a_checkout_only_the_user_is_known() {
        let dir = tempfile::tempdir().unwrap();
        let s = detect_with(dir.path(), |k| (k == "USER").then(|| "me".to_string()));
        assert_eq!((s.commit, s.branch, s.author, s.ci), (None, None, None, None));
    }
}
