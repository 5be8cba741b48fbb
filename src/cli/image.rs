//! `ferry image push`: make an OCI image of a folder or tarball (or take the one in a
//! `docker save` / OCI-layout archive) and push it to the project's registry;
//! `ferry image registry`: where that registry is, and stopping the one ferry runs.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::cli::{print_out, CliError, CliResult, Context};
use crate::registry::image::{self, RunConfig};
use crate::registry::{serve, OciRegistry, RegistryError};

/// Images in the project's registry, for stages on the local runtime.
#[derive(Debug, Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    pub command: ImageCommand,
}

/// `ferry image …`.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    Push(PushArgs),
    Registry(RegistryArgs),
}

/// Push a folder or tarball as an OCI image, or an image archive, and print its digest.
///
/// A folder (or a tarball of files) becomes a single-layer image, no Docker needed: the
/// same files and settings always give the same digest, whatever their mtimes, owners or
/// order on disk. Symlinks are kept when they stay inside the image; one pointing outside
/// is an error. A `docker save` or OCI-layout archive is pushed as the image it holds.
///
/// The registry is `[registry] url` in ferry.toml, or the distribution registry ferry
/// starts on 127.0.0.1 (storage under `.ferry/oci-registry/`).
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  ferry image push image --repo web\n  \
                        ferry image push build/web.tar.gz --repo web --tag v2\n  \
                        ferry image push site --repo web --cmd '[\"/bin/httpd\", \"-f\"]' --env MODE=prod\n  \
                        docker save web:1 -o web.tar && ferry image push web.tar --repo web\n\n\
                        The digest (the manifest digest, as `docker inspect` shows it) goes to stdout; \
                        put it under [apps.NAME.releases] in a stage file.")]
pub struct PushArgs {
    /// A folder, a tarball of files (.tar, .tar.gz, .tgz), or a `docker save` / OCI-layout archive.
    pub path: PathBuf,
    /// Repository, e.g. `web` or `shop/web` (the app's `image` on the local runtime).
    #[arg(long, value_name = "NAME")]
    pub repo: String,
    /// Also point this tag at the image (for `track`). Default: no tag.
    #[arg(long, value_name = "TAG")]
    pub tag: Option<String>,
    /// The image's entrypoint: a JSON array (`'["/bin/app", "serve"]'`) or words split on spaces.
    #[arg(long, value_name = "COMMAND")]
    pub entrypoint: Option<String>,
    /// The image's default command, written as `--entrypoint`.
    #[arg(long, value_name = "COMMAND")]
    pub cmd: Option<String>,
    /// An environment variable of the image (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// The working directory of the image's processes (absolute).
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<String>,
}

/// Print where the project's registry is (starting the one ferry runs if needed), or stop it.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  ferry image registry\n  ferry image registry --stop")]
pub struct RegistryArgs {
    /// Stop the registry ferry started for this project (its images stay on disk).
    #[arg(long)]
    pub stop: bool,
}

pub fn run(ctx: &Context, args: ImageArgs) -> CliResult {
    match args.command {
        ImageCommand::Push(push) => run_push(ctx, push),
        ImageCommand::Registry(args) => run_registry(ctx, args),
    }
}

fn run_push(ctx: &Context, args: PushArgs) -> CliResult {
    let root = ctx.root()?;
    let given = args.path.to_string_lossy();
    if given.split_once("://").is_some_and(|(scheme, _)| is_url_scheme(scheme)) {
        return Err(CliError::with_hint(
            format!("`{}` is a URL, and ferry image push does not fetch URLs", given.escape_debug()),
            "download it first (e.g. `curl -fLO URL`), then push the folder or .tar/.tar.gz/.tgz file",
        ));
    }
    let path = ctx.cwd.join(&args.path);
    if path.is_file() {
        if let Some((format, unpack)) = unsupported_archive(&path)? {
            return Err(CliError::with_hint(
                format!(
                    "{} is a {format} archive; ferry image push reads a folder or a tarball (.tar, .tar.gz, .tgz)",
                    args.path.display()
                ),
                format!("{unpack}, then push the result"),
            ));
        }
    }
    if !path.exists() {
        return Err(CliError::with_hint(
            format!("{} does not exist", args.path.display()),
            "pass a folder or a .tar/.tar.gz file; relative paths start at the working directory",
        ));
    }
    let run = RunConfig {
        entrypoint: args.entrypoint.as_deref().map(|c| command_words("--entrypoint", c)).transpose()?,
        cmd: args.cmd.as_deref().map(|c| command_words("--cmd", c)).transpose()?,
        env: args.env.iter().map(|e| env_pair(e)).collect::<CliResult<_>>()?,
        workdir: match args.workdir {
            Some(w) if !w.starts_with('/') => {
                return Err(CliError::with_hint(
                    format!("--workdir `{}` is not an absolute path", w.escape_debug()),
                    "write the folder inside the image from its root, e.g. `/app`",
                ))
            }
            w => w,
        },
        labels: Default::default(),
    };
    // Check the names before reading a large folder or starting a registry.
    if !crate::registry::is_repository_name(&args.repo) {
        return Err(registry_error(RegistryError::InvalidRepository(args.repo)));
    }
    if let Some(t) = args.tag.as_deref().filter(|t| !crate::registry::is_tag(t)) {
        return Err(registry_error(RegistryError::InvalidTag(t.to_string())));
    }
    let image = image::from_path(&path, &run).map_err(registry_error)?;
    // A registry named by the environment needs nothing of ferry.toml (a project whose
    // stages are still to be written can push its first image).
    let registry = match serve::url_from_env().map_err(registry_error)? {
        Some(url) => OciRegistry::new(url, OciRegistry::auth_from_env()).with_legacy_store(&root),
        None => serve::for_project(&ctx.project()?).map_err(registry_error)?,
    };
    let pushed = registry.push(&args.repo, &image, args.tag.as_deref()).map_err(registry_error)?;
    let files = match pushed.files {
        Some(n) => format!("{n} file{}, ", if n == 1 { "" } else { "s" }),
        None => format!("{} layer{}, ", image.layers.len(), if image.layers.len() == 1 { "" } else { "s" }),
    };
    eprintln!(
        "{} {}@{} ({files}{} bytes)",
        if pushed.new { "pushed" } else { "unchanged" },
        args.repo,
        pushed.digest,
        pushed.size
    );
    if let Some(tag) = &args.tag {
        eprintln!("tagged {}:{tag}", args.repo);
    }
    print_out(&format!("{}\n", pushed.digest))
}

