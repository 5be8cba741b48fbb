//! Image layers: deterministic tar archives written from a folder, and layers applied to a
//! folder (the files a process task runs in).
//!
//! An image's digest is the sha256 of its manifest, which names its layer by the sha256 of
//! the layer's bytes, so a layer ferry writes must depend on the *content* only — never on mtimes, owners, umask or the order `readdir` happens to return.
//! A [`Tree`] is the content (relative path → directory, file or symlink), gathered from a
//! folder or from a user's tarball; [`Tree::write`] serialises it one way only:
//!
//! - entries sorted by path (bytewise, so a directory always precedes its contents), with
//!   every parent directory present, whether or not the source listed it;
//! - mtime 0, uid/gid 0, no owner names;
//! - mode 0755 for directories and for files with any execute bit, 0644 for other files,
//!   0777 for symlinks (the mode of a symlink means nothing on Unix);
//! - GNU headers (long names use the GNU extension).
//!
//! Symlinks are kept as symlinks when they provably stay inside the image: a relative target
//! that climbs (`..`) only at its start, and no further than the link's own depth. Anything
//! else — an absolute target, one that escapes, or one with `..` after a normal component
//! (which could climb out through another symlink) — is an error, as are hard links to
//! missing files, devices, FIFOs and sockets. Names must be UTF-8.
//!
//! [`Applier`] reads layers back into a folder, one over the other with OCI whiteouts, under
//! the same checks, so no layer — ferry's or anyone's — can write outside its destination.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use super::{RegistryError, Result};

/// Where a file's bytes come from: read lazily from disk (folders can be large), or held in
/// memory (a tarball's entries, which must be sorted before they are written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FileSource {
    Path(PathBuf),
    Bytes(Vec<u8>),
}

/// One entry of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node {
    Dir,
    File { source: FileSource, executable: bool },
    Symlink(String),
}

/// What [`Tree::from_dir_except`] leaves out.
struct Skip<'a> {
    skip: &'a dyn Fn(&str) -> bool,
    walk_skipped: bool,
}

/// The content of an image: relative, `/`-separated paths (no root entry) to entries.
#[derive(Debug, Default)]
pub(crate) struct Tree {
    entries: BTreeMap<String, Node>,
}

impl Tree {
    /// Gather a folder, without following symlinks below it.
    pub fn from_dir(root: &Path) -> Result<Tree> {
        Tree::from_dir_except(root, &|_| false, false)
    }

    /// Gather a folder without what `skip` names (by `/`-separated path under `root`); a
    /// skipped folder is still walked when `walk_skipped` (something in it may be kept).
    pub fn from_dir_except(root: &Path, skip: &dyn Fn(&str) -> bool, walk_skipped: bool) -> Result<Tree> {
        let meta = fs::metadata(root).map_err(|e| RegistryError::io(format!("cannot read {}", root.display()), e))?;
        if !meta.is_dir() {
            return Err(RegistryError::UnsafePath {
                path: root.display().to_string(),
                reason: "is not a folder".into(),
            });
        }
        let mut tree = Tree::default();
        tree.walk(root, "", &Skip { skip, walk_skipped })?;
        Ok(tree)
    }

