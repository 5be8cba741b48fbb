//! Where a build's files come from: a folder, a `.tgz`/`.tar.gz`/`.tar`, a `.zip`, or a git
//! URL with an optional `#REF`. Archives and clones land in a scratch folder under
//! `.ferry/build/`, removed when the build is done; nothing of an archive may land outside
//! it (an entry climbing out with `..` or an absolute path is refused, naming the entry).

use std::fs;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

use super::BuildError;
use crate::registry::layer::{create_private_dir, Applier};

/// A source as the user named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    Dir(PathBuf),
    Tarball(PathBuf),
    Zip(PathBuf),
    Git { url: String, reference: Option<String> },
}

impl SourceSpec {
    /// Read `--source TEXT`, relative paths from `cwd`.
    pub fn parse(text: &str, cwd: &Path) -> Result<SourceSpec, BuildError> {
        let (base, reference) = match text.split_once('#') {
            Some((b, r)) => (b, Some(r.to_string()).filter(|r| !r.is_empty())),
            None => (text, None),
        };
        let looks_git =
            ["https://", "http://", "ssh://", "git://", "file://", "git@"].iter().any(|p| base.starts_with(p))
                || base.ends_with(".git");
        if looks_git {
            return Ok(SourceSpec::Git { url: base.to_string(), reference });
        }
        let path = cwd.join(text);
        let name = text.to_ascii_lowercase();
        if path.is_dir() {
            Ok(SourceSpec::Dir(path))
        } else if !path.exists() {
            Err(BuildError::Source {
                what: text.to_string(),
                reason: "does not exist".into(),
                hint: "pass a folder, a .tgz/.tar.gz/.tar or .zip file, or a git URL (URL#REF for a branch, tag or commit)"
                    .into(),
            })
        } else if name.ends_with(".zip") {
            Ok(SourceSpec::Zip(path))
        } else if name.ends_with(".tgz") || name.ends_with(".tar.gz") || name.ends_with(".tar") {
            Ok(SourceSpec::Tarball(path))
        } else {
            Err(BuildError::Source {
                what: text.to_string(),
                reason: "is neither a folder nor a .tgz, .tar.gz, .tar or .zip file".into(),
                hint: "pass a folder, an archive of the sources, or a git URL".into(),
            })
        }
    }
}

/// A source's files on disk, and the scratch folder holding them (removed on drop).
#[derive(Debug)]
pub struct Prepared {
    pub dir: PathBuf,
    scratch: Option<PathBuf>,
    /// The git URL a clone came from.
    pub git_url: Option<String>,
}

impl Drop for Prepared {
    fn drop(&mut self) {
        if let Some(s) = &self.scratch {
            let _ = fs::remove_dir_all(s);
        }
    }
}

/// Put the source's files in a folder: a folder is used where it is; archives are unpacked
/// and git URLs cloned into a fresh folder under `scratch_root`.
pub fn prepare(spec: &SourceSpec, scratch_root: &Path) -> Result<Prepared, BuildError> {
    if let SourceSpec::Dir(d) = spec {
        return Ok(Prepared { dir: d.clone(), scratch: None, git_url: None });
    }
    crate::private_files::create_dir_all(scratch_root)
        .map_err(|e| BuildError::Io(format!("cannot create {}: {e}", scratch_root.display())))?;
    let scratch = scratch_root.join(format!("src-{}", uuid::Uuid::new_v4().simple()));
    create_private_dir(&scratch).map_err(|e| BuildError::Io(format!("cannot create {}: {e}", scratch.display())))?;
    let mut prepared = Prepared { dir: scratch.clone(), scratch: Some(scratch.clone()), git_url: None };
    match spec {
        SourceSpec::Dir(_) => unreachable!("handled above"),
        SourceSpec::Tarball(file) => {
            let bad = |reason: String| BuildError::Source {
                what: file.display().to_string(),
                reason,
                hint: "pass a tar archive (plain or gzip) whose entries stay inside it".into(),
            };
            let f = fs::File::open(file).map_err(|e| bad(format!("cannot be read: {e}")))?;
            let mut head = [0u8; 2];
            let mut reader = std::io::BufReader::new(f);
            let n = reader.read(&mut head).map_err(|e| bad(format!("cannot be read: {e}")))?;
            let chained = std::io::Cursor::new(head[..n].to_vec()).chain(reader);
            let mut applier = Applier::new(&scratch);
            let applied = if head[..n] == [0x1f, 0x8b] {
                applier.apply(flate2::read::GzDecoder::new(chained))
            } else {
                applier.apply(chained)
            };
            applied.map_err(|e| bad(format!("cannot be unpacked: {e}")))?;
            Ok(prepared)
        }
        SourceSpec::Zip(file) => {
            unzip(file, &scratch)?;
            Ok(prepared)
        }
        SourceSpec::Git { url, reference } => {
            clone(url, reference.as_deref(), &scratch)?;
            prepared.git_url = Some(url.clone());
            Ok(prepared)
        }
    }
}

