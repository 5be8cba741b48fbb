//! The local registry: content-addressed images under `.ferry/registry/`.
//!
//! ```text
//! .ferry/registry/
//!   blobs/sha256/<hex>              the image: a deterministic tar archive (see `archive`)
//!   repos/<repo>/digests/<hex>      the repository holds this digest (contains the digest)
//!   repos/<repo>/tags/<tag>         the digest the tag names
//!   tmp/                            archives being written
//! ```
//!
//! `/` in a repository name becomes `+` in its folder name, so `shop/web`'s folders can never
//! collide with another repository's `tags/` or `digests/`. Every write lands in a temporary
//! file first and is renamed into place, so a reader never sees half an image or half a tag,
//! and a crash leaves at most a stray file under `tmp/`. Files are 0600 and folders 0700:
//! images and their tags are the user's own.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use sha2::Digest as _;

use super::archive::{self, Tree};
use super::{is_repository_name, is_tag, Registry, RegistryError, Result};
use crate::config::Digest;

/// The result of a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The image's digest: sha256 of its archive.
    pub digest: Digest,
    /// Regular files in the image.
    pub files: usize,
    /// Size of the archive in bytes.
    pub size: u64,
    /// Whether the blob was new (false: the same content was pushed before).
    pub new: bool,
}

/// The local registry rooted at a folder (normally `<project>/.ferry/registry`).
#[derive(Debug, Clone)]
pub struct LocalRegistry {
    root: PathBuf,
}