    fn walk(&mut self, dir: &Path, prefix: &str, filter: &Skip) -> Result<()> {
        let read = fs::read_dir(dir).map_err(|e| RegistryError::io(format!("cannot list {}", dir.display()), e))?;
        for entry in read {
            let entry = entry.map_err(|e| RegistryError::io(format!("cannot list {}", dir.display()), e))?;
            let path = entry.path();
            let name = entry.file_name().into_string().map_err(|_| RegistryError::UnsafePath {
                path: path.display().to_string(),
                reason: "its name is not UTF-8".into(),
            })?;
            let rel = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
            let meta = fs::symlink_metadata(&path)
                .map_err(|e| RegistryError::io(format!("cannot read {}", path.display()), e))?;
            let ft = meta.file_type();
            let skipped = (filter.skip)(&rel);
            if ft.is_dir() {
                if !skipped {
                    self.insert(&rel, Node::Dir)?;
                }
                if !skipped || filter.walk_skipped {
                    self.walk(&path, &rel, filter)?;
                }
            } else if skipped {
                continue;
            } else if ft.is_file() {
                let executable = meta.permissions().mode() & 0o111 != 0;
                self.insert(&rel, Node::File { source: FileSource::Path(path), executable })?;
            } else if ft.is_symlink() {
                let target = fs::read_link(&path)
                    .map_err(|e| RegistryError::io(format!("cannot read link {}", path.display()), e))?;
                let target = target.into_os_string().into_string().map_err(|_| RegistryError::UnsafePath {
                    path: rel.clone(),
                    reason: "its symlink target is not UTF-8".into(),
                })?;
                self.insert(&rel, Node::Symlink(target))?;
            } else {
                return Err(RegistryError::UnsafePath {
                    path: rel,
                    reason: "is not a file, folder or symlink (devices, FIFOs and sockets cannot be stored)".into(),
                });
            }
        }
        Ok(())
    }

    /// Gather a tar archive (plain or gzip-compressed: detected by its magic bytes).
    /// Entries may come in any order; a later entry for the same path replaces an earlier
    /// one, as `tar -x` would; hard links become copies of the file they name.
    pub fn from_tarball(mut reader: impl Read) -> Result<Tree> {
        let mut head = [0u8; 2];
        let n = read_up_to(&mut reader, &mut head).map_err(|e| RegistryError::io("cannot read tarball", e))?;
        let chained = io::Cursor::new(head[..n].to_vec()).chain(reader);
        if head[..n] == [0x1f, 0x8b] {
            Tree::from_tar(flate2::read::GzDecoder::new(chained))
        } else {
            Tree::from_tar(chained)
        }
    }