/// Unpack a zip archive into `dest`, refusing any entry that would land outside it.
fn unzip(file: &Path, dest: &Path) -> Result<(), BuildError> {
    let bad = |reason: String, hint: &str| BuildError::Source {
        what: file.display().to_string(),
        reason,
        hint: hint.to_string(),
    };
    let f = fs::File::open(file).map_err(|e| bad(format!("cannot be read: {e}"), "check the file"))?;
    let mut zip = zip::ZipArchive::new(f).map_err(|e| bad(format!("is not a zip archive: {e}"), "pass a .zip file"))?;
    // Check every name first: a refused archive leaves nothing unpacked.
    for i in 0..zip.len() {
        let entry = zip.by_index_raw(i).map_err(|e| bad(format!("cannot be read: {e}"), "check the file"))?;
        let name = entry.name().to_string();
        let inside = Path::new(&name).components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if !inside || entry.enclosed_name().is_none() {
            return Err(bad(
                format!("has entry `{}`, a path outside the archive's root", name.escape_debug()),
                "make the archive from inside the source folder (`cd src && zip -r ../src.zip .`)",
            ));
        }
        if entry.is_symlink() {
            return Err(bad(
                format!("has entry `{}`, a symlink (zip sources hold files and folders)", name.escape_debug()),
                "replace the symlink by the file, or pass a folder or .tgz",
            ));
        }
    }
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| bad(format!("cannot be read: {e}"), "check the file"))?;
        let rel = entry.enclosed_name().expect("checked above");
        let target = dest.join(&rel);
        let io = |e: std::io::Error| BuildError::Io(format!("cannot write {}: {e}", target.display()));
        if entry.is_dir() {
            crate::private_files::create_dir_all(&target).map_err(io)?;
            continue;
        }
        if let Some(parent) = target.parent() {
            crate::private_files::create_dir_all(parent).map_err(io)?;
        }
        let executable = entry.unix_mode().is_some_and(|m| m & 0o111 != 0);
        let mut out = std::fs::OpenOptions::new();
        std::os::unix::fs::OpenOptionsExt::mode(&mut out, if executable { 0o700 } else { 0o600 });
        let mut out = out.write(true).create_new(true).open(&target).map_err(io)?;
        std::io::copy(&mut entry, &mut out).map_err(io)?;
    }
    Ok(())
}