impl LocalRegistry {
    /// The registry stored in `root`; created on first push.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalRegistry { root: root.into() }
    }

    /// The registry of the project at `project_root`: `.ferry/registry/`.
    pub fn for_project(project_root: &Path) -> Self {
        Self::new(project_root.join(".ferry").join("registry"))
    }

    /// Where it is stored.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the archive of `digest` is (whether or not it exists).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs").join("sha256").join(digest.hex())
    }

    fn repo_dir(&self, repo: &str) -> PathBuf {
        self.root.join("repos").join(repo.replace('/', "+"))
    }

    /// Push a folder or a tarball (`.tar`, `.tar.gz`, `.tgz`: whatever the name, gzip is
    /// recognised by its content), as `push_dir` or `push_tarball`.
    pub fn push_path(&self, path: &Path, repo: &str, tag: Option<&str>) -> Result<Pushed> {
        if path.is_dir() {
            self.push_dir(path, repo, tag)
        } else {
            self.push_tarball(path, repo, tag)
        }
    }

    /// Store the content of folder `dir` in `repo`, optionally tagging it.
    pub fn push_dir(&self, dir: &Path, repo: &str, tag: Option<&str>) -> Result<Pushed> {
        check_names(repo, tag)?;
        let tree = Tree::from_dir(dir)?;
        self.store(&tree, repo, tag)
    }

    /// Store the entries of a tar archive (plain or gzip) in `repo`, re-archived in canonical
    /// form: the same files give the same digest as pushing them as a folder.
    pub fn push_tarball(&self, file: &Path, repo: &str, tag: Option<&str>) -> Result<Pushed> {
        check_names(repo, tag)?;
        let f = File::open(file).map_err(|e| RegistryError::io(format!("cannot read {}", file.display()), e))?;
        let tree = Tree::from_tarball(BufReader::new(f))?;
        self.store(&tree, repo, tag)
    }

    fn store(&self, tree: &Tree, repo: &str, tag: Option<&str>) -> Result<Pushed> {
        let tmp_dir = self.root.join("tmp");
        create_private_dirs(&tmp_dir)?;
        let tmp = tmp_dir.join(format!("push-{}-{}", std::process::id(), uuid::Uuid::new_v4()));
        let result = (|| {
            let file = private_file(&tmp)?;
            let writer = HashingWriter { inner: BufWriter::new(file), hasher: sha2::Sha256::new(), len: 0 };
            let writer = tree.write(writer)?;
            let size = writer.len;
            let digest: Digest =
                format!("sha256:{}", hex::encode(writer.hasher.finalize())).parse().expect("sha256 hex is a digest");
            let file =
                writer.inner.into_inner().map_err(|e| RegistryError::io("cannot write archive", e.into_error()))?;
            file.sync_all().map_err(|e| RegistryError::io("cannot write archive", e))?;
            let blob = self.blob_path(&digest);
            let new = !blob.is_file();
            if new {
                create_private_dirs(blob.parent().expect("blob has a folder"))?;
                fs::rename(&tmp, &blob)
                    .map_err(|e| RegistryError::io(format!("cannot store {}", blob.display()), e))?;
            }
            Ok(Pushed { digest, files: tree.file_count(), size, new })
        })();
        let _ = fs::remove_file(&tmp);
        let pushed = result?;
        let digests = self.repo_dir(repo).join("digests");
        create_private_dirs(&digests)?;
        write_atomically(&digests.join(pushed.digest.hex()), &format!("{}\n", pushed.digest))?;
        if let Some(tag) = tag {
            self.tag(repo, tag, &pushed.digest)?;
        }
        Ok(pushed)
    }

    /// Point `tag` of `repo` at `digest`, which the repository must hold.
    pub fn tag(&self, repo: &str, tag: &str, digest: &Digest) -> Result<()> {
        check_names(repo, Some(tag))?;
        self.verify(repo, digest)?;
        let tags = self.repo_dir(repo).join("tags");
        create_private_dirs(&tags)?;
        write_atomically(&tags.join(tag), &format!("{digest}\n"))
    }

    /// Every tag of `repo` and the digest it names (empty for an unknown repository).
    pub fn tags(&self, repo: &str) -> Result<BTreeMap<String, Digest>> {
        check_names(repo, None)?;
        let dir = self.repo_dir(repo).join("tags");
        let mut tags = BTreeMap::new();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(tags),
            Err(e) => return Err(RegistryError::io(format!("cannot list {}", dir.display()), e)),
        };
        for entry in entries.flatten() {
            if let Some(name) = entry.file_name().to_str().filter(|n| is_tag(n)) {
                tags.insert(name.to_string(), self.resolve_tag(repo, name)?);
            }
        }
        Ok(tags)
    }

    /// Unpack the image `digest` into the folder `dest`, which must not exist yet (an
    /// existing `dest` is taken as already unpacked: content-addressed folders never
    /// change). Atomic: the image is unpacked into a temporary sibling folder, checked
    /// against its digest, and renamed to `dest`; a reader never sees half a release.
    pub fn unpack(&self, digest: &Digest, dest: &Path) -> Result<()> {
        if dest.is_dir() {
            return Ok(());
        }
        let blob = self.blob_path(digest);
        let file = File::open(&blob).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => RegistryError::BlobNotFound { digest: digest.clone() },
            _ => RegistryError::io(format!("cannot read {}", blob.display()), e),
        })?;
        let parent = dest.parent().unwrap_or(Path::new("."));
        create_private_dirs(parent)?;
        let name = dest.file_name().and_then(|n| n.to_str()).unwrap_or("release");
        let tmp = parent.join(format!(".{name}.tmp-{}-{}", std::process::id(), uuid::Uuid::new_v4()));
        let result = (|| {
            archive::create_private_dir(&tmp)
                .map_err(|e| RegistryError::io(format!("cannot create {}", tmp.display()), e))?;
            let mut reader = HashingReader { inner: BufReader::new(file), hasher: sha2::Sha256::new() };
            archive::unpack(&mut reader, &tmp)?;
            // The tar reader stops at the end-of-archive marker; hash the padding after it too.
            io::copy(&mut reader, &mut io::sink()).map_err(|e| RegistryError::io("cannot read archive", e))?;
            let actual: Digest = format!("sha256:{}", hex::encode(reader.hasher.finalize())).parse().expect("digest");
            if &actual != digest {
                return Err(RegistryError::Corrupt { digest: digest.clone(), actual });
            }
            match fs::rename(&tmp, dest) {
                Ok(()) => Ok(()),
                // Someone else unpacked the same release meanwhile: theirs is as good.
                Err(_) if dest.is_dir() => Ok(()),
                Err(e) => Err(RegistryError::io(format!("cannot create {}", dest.display()), e)),
            }
        })();
        if tmp.exists() {
            let _ = fs::remove_dir_all(&tmp);
        }
        result
    }
}

impl Registry for LocalRegistry {
    fn verify(&self, repo: &str, digest: &Digest) -> Result<()> {
        check_names(repo, None)?;
        let linked = self.repo_dir(repo).join("digests").join(digest.hex()).is_file();
        if linked && self.blob_path(digest).is_file() {
            Ok(())
        } else {
            Err(RegistryError::DigestNotFound { repo: repo.to_string(), digest: digest.clone() })
        }
    }

    fn resolve_tag(&self, repo: &str, tag: &str) -> Result<Digest> {
        check_names(repo, Some(tag))?;
        let path = self.repo_dir(repo).join("tags").join(tag);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(RegistryError::TagNotFound { repo: repo.to_string(), tag: tag.to_string() })
            }
            Err(e) => return Err(RegistryError::io(format!("cannot read {}", path.display()), e)),
        };
        text.trim().parse().map_err(|_| {
            RegistryError::io(
                format!("cannot read {}", path.display()),
                io::Error::new(io::ErrorKind::InvalidData, "not a digest"),
            )
        })
    }
}

