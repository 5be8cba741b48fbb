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

/// A registry error as a CLI error with its hint.
pub fn registry_error(e: RegistryError) -> CliError {
    match e.hint() {
        Some(h) => CliError::with_hint(e.to_string(), h),
        None => CliError::new(e.to_string()),
    }
}