/// Clone `url` into `dest` and check out `reference` (a branch, tag or commit). The `git`
/// program rather than a library: it brings the user's credentials, SSH setup and proxy
/// configuration as they are, which a git library would have to be taught one by one.
fn clone(url: &str, reference: Option<&str>, dest: &Path) -> Result<(), BuildError> {
    let git = |args: &[&str], dir: Option<&Path>| -> Result<(bool, String), BuildError> {
        let mut cmd = Command::new("git");
        if let Some(d) = dir {
            cmd.arg("-C").arg(d);
        }
        let out = cmd
            .args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| BuildError::Io(format!("cannot run git: {e}")))?;
        Ok((out.status.success(), String::from_utf8_lossy(&out.stderr).trim().to_string()))
    };
    let dest_text = dest.display().to_string();
    let (ok, err) = git(&["clone", "--quiet", "--no-hardlinks", url, &dest_text], None)?;
    if !ok {
        return Err(BuildError::Source {
            what: url.to_string(),
            reason: format!("cannot be cloned: {}", last_line(&err)),
            hint: "check the URL and that git can reach it (`git clone URL` by hand)".into(),
        });
    }
    if let Some(r) = reference {
        let (ok, _) = git(&["checkout", "--quiet", "--detach", r], Some(dest))?;
        let (ok, _) = if ok {
            (true, String::new())
        } else {
            git(&["checkout", "--quiet", "--detach", &format!("origin/{r}")], Some(dest))?
        };
        if !ok {
            return Err(BuildError::Source {
                what: format!("{url}#{r}"),
                reason: format!("names ref `{}`, which the repository does not have", r.escape_debug()),
                hint: "name a branch, tag or commit that exists (`git ls-remote URL` lists them)".into(),
            });
        }
    }
    Ok(())
}

fn last_line(text: &str) -> &str {
    text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn sources_are_told_apart() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("app")).unwrap();
        fs::write(tmp.path().join("a.zip"), "").unwrap();
        fs::write(tmp.path().join("a.tgz"), "").unwrap();
        assert_eq!(SourceSpec::parse("app", tmp.path()).unwrap(), SourceSpec::Dir(tmp.path().join("app")));
        assert!(matches!(SourceSpec::parse("a.zip", tmp.path()).unwrap(), SourceSpec::Zip(_)));
        assert!(matches!(SourceSpec::parse("a.tgz", tmp.path()).unwrap(), SourceSpec::Tarball(_)));
        assert_eq!(
            SourceSpec::parse("https://example.com/shop.git#v1", tmp.path()).unwrap(),
            SourceSpec::Git { url: "https://example.com/shop.git".into(), reference: Some("v1".into()) }
        );
        assert!(SourceSpec::parse("missing", tmp.path()).unwrap_err().to_string().contains("does not exist"));
    }

    #[test]
    fn a_zip_with_a_path_outside_its_root_is_refused_and_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("evil.zip");
        let mut zip = zip::ZipWriter::new(fs::File::create(&file).unwrap());
        let opts = zip::write::SimpleFileOptions::default();
        zip.start_file("ok.txt", opts).unwrap();
        zip.write_all(b"fine").unwrap();
        zip.start_file("../evil.txt", opts).unwrap();
        zip.write_all(b"bad").unwrap();
        zip.finish().unwrap();
        let scratch = tmp.path().join("scratch");
        let err = prepare(&SourceSpec::Zip(file), &scratch).unwrap_err();
        assert!(err.to_string().contains("has entry `../evil.txt`, a path outside the archive's root"), "{err}");
        assert!(!tmp.path().join("evil.txt").exists());
        assert_eq!(fs::read_dir(&scratch).unwrap().count(), 0, "the scratch folder is removed");
    }

    #[test]
    fn a_good_zip_is_unpacked() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("src.zip");
        let mut zip = zip::ZipWriter::new(fs::File::create(&file).unwrap());
        let opts = zip::write::SimpleFileOptions::default();
        zip.start_file("sub/Dockerfile", opts).unwrap();
        zip.write_all(b"FROM scratch\n").unwrap();
        zip.finish().unwrap();
        let prepared = prepare(&SourceSpec::Zip(file), &tmp.path().join("scratch")).unwrap();
        assert_eq!(fs::read_to_string(prepared.dir.join("sub/Dockerfile")).unwrap(), "FROM scratch\n");
        let dir = prepared.dir.clone();
        drop(prepared);
        assert!(!dir.exists());
    }
}