fn check_names(repo: &str, tag: Option<&str>) -> Result<()> {
    if !is_repository_name(repo) {
        return Err(RegistryError::InvalidRepository(repo.to_string()));
    }
    match tag {
        Some(t) if !is_tag(t) => Err(RegistryError::InvalidTag(t.to_string())),
        _ => Ok(()),
    }
}

fn create_private_dirs(dir: &Path) -> Result<()> {
    crate::private_files::create_dir_all(dir)
        .map_err(|e| RegistryError::io(format!("cannot create {}", dir.display()), e))
}

fn private_file(path: &Path) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| RegistryError::io(format!("cannot create {}", path.display()), e))
}

/// Write `text` to `path` atomically, private to its owner.
fn write_atomically(path: &Path, text: &str) -> Result<()> {
    crate::atomic_file::write(path, text.as_bytes(), crate::atomic_file::Mode::Private)
        .map_err(|e| RegistryError::io(format!("cannot write {}", path.display()), e))
}

/// Hashes what passes through to the archive file, so the digest costs no second read.
struct HashingWriter<W> {
    inner: W,
    hasher: sha2::Sha256,
    len: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Hashes what is read from a blob, so unpacking also checks it.
struct HashingReader<R> {
    inner: R,
    hasher: sha2::Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{symlink, PermissionsExt};

    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    fn sample(root: &Path) {
        write(root, "index.html", "<h1>hi</h1>\n");
        write(root, "static/app.js", "console.log(1)\n");
        write(root, "bin/run", "#!/bin/sh\necho run\n");
        fs::set_permissions(root.join("bin/run"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::create_dir_all(root.join("empty")).unwrap();
        symlink("../index.html", root.join("static/index.html")).unwrap();
    }

    fn registry() -> (tempfile::TempDir, LocalRegistry) {
        let dir = tempfile::tempdir().unwrap();
        let reg = LocalRegistry::new(dir.path().join("registry"));
        (dir, reg)
    }

    #[test]
    fn same_content_gives_the_same_digest_whatever_mtimes_modes_or_creation_order() {
        let (tmp, reg) = registry();
        let a = tmp.path().join("a");
        sample(&a);
        // The same content, created in another order, with other mtimes and a group-writable
        // non-executable file: none of that may change the digest.
        let b = tmp.path().join("b");
        fs::create_dir_all(b.join("empty")).unwrap();
        symlink("../index.html", {
            fs::create_dir_all(b.join("static")).unwrap();
            b.join("static/index.html")
        })
        .unwrap();
        write(&b, "bin/run", "#!/bin/sh\necho run\n");
        fs::set_permissions(b.join("bin/run"), fs::Permissions::from_mode(0o700)).unwrap();
        write(&b, "static/app.js", "console.log(1)\n");
        fs::set_permissions(b.join("static/app.js"), fs::Permissions::from_mode(0o664)).unwrap();
        write(&b, "index.html", "<h1>hi</h1>\n");
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        File::options().write(true).open(b.join("index.html")).unwrap().set_modified(old).unwrap();

        let pa = reg.push_dir(&a, "web", None).unwrap();
        let pb = reg.push_dir(&b, "web", None).unwrap();
        assert_eq!(pa.digest, pb.digest);
        assert!(pa.new && !pb.new);
        assert_eq!(pa.files, 3);

        write(&b, "index.html", "<h1>changed</h1>\n");
        assert_ne!(reg.push_dir(&b, "web", None).unwrap().digest, pa.digest);
        // The execute bit is content.
        fs::set_permissions(a.join("bin/run"), fs::Permissions::from_mode(0o644)).unwrap();
        assert_ne!(reg.push_dir(&a, "web", None).unwrap().digest, pa.digest);
    }

    #[test]
    fn a_tarball_of_a_folder_gives_the_folders_digest() {
        let (tmp, reg) = registry();
        let src = tmp.path().join("src");
        sample(&src);
        let from_dir = reg.push_dir(&src, "web", None).unwrap().digest;

        // A tarball in `tar` order (parents implicit, ./ prefix, real mtimes), plain and gzip.
        let mut b = tar::Builder::new(Vec::new());
        b.append_path_with_name(src.join("static/app.js"), "./static/app.js").unwrap();
        b.append_path_with_name(src.join("index.html"), "./index.html").unwrap();
        b.append_path_with_name(src.join("bin/run"), "./bin/run").unwrap();
        b.append_dir("./empty", src.join("empty")).unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "static/index.html", "../index.html").unwrap();
        let bytes = b.into_inner().unwrap();
        fs::write(tmp.path().join("img.tar"), &bytes).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&bytes).unwrap();
        fs::write(tmp.path().join("img.tgz"), gz.finish().unwrap()).unwrap();

        assert_eq!(reg.push_path(&tmp.path().join("img.tar"), "web", None).unwrap().digest, from_dir);
        assert_eq!(reg.push_path(&tmp.path().join("img.tgz"), "web", None).unwrap().digest, from_dir);
    }