    fn from_tar(reader: impl Read) -> Result<Tree> {
        let bad = |e| RegistryError::io("cannot read tarball", e);
        let mut archive = tar::Archive::new(reader);
        let mut tree = Tree::default();
        for entry in archive.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            let raw = entry.path().map_err(bad)?.into_owned();
            let Some(rel) = normalise(&raw)? else { continue };
            let kind = entry.header().entry_type();
            let node = match kind {
                tar::EntryType::Directory => Node::Dir,
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let executable = entry.header().mode().map_err(bad)? & 0o111 != 0;
                    let mut data = Vec::with_capacity(entry.size() as usize);
                    entry.read_to_end(&mut data).map_err(bad)?;
                    Node::File { source: FileSource::Bytes(data), executable }
                }
                tar::EntryType::Symlink => Node::Symlink(link_target(&entry, &rel)?),
                tar::EntryType::Link => {
                    let target = link_target(&entry, &rel)?;
                    let target = normalise(Path::new(&target))?.unwrap_or_default();
                    match tree.entries.get(&target) {
                        Some(node @ Node::File { .. }) => node.clone(),
                        _ => {
                            return Err(RegistryError::UnsafePath {
                                path: rel,
                                reason: format!(
                                    "is a hard link to `{target}`, which is not a file earlier in the archive"
                                ),
                            })
                        }
                    }
                }
                // Extended headers carry metadata of the next entry (long names, which
                // `entry.path()` has already applied); nothing to store.
                tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => continue,
                other => {
                    return Err(RegistryError::UnsafePath {
                        path: rel,
                        reason: format!("has tar entry type {other:?}, which an image cannot hold"),
                    })
                }
            };
            tree.insert(&rel, node)?;
        }
        Ok(tree)
    }

    /// Add an entry, creating its parent directories; refuses a path under a non-directory
    /// and unsafe symlinks.
    fn insert(&mut self, rel: &str, node: Node) -> Result<()> {
        if let Node::Symlink(target) = &node {
            check_link(rel, target)?;
        }
        let mut parent = String::new();
        for part in rel.split('/').collect::<Vec<_>>().split_last().map(|(_, p)| p).unwrap_or_default() {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(part);
            match self.entries.get(&parent) {
                None => {
                    self.entries.insert(parent.clone(), Node::Dir);
                }
                Some(Node::Dir) => {}
                Some(_) => {
                    return Err(RegistryError::UnsafePath {
                        path: rel.to_string(),
                        reason: format!("is inside `{parent}`, which is not a folder"),
                    })
                }
            }
        }
        match (self.entries.get(rel), &node) {
            (Some(Node::Dir), Node::Dir) => {}
            (Some(Node::Dir), _)
                if self.entries.range(format!("{rel}/")..).next().is_some_and(|(k, _)| is_under(k, rel)) =>
            {
                return Err(RegistryError::UnsafePath {
                    path: rel.to_string(),
                    reason: "is both a folder with content and a file or symlink".into(),
                })
            }
            _ => {
                self.entries.insert(rel.to_string(), node);
            }
        }
        Ok(())
    }

    /// Number of regular files.
    pub fn file_count(&self) -> usize {
        self.entries.values().filter(|n| matches!(n, Node::File { .. })).count()
    }

    /// Write the archive in its one canonical form.
    pub fn write<W: Write>(&self, out: W) -> Result<W> {
        let bad = |e| RegistryError::io("cannot write archive", e);
        let mut builder = tar::Builder::new(out);
        for (path, node) in &self.entries {
            let mut header = tar::Header::new_gnu();
            header.set_mtime(0);
            header.set_uid(0);
            header.set_gid(0);
            match node {
                Node::Dir => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(0o755);
                    header.set_size(0);
                    builder.append_data(&mut header, format!("{path}/"), io::empty()).map_err(bad)?;
                }
                Node::File { source, executable } => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(if *executable { 0o755 } else { 0o644 });
                    match source {
                        FileSource::Bytes(data) => {
                            header.set_size(data.len() as u64);
                            builder.append_data(&mut header, path, data.as_slice()).map_err(bad)?;
                        }
                        FileSource::Path(file) => {
                            let f = File::open(file)
                                .map_err(|e| RegistryError::io(format!("cannot read {}", file.display()), e))?;
                            let len = f
                                .metadata()
                                .map_err(|e| RegistryError::io(format!("cannot read {}", file.display()), e))?
                                .len();
                            header.set_size(len);
                            // The header's size must stay true if the file changes meanwhile:
                            // growth is cut off, and shrinking is an error, not a short entry.
                            let exact = ExactReader { inner: f.take(len), remaining: len };
                            builder
                                .append_data(&mut header, path, exact)
                                .map_err(|e| RegistryError::io(format!("cannot read {}", file.display()), e))?;
                        }
                    }
                }
                Node::Symlink(target) => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_mode(0o777);
                    header.set_size(0);
                    builder.append_link(&mut header, path, target).map_err(bad)?;
                }
            }
        }
        builder.into_inner().map_err(bad)
    }
}

