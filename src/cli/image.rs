//! `ferry image push`: store a folder or tarball in the project's local registry.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::cli::{print_out, CliError, CliResult, Context};
use crate::registry::{LocalRegistry, RegistryError};

/// Images of the local registry (`.ferry/registry/`), for stages on the local runtime.
#[derive(Debug, Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    pub command: ImageCommand,
}

/// `ferry image …`.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    Push(PushArgs),
}

/// Store a folder or tarball as an image and print its digest.
///
/// The image is a deterministic archive of the content: the same files always give the same
/// digest, whatever their mtimes, owners or order on disk. Symlinks are kept when they stay
/// inside the image; one pointing outside is an error.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  ferry image push image --repo web\n  \
                        ferry image push build/web.tar.gz --repo web --tag v2\n\n\
                        The digest goes to stdout; put it under [apps.NAME.releases] in a stage file.")]
pub struct PushArgs {
    /// A folder, or a tarball (.tar, .tar.gz, .tgz).
    pub path: PathBuf,
    /// Repository, e.g. `web` or `shop/web` (the app's `image` on the local runtime).
    #[arg(long, value_name = "NAME")]
    pub repo: String,
    /// Also point this tag at the image (for `track`). Default: no tag.
    #[arg(long, value_name = "TAG")]
    pub tag: Option<String>,
}

pub fn run(ctx: &Context, args: ImageArgs) -> CliResult {
    match args.command {
        ImageCommand::Push(push) => run_push(ctx, push),
    }
}

fn run_push(ctx: &Context, args: PushArgs) -> CliResult {
    let root = ctx.root()?;
    let path = ctx.cwd.join(&args.path);
    if !path.exists() {
        return Err(CliError::with_hint(
            format!("{} does not exist", args.path.display()),
            "pass a folder or a .tar/.tar.gz file; relative paths start at the working directory",
        ));
    }
    let registry = LocalRegistry::for_project(&root);
    let pushed = registry.push_path(&path, &args.repo, args.tag.as_deref()).map_err(registry_error)?;
    eprintln!(
        "{} {}@{} ({} file{}, {} bytes)",
        if pushed.new { "pushed" } else { "unchanged" },
        args.repo,
        pushed.digest,
        pushed.files,
        if pushed.files == 1 { "" } else { "s" },
        pushed.size
    );
    if let Some(tag) = &args.tag {
        eprintln!("tagged {}:{tag}", args.repo);
    }
    print_out(&format!("{}\n", pushed.digest))
}

/// A registry error as a CLI error with its hint.
pub fn registry_error(e: RegistryError) -> CliError {
    match e.hint() {
        Some(h) => CliError::with_hint(e.to_string(), h),
        None => CliError::new(e.to_string()),
    }
}
