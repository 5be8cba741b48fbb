//! `ferry init`: scaffold a project for the local runtime.

use std::path::Path;

use clap::Args;

use crate::cli::{CliError, CliResult, Context};
use crate::config::{PROJECT_FILE, STAGES_DIR};

/// Create ferry.toml and stages/development.toml for the local runtime.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  mkdir shop && cd shop && ferry init --name shop")]
pub struct InitArgs {
    /// Project name. Default: the directory's name.
    #[arg(long)]
    pub name: Option<String>,
}

const STAGE_TEMPLATE: &str = r#"# The development stage, on the local runtime (processes on this machine).
# Reference: `ferry schema stage`.

[runtime]
kind = "local"

# [apps.web]
# image = "web"                     # a repository of the local registry (`ferry image push`)
# active = 1
# scale = 1
# port = 8080                       # stable port on 127.0.0.1, proxied to healthy tasks
# command = ["python3", "-m", "http.server", "${PORT}"]
#
# [apps.web.releases]
# 1 = "sha256:…"                    # the digest `ferry image push` printed
#
# [apps.web.health]
# path = "/"
"#;

pub fn run(ctx: &Context, args: InitArgs) -> CliResult {
    let root = &ctx.cwd;
    let project_file = root.join(PROJECT_FILE);
    let stage_file = root.join(STAGES_DIR).join("development.toml");
    for f in [&project_file, &stage_file] {
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
    std::fs::create_dir_all(root.join(STAGES_DIR))?;
    std::fs::write(
        &project_file,
        format!("[project]\nname = \"{name}\"\n\n[state]\nbackend = \"local\"\n\n[[pipeline.steps]]\nname = \"development\"\nstages = [\"development\"]\n"),
    )?;
    std::fs::write(&stage_file, STAGE_TEMPLATE)?;
    eprintln!("created {PROJECT_FILE} and {STAGES_DIR}/development.toml for project `{name}`");
    Ok(())
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
