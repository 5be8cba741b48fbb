//! Where a deployment comes from: the CI run and git checkout applying it, recorded as its
//! [`Source`] so `ferry history` can say which commit shipped what.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::state::Source;

/// What `git` says about a checkout.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitCheckout {
    /// Full sha of `HEAD`.
    pub commit: String,
    /// The checked-out branch; `None` on a detached `HEAD`.
    pub branch: Option<String>,
    /// Author of `HEAD`.
    pub author: Option<String>,
    /// The first line of `HEAD`'s message.
    pub subject: Option<String>,
}

impl GitCheckout {
    /// Ask `git` about the checkout holding `dir`. `None` when git is missing or `dir` is
    /// not in a checkout: a deployment is recorded all the same, without a commit.
    pub fn read(dir: &Path) -> Option<GitCheckout> {
        let head = git(dir, &["log", "-1", "--format=%H%x1f%an%x1f%s"])?;
        let mut fields = head.split('\u{1f}');
        let mut next = || fields.next().unwrap_or_default().to_string();
        let (commit, author, subject) = (next(), next(), next());
        Some(GitCheckout {
            commit,
            branch: git(dir, &["symbolic-ref", "--short", "-q", "HEAD"]),
            author: non_empty(author),
            subject: non_empty(subject),
        })
    }
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out =
        Command::new("git").arg("-C").arg(dir).args(args).stdin(Stdio::null()).stderr(Stdio::null()).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string()).and_then(non_empty)
}

fn non_empty(s: String) -> Option<String> {
    (!s.trim().is_empty()).then_some(s)
}

/// Looks an environment variable up.
type Env<'a> = dyn Fn(&str) -> Option<String> + 'a;

/// CI systems and the variables that name their commit, branch, actor and run. A CI
/// checkout is often a detached `HEAD` of a merge commit, so its variables say better
/// than git what was built.
struct Ci {
    commit: &'static str,
    branch: &'static [&'static str],
    author: &'static [&'static str],
    run: fn(&Env<'_>) -> Option<String>,
}

const CI: &[Ci] = &[
    Ci {
        commit: "GITHUB_SHA",
        // GITHUB_HEAD_REF is the pull request's branch; GITHUB_REF_NAME is `N/merge` there.
        branch: &["GITHUB_HEAD_REF", "GITHUB_REF_NAME"],
        author: &["GITHUB_ACTOR"],
        run: |env| match (env("GITHUB_SERVER_URL"), env("GITHUB_REPOSITORY"), env("GITHUB_RUN_ID")) {
            (Some(server), Some(repo), Some(id)) => Some(format!("{server}/{repo}/actions/runs/{id}")),
            (_, _, id) => id,
        },
    },
    Ci {
        commit: "CI_COMMIT_SHA",
        branch: &["CI_COMMIT_REF_NAME"],
        author: &["GITLAB_USER_LOGIN"],
        run: |env| env("CI_JOB_URL").or_else(|| env("CI_PIPELINE_URL")),
    },
    Ci {
        commit: "BUILDKITE_COMMIT",
        branch: &["BUILDKITE_BRANCH"],
        author: &["BUILDKITE_BUILD_AUTHOR", "BUILDKITE_BUILD_CREATOR"],
        run: |env| env("BUILDKITE_BUILD_URL"),
    },
    Ci {
        commit: "CIRCLE_SHA1",
        branch: &["CIRCLE_BRANCH"],
        author: &["CIRCLE_USERNAME"],
        run: |env| env("CIRCLE_BUILD_URL"),
    },
];

impl Source {
    /// The source of a deployment run now from `dir`: CI variables first (GitHub Actions,
    /// GitLab CI, Buildkite, CircleCI), then the git checkout, then the local user and host.
    pub fn detect(dir: &Path) -> Source {
        let user = std::env::var("USER").or_else(|_| std::env::var("USERNAME")).ok();
        let user = user.map(|u| match hostname() {
            Some(h) => format!("{u}@{h}"),
            None => u,
        });
        Source::from_parts(&|k| std::env::var(k).ok(), GitCheckout::read(dir), user)
    }

    /// [`detect`](Self::detect) from given parts: `env` looks variables up.
    pub fn from_parts(env: &Env<'_>, git: Option<GitCheckout>, user: Option<String>) -> Source {
        let env = |k: &str| env(k).and_then(non_empty);
        let first = |names: &[&str]| names.iter().find_map(|n| env(n));
        // Buildkite may say `HEAD` before it resolved the commit.
        let ci = CI.iter().find(|ci| env(ci.commit).is_some_and(|c| c != "HEAD"));
        let git = git.unwrap_or_default();
        let commit = ci.and_then(|ci| env(ci.commit)).or_else(|| non_empty(git.commit.clone()));
        // The checkout's subject only describes the recorded commit when it is that commit.
        let subject = git.subject.filter(|_| commit.as_deref() == Some(git.commit.as_str()));
        Source {
            commit,
            branch: ci.and_then(|ci| first(ci.branch)).or(git.branch),
            author: ci.and_then(|ci| first(ci.author)).or(git.author),
            subject,
            ci: ci.and_then(|ci| (ci.run)(&env)),
            user,
        }
    }

    /// The commit abbreviated as git does by default (7 hex digits), for lists.
    pub fn short_commit(&self) -> Option<&str> {
        self.commit.as_deref().map(|c| &c[..c.len().min(7)])
    }
}

