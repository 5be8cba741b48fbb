//! `ferry init`: scaffold a project for the local runtime, with one small app ready to
//! deploy.

use std::path::Path;

use clap::Args;

use crate::cli::image::push_registry;
use crate::cli::image::registry_error;
use crate::cli::{CliError, CliResult, Context};
use crate::config::{PROJECT_FILE, STAGES_DIR};
use crate::registry::image::{self, RunConfig};

/// Create ferry.toml, a development stage for the local runtime with one small app, its
/// image in the local registry, and a .gitignore for .ferry/.
///
/// The app, `hello`, serves the folder `hello/` with Python's built-in web server, so
/// `ferry plan` and `ferry commit --yes` deploy something at once. Edit `hello/index.html`,
/// then `ferry image push hello --repo hello` and `ferry release create hello DIGEST
/// --activate` make release 2.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  mkdir shop && cd shop && ferry init --name shop && ferry plan && ferry commit --yes"
)]
pub struct InitArgs {
    /// Project name. Default: the directory's name.
    #[arg(long)]
    pub name: Option<String>,
}

/// The example app's name, its repository in the local registry and its folder.
const APP: &str = "hello";

const PAGE: &str =
    "<!doctype html>\n<title>hello from ferry</title>\n<h1>hello from ferry</h1>\n<p>Edit hello/index.html, \
                    then: ferry image push hello --repo hello, and ferry release create hello DIGEST --activate.</p>\n";

fn stage_text(digest: &str, port: u16) -> String {
    format!(
        r#"# The development stage, on the local runtime (processes on this machine).
# Reference: `ferry schema stage`.

[runtime]
kind = "local"
driver = "process"                     # the app is a host command (Python), not a container

[apps.{APP}]
image = "{APP}"                        # a repository of the local registry (`ferry image push`)
active = 1
scale = 1
port = {port}                          # stable port on 127.0.0.1, proxied to healthy tasks
# Each task runs in its unpacked image folder and gets its own ${{PORT}}.
command = ["python3", "-m", "http.server", "${{PORT}}", "--bind", "127.0.0.1"]

[apps.{APP}.releases]
# The digest `ferry image push {APP} --repo {APP}` printed for the folder {APP}/.
1 = "{digest}"

[apps.{APP}.health]
path = "/"
interval = "1s"
"#
    )
}

pub fn run(ctx: &Context, args: InitArgs) -> CliResult {
    let root = &ctx.cwd;
    let project_file = root.join(PROJECT_FILE);
    let stage_file = root.join(STAGES_DIR).join("development.toml");
    let app_dir = root.join(APP);
    for f in [&project_file, &stage_file, &app_dir] {
        if f.exists() {
            return Err(CliError::with_hint(
                format!("{} already exists; nothing was changed", f.display()),
                "ferry init only creates new projects",
            ));
        }
    }
    let name = args.name.unwrap_or_else(|| default_name(root));
    if !crate::config::validate::is_dns_label(&name, 63) {
        return Err(CliError::with_hint(
            format!("`{name}` is not a valid project name"),
            "pass --name with lowercase letters, digits and `-`",
        ));
    }
    std::fs::create_dir_all(&app_dir)?;
    std::fs::write(app_dir.join("index.html"), PAGE)?;
    std::fs::write(
        &project_file,
        format!("[project]\nname = \"{name}\"\n\n[state]\nbackend = \"local\"\n\n[[pipeline.steps]]\nname = \"development\"\nstages = [\"development\"]\n"),
    )?;
    // The project file comes first: the registry ferry starts is the project's. A push that
    // fails (no registry binary, say) leaves nothing behind, so `ferry init` can run again.
    let pushed = image::from_path(&app_dir, &RunConfig::default())
        .map_err(registry_error)
        .and_then(|image| push_registry(ctx, root)?.push(APP, &image, None).map_err(registry_error));
    let pushed = match pushed {
        Ok(pushed) => pushed,
        Err(e) => {
            let _ = std::fs::remove_file(&project_file);
            let _ = std::fs::remove_dir_all(&app_dir);
            return Err(e);
        }
    };
    std::fs::create_dir_all(root.join(STAGES_DIR))?;
    let port = free_port();
    std::fs::write(&stage_file, stage_text(pushed.digest.as_str(), port))?;
    let ignored = ignore_ferry_dir(root)?;
    eprintln!(
        "created {PROJECT_FILE}, {STAGES_DIR}/development.toml and {APP}/ for project `{name}`{}",
        if ignored { ", and ignored .ferry/ in .gitignore" } else { "" }
    );
    eprintln!("next: `ferry plan`, then `ferry commit --yes`; app `{APP}` then answers on http://127.0.0.1:{port}/");
    Ok(())
}

/// Add `.ferry/` to the project's `.gitignore` (created if missing): it holds the local
/// registry's blobs, state, logs and the agent's pid, none of which belongs in git. Returns
/// whether the file changed.
fn ignore_ferry_dir(root: &Path) -> CliResult<bool> {
    let path = root.join(".gitignore");
    let existing = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(CliError::new(format!("cannot read {}: {e}", path.display()))),
    };
    let covered = existing.lines().map(str::trim).any(|l| matches!(l, ".ferry" | ".ferry/" | "/.ferry" | "/.ferry/"));
    if covered {
        return Ok(false);
    }
    let mut text = existing;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str("# ferry's local state, registry, logs and agent (ferry init)\n.ferry/\n");
    std::fs::write(&path, text)?;
    Ok(true)
}

/// The app's stable port: the first free one from 8080 (a clash with another program would
/// fail the first deploy), else 8080.
fn free_port() -> u16 {
    (8080..8180).find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok()).unwrap_or(8080)
}

fn default_name(root: &Path) -> String {
    let raw = root.file_name().and_then(|n| n.to_str()).unwrap_or("app").to_lowercase();
    let cleaned: String = raw.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let trimmed = cleaned.trim_matches('-');
    if trimmed.is_empty() {
        "app".to_string()
    } else {
        trimmed.chars().take(63).collect()
    }
}