/// Reads exactly `remaining` bytes, failing if the source ends early.
struct ExactReader<R> {
    inner: R,
    remaining: u64,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.remaining > 0 && !buf.is_empty() {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the file shrank while it was being archived"));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn is_under(path: &str, dir: &str) -> bool {
    path.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/'))
}

fn link_target<R: Read>(entry: &tar::Entry<'_, R>, rel: &str) -> Result<String> {
    let target = entry.link_name().map_err(|e| RegistryError::io("cannot read tarball", e))?;
    target.and_then(|t| t.to_str().map(str::to_string)).ok_or_else(|| RegistryError::UnsafePath {
        path: rel.to_string(),
        reason: "is a link without a UTF-8 target".into(),
    })
}

/// An archive path as a relative `/`-separated path; `None` for the root itself (`./`).
/// Absolute paths and `..` are refused: they would write outside the destination.
pub(crate) fn normalise(raw: &Path) -> Result<Option<String>> {
    let unsafe_path =
        |reason: &str| RegistryError::UnsafePath { path: raw.display().to_string(), reason: reason.into() };
    let mut parts = Vec::new();
    for c in raw.components() {
        match c {
            Component::CurDir => {}
            Component::Normal(s) => parts.push(s.to_str().ok_or_else(|| unsafe_path("its name is not UTF-8"))?),
            Component::ParentDir => return Err(unsafe_path("climbs out of the image with `..`")),
            Component::RootDir | Component::Prefix(_) => return Err(unsafe_path("is an absolute path")),
        }
    }
    Ok(if parts.is_empty() { None } else { Some(parts.join("/")) })
}

/// Whether a symlink at `rel` pointing at `target` provably stays inside the image: relative,
/// `..` only at the start and no deeper than the link's own folder. `..` after a normal
/// component is refused because that component may itself be a symlink, which `..` would
/// then climb out of.
pub(crate) fn check_link(rel: &str, target: &str) -> Result<()> {
    let refuse = |reason: String| Err(RegistryError::UnsafePath { path: rel.to_string(), reason });
    if target.is_empty() {
        return refuse("is a symlink with an empty target".into());
    }
    if target.starts_with('/') {
        return refuse(format!("is a symlink to the absolute path `{target}`, outside the image"));
    }
    let depth = rel.matches('/').count();
    let mut climbs = 0;
    let mut descended = false;
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." if descended => {
                return refuse(format!("is a symlink to `{target}`, which climbs (`..`) after descending"))
            }
            ".." => climbs += 1,
            _ => descended = true,
        }
    }
    if climbs > depth {
        return refuse(format!("is a symlink to `{target}`, outside the image"));
    }
    Ok(())
}

/// Applies layers, bottom first, to a folder (an existing, empty one). Files are created
/// `0600` (`0700` when executable) and folders `0700`: a release belongs to the user running
/// it. Every path is checked again, and every parent must be a folder this applier created,
/// so no entry can land outside `dest` or write through a symlink. A later layer replaces
/// what an earlier one put at the same path; `.wh.NAME` deletes `NAME` and `.wh..wh..opq`
/// empties its folder, as the OCI layer format says.
pub(crate) struct Applier<'a> {
    dest: &'a Path,
    /// Folders created so far (relative; `""` is `dest`).
    dirs: BTreeSet<String>,
}

impl<'a> Applier<'a> {
    pub fn new(dest: &'a Path) -> Self {
        Applier { dest, dirs: BTreeSet::from([String::new()]) }
    }