/// Whether `s` is a URL scheme (`https`, `s3`, `oci+http`), as RFC 3986 spells them.
fn is_url_scheme(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// Archive formats people reach for that are not tarballs, by their magic bytes, with how
/// to turn each into something `image push` reads. (The registry's reader tells plain tar
/// from gzip the same way; anything else would reach it as a confusing tar error.)
const OTHER_ARCHIVES: &[(&[u8], &str, &str)] = &[
    (b"PK\x03\x04", "zip", "unzip it into a folder (`unzip FILE -d DIR`)"),
    (b"PK\x05\x06", "zip", "unzip it into a folder (`unzip FILE -d DIR`)"),
    (b"\xfd7zXZ\x00", "xz-compressed", "decompress it to a .tar (`xz -dk FILE`)"),
    (b"BZh", "bzip2-compressed", "decompress it to a .tar (`bunzip2 -k FILE`)"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed", "decompress it to a .tar (`zstd -d FILE`)"),
    (b"7z\xbc\xaf\x27\x1c", "7-Zip", "extract it into a folder (`7z x FILE -oDIR`)"),
];

/// The format of `path` and what to do, when it is an archive `image push` cannot read.
fn unsupported_archive(path: &std::path::Path) -> CliResult<Option<(&'static str, &'static str)>> {
    let mut head = [0u8; 8];
    let n = std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
        .map_err(|e| CliError::new(format!("cannot read {}: {e}", path.display())))?;
    Ok(OTHER_ARCHIVES
        .iter()
        .find(|(magic, _, _)| head[..n].starts_with(magic))
        .map(|(_, format, unpack)| (*format, *unpack)))
}

fn run_registry(ctx: &Context, args: RegistryArgs) -> CliResult {
    let project = ctx.project()?;
    if args.stop {
        match serve::stop(&project.root, &project.registry) {
            Some(s) => eprintln!("stopped the registry on 127.0.0.1:{} (pid {})", s.port, s.pid),
            None => eprintln!("no registry of this project runs"),
        }
        return Ok(());
    }
    let registry = serve::for_project(&project).map_err(registry_error)?;
    print_out(&format!("{}\n", registry.url()))
}

/// A command given as a JSON array of strings, or as words separated by spaces.
fn command_words(flag: &str, text: &str) -> CliResult<Vec<String>> {
    if text.trim_start().starts_with('[') {
        return serde_json::from_str(text).map_err(|e| {
            CliError::with_hint(
                format!("{flag} is not a JSON array of strings: {e}"),
                format!("write it as {flag} '[\"/bin/app\", \"--flag\"]', or as plain words"),
            )
        });
    }
    Ok(text.split_whitespace().map(str::to_string).collect())
}

fn env_pair(text: &str) -> CliResult<String> {
    match text.split_once('=') {
        Some((k, _)) if !k.is_empty() && !k.contains(char::is_whitespace) => Ok(text.to_string()),
        _ => Err(CliError::with_hint(
            format!("--env `{}` is not KEY=VALUE", text.escape_debug()),
            "write each variable as --env KEY=VALUE",
        )),
    }
}

/// A registry error as a CLI error with its hint.
pub fn registry_error(e: RegistryError) -> CliError {
    match e.hint() {
        Some(h) => CliError::with_hint(e.to_string(), h),
        None => CliError::new(e.to_string()),
    }
}