/// Who runs ferry, for lock holders and abort requests: the CI's actor (`GITHUB_ACTOR`,
/// `GITLAB_USER_LOGIN`, …), else `git config user.name`, else `$USER` or `$LOGNAME`. `None`
/// when nothing says. Asked once per process (git is a process to start).
pub fn operator() -> Option<String> {
    static OPERATOR: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    OPERATOR
        .get_or_init(|| {
            let git_name = || git(Path::new("."), &["config", "user.name"]);
            operator_from(&|k| std::env::var(k).ok(), &git_name)
        })
        .clone()
}

/// [`operator`] from given parts: `env` looks variables up, `git_name` asks git.
pub fn operator_from(env: &Env<'_>, git_name: &dyn Fn() -> Option<String>) -> Option<String> {
    let env = |k: &str| env(k).and_then(non_empty);
    CI.iter()
        .flat_map(|ci| ci.author.iter())
        .find_map(|name| env(name))
        .or_else(git_name)
        .or_else(|| env("USER"))
        .or_else(|| env("LOGNAME"))
}

fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it
    // when the name fits, and we stop at the first NUL or the end either way.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    non_empty(String::from_utf8_lossy(&buf[..end]).into_owned())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    fn checkout() -> GitCheckout {
        GitCheckout {
            commit: "ef5c71a0".repeat(5),
            branch: Some("main".into()),
            author: Some("Ada".into()),
            subject: Some("Fix the login".into()),
        }
    }

    #[test]
    fn a_local_checkout_gives_commit_branch_and_author() {
        let s = Source::from_parts(&env(&[]), Some(checkout()), Some("ada@laptop".into()));
        assert_eq!(s.short_commit(), Some("ef5c71a"));
        assert_eq!((s.branch.as_deref(), s.author.as_deref(), s.ci), (Some("main"), Some("Ada"), None));
        assert_eq!(s.user.as_deref(), Some("ada@laptop"));
        assert_eq!(s.subject.as_deref(), Some("Fix the login"));
        assert_eq!(Source::from_parts(&env(&[]), None, None), Source::default(), "no git, no CI: empty");
    }

    #[test]
    fn ci_variables_win_over_the_checkout() {
        let gh = env(&[
            ("GITHUB_SHA", "2b51cdaabcdc9c35b36e998ec81d2ed8507def0e"),
            ("GITHUB_REF_NAME", "41/merge"),
            ("GITHUB_HEAD_REF", "fix-login"),
            ("GITHUB_ACTOR", "octocat"),
            ("GITHUB_SERVER_URL", "https://github.com"),
            ("GITHUB_REPOSITORY", "shop/web"),
            ("GITHUB_RUN_ID", "42"),
        ]);
        let s = Source::from_parts(&gh, Some(checkout()), None);
        assert_eq!(s.short_commit(), Some("2b51cda"));
        assert_eq!(s.branch.as_deref(), Some("fix-login"));
        assert_eq!(s.author.as_deref(), Some("octocat"));
        assert_eq!(s.ci.as_deref(), Some("https://github.com/shop/web/actions/runs/42"));
        assert_eq!(s.subject, None, "the checkout's subject is another commit's");

        let gl = env(&[("CI_COMMIT_SHA", "abc1234"), ("CI_COMMIT_REF_NAME", "main"), ("CI_JOB_URL", "https://gl/j/1")]);
        let s = Source::from_parts(&gl, Some(checkout()), None);
        assert_eq!((s.commit.as_deref(), s.branch.as_deref()), (Some("abc1234"), Some("main")));
        assert_eq!((s.author.as_deref(), s.ci.as_deref()), (Some("Ada"), Some("https://gl/j/1")), "git fills gaps");

        let bk = env(&[("BUILDKITE_COMMIT", "HEAD"), ("BUILDKITE_BUILD_URL", "https://bk/1")]);
        assert_eq!(Source::from_parts(&bk, Some(checkout()), None).ci, None, "an unresolved commit is no CI source");
    }

    #[test]
    fn the_operator_is_the_ci_actor_then_the_git_user_then_the_login() {
        let git = || Some("Ada Lovelace".to_string());
        let no_git = || None;
        let ci = env(&[("GITHUB_ACTOR", "octocat"), ("USER", "runner")]);
        assert_eq!(operator_from(&ci, &git).as_deref(), Some("octocat"));
        let local = env(&[("USER", "ada")]);
        assert_eq!(operator_from(&local, &git).as_deref(), Some("Ada Lovelace"));
        assert_eq!(operator_from(&local, &no_git).as_deref(), Some("ada"));
        assert_eq!(operator_from(&env(&[("LOGNAME", "ada")]), &no_git).as_deref(), Some("ada"));
        assert_eq!(operator_from(&env(&[("USER", " ")]), &no_git), None);
    }

    #[test]
    fn reads_a_real_checkout_and_tolerates_no_git() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(GitCheckout::read(dir.path()), None);
        let run = |args: &[&str]| {
            Command::new("git").arg("-C").arg(dir.path()).args(args).output().is_ok_and(|o| o.status.success())
        };
        if !run(&["init", "-q", "-b", "trunk"]) {
            return; // no git on this machine: nothing more to check
        }
        let message = "Fix the login\n\nThe body is not the subject.";
        let commit =
            run(&["-c", "user.name=Ada", "-c", "user.email=a@x", "commit", "-q", "--allow-empty", "-m", message]);
        assert!(commit);
        let c = GitCheckout::read(dir.path()).unwrap();
        assert_eq!((c.commit.len(), c.branch.as_deref(), c.author.as_deref()), (40, Some("trunk"), Some("Ada")));
        assert_eq!(c.subject.as_deref(), Some("Fix the login"));
    }
}