    /// Apply one uncompressed layer.
    pub fn apply(&mut self, reader: impl Read) -> Result<()> {
        let bad = |e| RegistryError::io("cannot read layer", e);
        let mut archive = tar::Archive::new(reader);
        for entry in archive.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            let raw = entry.path().map_err(bad)?.into_owned();
            let Some(rel) = normalise(&raw)? else { continue };
            let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel.as_str()));
            let (parent, name) = (parent.to_string(), name.to_string());
            self.make_parents(&rel, &parent)?;
            if name == ".wh..wh..opq" {
                let dir = self.dest.join(&parent);
                let entries =
                    fs::read_dir(&dir).map_err(|e| RegistryError::io(format!("cannot list {}", dir.display()), e))?;
                for child in entries.flatten() {
                    let child_rel = child.file_name().to_str().map(|n| join(&parent, n)).unwrap_or_default();
                    self.remove(&child_rel)?;
                }
                continue;
            }
            if let Some(hidden) = name.strip_prefix(".wh.") {
                self.remove(&join(&parent, hidden))?;
                continue;
            }
            let target = self.dest.join(&rel);
            let write_err = |e| RegistryError::io(format!("cannot write {}", target.display()), e);
            match entry.header().entry_type() {
                tar::EntryType::Directory => {
                    if !self.dirs.contains(&rel) {
                        self.remove(&rel)?;
                        create_private_dir(&target).map_err(write_err)?;
                        self.dirs.insert(rel);
                    }
                }
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let executable = entry.header().mode().map_err(bad)? & 0o111 != 0;
                    self.remove(&rel)?;
                    // `create_new` refuses to follow a symlink planted at this path.
                    let mut f = OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(if executable { 0o700 } else { 0o600 })
                        .open(&target)
                        .map_err(write_err)?;
                    io::copy(&mut entry, &mut f).map_err(write_err)?;
                }
                tar::EntryType::Symlink => {
                    let link = link_target(&entry, &rel)?;
                    check_link(&rel, &link)?;
                    self.remove(&rel)?;
                    std::os::unix::fs::symlink(&link, &target).map_err(write_err)?;
                }
                tar::EntryType::Link => {
                    let link = link_target(&entry, &rel)?;
                    let source = normalise(Path::new(&link))?.unwrap_or_default();
                    let source_parent = source.rsplit_once('/').map_or("", |(p, _)| p);
                    let source_path = self.dest.join(&source);
                    let is_file = self.dirs.contains(source_parent)
                        && fs::symlink_metadata(&source_path).is_ok_and(|m| m.file_type().is_file());
                    if !is_file {
                        return Err(RegistryError::UnsafePath {
                            path: rel,
                            reason: format!("is a hard link to `{link}`, which is not a file earlier in the image"),
                        });
                    }
                    self.remove(&rel)?;
                    fs::hard_link(&source_path, &target).map_err(write_err)?;
                }
                tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => {}
                other => {
                    return Err(RegistryError::UnsafePath {
                        path: rel,
                        reason: format!("has tar entry type {other:?}, which ferry cannot unpack"),
                    })
                }
            }
        }
        Ok(())
    }

    /// Create the folders above `rel` that no entry listed (layers may leave them out).
    fn make_parents(&mut self, rel: &str, parent: &str) -> Result<()> {
        if self.dirs.contains(parent) {
            return Ok(());
        }
        let mut sofar = String::new();
        for part in parent.split('/') {
            sofar = join(&sofar, part);
            if self.dirs.contains(&sofar) {
                continue;
            }
            let path = self.dest.join(&sofar);
            match fs::symlink_metadata(&path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    create_private_dir(&path)
                        .map_err(|e| RegistryError::io(format!("cannot create {}", path.display()), e))?;
                    self.dirs.insert(sofar.clone());
                }
                _ => {
                    return Err(RegistryError::UnsafePath {
                        path: rel.to_string(),
                        reason: format!("is inside `{sofar}`, which is not a folder"),
                    })
                }
            }
        }
        Ok(())
    }

    /// Remove whatever is at `rel` (nothing there is fine), without following symlinks.
    fn remove(&mut self, rel: &str) -> Result<()> {
        if rel.is_empty() {
            return Ok(());
        }
        let path = self.dest.join(rel);
        let gone = |e: io::Error| RegistryError::io(format!("cannot remove {}", path.display()), e);
        match fs::symlink_metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(gone(e)),
            Ok(m) if m.file_type().is_dir() => {
                fs::remove_dir_all(&path).map_err(gone)?;
                let under = format!("{rel}/");
                self.dirs.retain(|d| d != rel && !d.starts_with(&under));
                Ok(())
            }
            Ok(_) => fs::remove_file(&path).map_err(gone),
        }
    }
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}