    #[test]
    fn escaping_symlinks_and_paths_are_refused() {
        let (tmp, reg) = registry();
        let src = tmp.path().join("src");
        write(&src, "a", "x");
        symlink("/etc/passwd", src.join("passwd")).unwrap();
        let err = reg.push_dir(&src, "web", None).unwrap_err();
        assert!(matches!(&err, RegistryError::UnsafePath { path, .. } if path == "passwd"), "{err}");
        fs::remove_file(src.join("passwd")).unwrap();
        symlink("../../outside", src.join("up")).unwrap();
        assert!(matches!(reg.push_dir(&src, "web", None), Err(RegistryError::UnsafePath { .. })));

        // A tarball entry with `..` (written raw: the tar crate refuses to build one).
        let mut h = tar::Header::new_gnu();
        h.as_gnu_mut().unwrap().name[..9].copy_from_slice(b"../evil\0\0");
        h.set_size(1);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        let mut b = tar::Builder::new(Vec::new());
        b.append(&h, &b"x"[..]).unwrap();
        fs::write(tmp.path().join("evil.tar"), b.into_inner().unwrap()).unwrap();
        let err = reg.push_path(&tmp.path().join("evil.tar"), "web", None).unwrap_err();
        assert!(err.to_string().contains("climbs out"), "{err}");
    }

    #[test]
    fn verify_tags_and_unpack() {
        let (tmp, reg) = registry();
        let src = tmp.path().join("src");
        sample(&src);
        let pushed = reg.push_dir(&src, "shop/web", Some("v1")).unwrap();
        reg.verify("shop/web", &pushed.digest).unwrap();
        assert_eq!(reg.resolve_tag("shop/web", "v1").unwrap(), pushed.digest);
        assert_eq!(
            reg.tags("shop/web").unwrap().into_iter().collect::<Vec<_>>(),
            [("v1".into(), pushed.digest.clone())]
        );

        // The digest exists, but not in this repository: not found, naming both.
        let err = reg.verify("shop/api", &pushed.digest).unwrap_err();
        assert_eq!(err.to_string(), format!("repository `shop/api` has no image {}", pushed.digest));
        assert!(matches!(reg.resolve_tag("shop/web", "v2"), Err(RegistryError::TagNotFound { .. })));
        assert!(matches!(reg.verify("Bad Name", &pushed.digest), Err(RegistryError::InvalidRepository(_))));

        let blob_mode = fs::metadata(reg.blob_path(&pushed.digest)).unwrap().permissions().mode();
        assert_eq!(blob_mode & 0o777, 0o600);

        let dest = tmp.path().join("releases").join(pushed.digest.as_str());
        reg.unpack(&pushed.digest, &dest).unwrap();
        assert_eq!(fs::read_to_string(dest.join("index.html")).unwrap(), "<h1>hi</h1>\n");
        assert_eq!(fs::read_to_string(dest.join("static/index.html")).unwrap(), "<h1>hi</h1>\n");
        assert_eq!(fs::read_link(dest.join("static/index.html")).unwrap(), Path::new("../index.html"));
        assert_eq!(fs::metadata(dest.join("bin/run")).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(fs::metadata(dest.join("index.html")).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(dest.join("empty").is_dir());
        // Nothing left behind but the release.
        assert_eq!(fs::read_dir(dest.parent().unwrap()).unwrap().count(), 1);
        // Unpacking again is a no-op.
        reg.unpack(&pushed.digest, &dest).unwrap();
    }

    #[test]
    fn a_corrupt_blob_is_not_unpacked() {
        let (tmp, reg) = registry();
        let src = tmp.path().join("src");
        sample(&src);
        let pushed = reg.push_dir(&src, "web", None).unwrap();
        let blob = reg.blob_path(&pushed.digest);
        let mut bytes = fs::read(&blob).unwrap();
        let at = bytes.windows(2).position(|w| w == b"hi").unwrap();
        bytes[at] = b'H';
        fs::write(&blob, bytes).unwrap();
        let dest = tmp.path().join("out");
        assert!(matches!(reg.unpack(&pushed.digest, &dest), Err(RegistryError::Corrupt { .. })));
        assert!(!dest.exists());
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 2, "no temporary folder left behind");
    }
}