/// `mkdir` with mode 0700 (whatever the umask).
pub(crate) fn create_private_dir(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new().mode(0o700).create(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_must_stay_inside() {
        assert!(check_link("a", "b").is_ok());
        assert!(check_link("dir/a", "../b").is_ok());
        assert!(check_link("dir/sub/a", "../../b/c").is_ok());
        assert!(check_link("a", "../b").is_err());
        assert!(check_link("a", "/etc/passwd").is_err());
        assert!(check_link("dir/a", "x/../../b").is_err());
        assert!(check_link("a", "").is_err());
    }

    #[test]
    fn paths_are_normalised_and_escapes_refused() {
        assert_eq!(normalise(Path::new("./a/./b")).unwrap(), Some("a/b".into()));
        assert_eq!(normalise(Path::new("./")).unwrap(), None);
        assert!(normalise(Path::new("../a")).is_err());
        assert!(normalise(Path::new("/a")).is_err());
        assert!(normalise(Path::new("a/../../b")).is_err());
    }

    #[test]
    fn parents_are_added_and_conflicts_refused() {
        let mut t = Tree::default();
        let file = || Node::File { source: FileSource::Bytes(b"x".to_vec()), executable: false };
        t.insert("a/b/c", file()).unwrap();
        assert_eq!(t.entries.keys().collect::<Vec<_>>(), ["a", "a/b", "a/b/c"]);
        assert!(t.insert("a/b/c/d", file()).is_err(), "a file cannot hold entries");
        assert!(t.insert("a/b", file()).is_err(), "a folder with content cannot become a file");
        t.insert("a/b/c", file()).unwrap();
    }

    fn layer(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(if *kind == tar::EntryType::Directory { 0o755 } else { 0o644 });
            match kind {
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    h.set_size(0);
                    b.append_link(&mut h, path, data).unwrap();
                }
                _ => {
                    h.set_size(data.len() as u64);
                    b.append_data(&mut h, path, data.as_bytes()).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn layers_stack_with_whiteouts_and_replacements() {
        use tar::EntryType::{Directory, Link, Regular, Symlink};
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("out");
        create_private_dir(&dest).unwrap();
        let mut applier = Applier::new(&dest);
        applier
            .apply(
                layer(&[
                    ("etc/", Directory, ""),
                    ("etc/a", Regular, "a1"),
                    ("etc/b", Regular, "b1"),
                    ("var/log/x", Regular, "x"),
                    ("link", Symlink, "etc/a"),
                ])
                .as_slice(),
            )
            .unwrap();
        applier
            .apply(
                layer(&[
                    ("etc/a", Regular, "a2"),
                    ("etc/.wh.b", Regular, ""),
                    ("var/log/.wh..wh..opq", Regular, ""),
                    ("var/log/y", Regular, "y"),
                    ("hard", Link, "etc/a"),
                ])
                .as_slice(),
            )
            .unwrap();
        assert_eq!(fs::read_to_string(dest.join("etc/a")).unwrap(), "a2");
        assert!(!dest.join("etc/b").exists());
        assert!(!dest.join("var/log/x").exists());
        assert_eq!(fs::read_to_string(dest.join("var/log/y")).unwrap(), "y");
        assert_eq!(fs::read_to_string(dest.join("link")).unwrap(), "a2");
        assert_eq!(fs::read_to_string(dest.join("hard")).unwrap(), "a2");
    }

    #[test]
    fn no_layer_writes_through_a_symlink_or_outside() {
        use tar::EntryType::{Regular, Symlink};
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("out");
        create_private_dir(&dest).unwrap();
        let mut applier = Applier::new(&dest);
        // A symlink to a folder inside, then a file "under" it: refused, never followed.
        applier.apply(layer(&[("real/f", Regular, "x"), ("via", Symlink, "real")]).as_slice()).unwrap();
        let err = applier.apply(layer(&[("via/evil", Regular, "x")]).as_slice()).unwrap_err();
        assert!(err.to_string().contains("is inside `via`, which is not a folder"), "{err}");
        assert!(!dest.join("real/evil").exists());
        let err = applier.apply(layer(&[("up", Symlink, "../../etc")]).as_slice()).unwrap_err();
        assert!(err.to_string().contains("outside the image"), "{err}");
    }
}
