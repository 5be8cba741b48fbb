//! Making images to push: a single-layer OCI image from a folder or a tarball of files
//! (no Docker needed), or the image held in a `docker save` / OCI-layout archive.
//!
//! A folder's image is deterministic: the layer is `layer`'s canonical tar, gzip-compressed
//! with fixed headers, and the config has no timestamps, so the same files and settings give
//! the same manifest digest on every machine. An imported archive keeps its config (so its
//! image id stays) and, for an OCI layout, its manifest (so its digest stays too).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use serde_json::{json, Value};
use sha2::Digest as _;

use super::layer::Tree;
use super::{RegistryError, Result};
use crate::config::Digest;

/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker image manifest (v2, schema 2) media type.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker manifest list media type.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// One blob: its digest, media type and bytes.
#[derive(Debug, Clone)]
pub struct Blob {
    pub digest: Digest,
    pub media_type: String,
    pub data: Vec<u8>,
}

impl Blob {
    fn new(media_type: &str, data: Vec<u8>) -> Blob {
        Blob { digest: sha256(&data), media_type: media_type.to_string(), data }
    }
}

/// An image ready to push: manifest bytes (pushed exactly as they are, so the digest is
/// theirs), config and layers.
#[derive(Debug, Clone)]
pub struct ImageBlobs {
    pub manifest: Vec<u8>,
    pub manifest_media_type: String,
    pub config: Blob,
    pub layers: Vec<Blob>,
    /// Regular files in the image, when ferry made it from files.
    pub files: Option<usize>,
}

impl ImageBlobs {
    /// The manifest digest: what `docker inspect`, the registry and stage files name.
    pub fn digest(&self) -> Digest {
        sha256(&self.manifest)
    }

    /// Bytes of the manifest, config and layers.
    pub fn size(&self) -> u64 {
        (self.manifest.len() + self.config.data.len() + self.layers.iter().map(|l| l.data.len()).sum::<usize>()) as u64
    }
}

/// How a folder's image runs: its OCI config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunConfig {
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    /// `KEY=VALUE`.
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub labels: BTreeMap<String, String>,
}

impl RunConfig {
    fn is_empty(&self) -> bool {
        *self == RunConfig::default()
    }
}

/// The image of `path`: a folder or a tarball of files becomes a single-layer image run as
/// `run` says; a `docker save` or OCI-layout archive is imported as it is (`run` must then
/// be empty: the archive's config says how it runs).
pub fn from_path(path: &Path, run: &RunConfig) -> Result<ImageBlobs> {
    if path.is_dir() {
        return from_tree(&Tree::from_dir(path)?, run);
    }
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| RegistryError::io(format!("cannot read {}", path.display()), e))?;
    let bytes = gunzip_if_gzip(bytes).map_err(|e| RegistryError::io(format!("cannot read {}", path.display()), e))?;
    let files = archive_files(&bytes).map_err(|e| RegistryError::io(format!("cannot read {}", path.display()), e))?;
    if !is_image_archive(&files) {
        return from_tree(&Tree::from_tarball(bytes.as_slice())?, run);
    }
    if !run.is_empty() {
        return Err(RegistryError::NotAnImage {
            path: path.display().to_string(),
            reason: "is an image archive, whose own config says how it runs: --entrypoint, --cmd, --env and \
                     --workdir apply to folders"
                .into(),
        });
    }
    import(&files, &path.display().to_string())
}

/// The image of a `docker save` or OCI-layout archive held in memory (`what` names it in
/// errors).
pub fn from_archive_bytes(bytes: Vec<u8>, what: &str) -> Result<ImageBlobs> {
    let bytes = gunzip_if_gzip(bytes).map_err(|e| RegistryError::io(format!("cannot read {what}"), e))?;
    let files = archive_files(&bytes).map_err(|e| RegistryError::io(format!("cannot read {what}"), e))?;
    if !is_image_archive(&files) {
        return Err(RegistryError::NotAnImage { path: what.to_string(), reason: "is not an image archive".into() });
    }
    import(&files, what)
}

fn is_image_archive(files: &BTreeMap<String, Vec<u8>>) -> bool {
    files.contains_key("manifest.json") || files.contains_key("oci-layout")
}

fn import(files: &BTreeMap<String, Vec<u8>>, what: &str) -> Result<ImageBlobs> {
    let not_image = |reason: String| RegistryError::NotAnImage { path: what.to_string(), reason };
    if files.contains_key("index.json") {
        from_oci_layout(files).map_err(not_image)
    } else {
        from_docker_save(files).map_err(not_image)
    }
}

fn gunzip_if_gzip(bytes: Vec<u8>) -> std::io::Result<Vec<u8>> {
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok(bytes);
    }
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(bytes.as_slice()).read_to_end(&mut plain)?;
    Ok(plain)
}

/// A single-layer image of `tree`.
fn from_tree(tree: &Tree, run: &RunConfig) -> Result<ImageBlobs> {
    let tar = tree.write(Vec::new())?;
    let diff_id = sha256(&tar);
    let layer = Blob::new(OCI_LAYER_GZIP, gzip(&tar));
    let mut config = serde_json::Map::new();
    if let Some(e) = &run.entrypoint {
        config.insert("Entrypoint".into(), json!(e));
    }
    if let Some(c) = &run.cmd {
        config.insert("Cmd".into(), json!(c));
    }
    if !run.env.is_empty() {
        config.insert("Env".into(), json!(run.env));
    }
    if let Some(w) = &run.workdir {
        config.insert("WorkingDir".into(), json!(w));
    }
    if !run.labels.is_empty() {
        config.insert("Labels".into(), json!(run.labels));
    }
    let config = json!({
        "architecture": oci_architecture(),
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id.as_str()]},
        "history": [{"created_by": "ferry image push"}],
    });
    let config = Blob::new(OCI_CONFIG, serde_json::to_vec(&config).expect("JSON"));
    let mut image = assemble(config, vec![layer]);
    image.files = Some(tree.file_count());
    Ok(image)
}

/// An OCI manifest for `config` and `layers`.
fn assemble(config: Blob, layers: Vec<Blob>) -> ImageBlobs {
    let descriptor = |b: &Blob| json!({"mediaType": b.media_type, "digest": b.digest.as_str(), "size": b.data.len()});
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(&config),
        "layers": layers.iter().map(descriptor).collect::<Vec<_>>(),
    });
    ImageBlobs {
        manifest: serde_json::to_vec(&manifest).expect("JSON"),
        manifest_media_type: OCI_MANIFEST.to_string(),
        config,
        layers,
        files: None,
    }
}

/// The regular files of a tar archive, by normalised path.
fn archive_files(tar_bytes: &[u8]) -> std::io::Result<BTreeMap<String, Vec<u8>>> {
    let mut files = BTreeMap::new();
    let mut archive = tar::Archive::new(tar_bytes);
    for entry in archive.entries()? {
        let mut entry = entry?;
        if !matches!(entry.header().entry_type(), tar::EntryType::Regular | tar::EntryType::Continuous) {
            continue;
        }
        let path = entry.path()?.to_string_lossy().trim_start_matches("./").to_string();
        let mut data = Vec::with_capacity(entry.size() as usize);
        entry.read_to_end(&mut data)?;
        files.insert(path, data);
    }
    Ok(files)
}

/// The one image of an OCI layout (`index.json`, `blobs/sha256/…`), manifest kept as is.
fn from_oci_layout(files: &BTreeMap<String, Vec<u8>>) -> std::result::Result<ImageBlobs, String> {
    let blob = |digest: &str| -> std::result::Result<Vec<u8>, String> {
        let hex =
            digest.strip_prefix("sha256:").ok_or_else(|| format!("names blob `{digest}`, which is not sha256"))?;
        let data = files.get(&format!("blobs/sha256/{hex}")).ok_or_else(|| format!("lacks blob {digest}"))?;
        if sha256(data).as_str() != digest {
            return Err(format!("has blob {digest}, whose content does not match its digest"));
        }
        Ok(data.clone())
    };
    let json = |bytes: &[u8], what: &str| -> std::result::Result<Value, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("has an unreadable {what}: {e}"))
    };
    let mut index = json(&files["index.json"], "index.json")?;
    // An index may point at a nested index (Docker's own `docker save` does): follow it to
    // the one image manifest.
    for _ in 0..4 {
        let manifests = index["manifests"].as_array().cloned().unwrap_or_default();
        let [entry] = manifests.as_slice() else {
            return Err(format!("holds {} images; save exactly one", manifests.len()));
        };
        let digest = entry["digest"].as_str().ok_or("has a manifest entry without a digest")?;
        let bytes = blob(digest)?;
        let manifest = json(&bytes, "manifest")?;
        let media_type = manifest["mediaType"].as_str().or(entry["mediaType"].as_str()).unwrap_or(OCI_MANIFEST);
        if media_type == OCI_INDEX || media_type == DOCKER_LIST {
            index = manifest;
            continue;
        }
        let config_digest = manifest["config"]["digest"].as_str().ok_or("has a manifest without a config")?;
        let config = Blob {
            digest: config_digest.parse().map_err(|e| format!("{e}"))?,
            media_type: manifest["config"]["mediaType"].as_str().unwrap_or(OCI_CONFIG).to_string(),
            data: blob(config_digest)?,
        };
        let mut layers = Vec::new();
        for l in manifest["layers"].as_array().cloned().unwrap_or_default() {
            let d = l["digest"].as_str().ok_or("has a layer without a digest")?;
            layers.push(Blob {
                digest: d.parse().map_err(|e| format!("{e}"))?,
                media_type: l["mediaType"].as_str().unwrap_or(OCI_LAYER_GZIP).to_string(),
                data: blob(d)?,
            });
        }
        return Ok(ImageBlobs {
            manifest: bytes,
            manifest_media_type: media_type.to_string(),
            config,
            layers,
            files: None,
        });
    }
    Err("nests image indexes too deeply".into())
}

/// The one image of a `docker save` archive (`manifest.json`, config and layer files): its
/// config kept, its layers gzip-compressed into an OCI manifest.
fn from_docker_save(files: &BTreeMap<String, Vec<u8>>) -> std::result::Result<ImageBlobs, String> {
    let manifest: Value =
        serde_json::from_slice(&files["manifest.json"]).map_err(|e| format!("has an unreadable manifest.json: {e}"))?;
    let images = manifest.as_array().cloned().unwrap_or_default();
    let [image] = images.as_slice() else {
        return Err(format!("holds {} images; save exactly one", images.len()));
    };
    let file = |name: &str| files.get(name).cloned().ok_or_else(|| format!("lacks {name}, which manifest.json names"));
    let config = Blob::new(OCI_CONFIG, file(image["Config"].as_str().ok_or("names no config in manifest.json")?)?);
    let mut layers = Vec::new();
    for l in image["Layers"].as_array().cloned().unwrap_or_default() {
        let data = file(l.as_str().ok_or("has a layer that is not a file name")?)?;
        let data = if data.starts_with(&[0x1f, 0x8b]) { data } else { gzip(&data) };
        layers.push(Blob::new(OCI_LAYER_GZIP, data));
    }
    Ok(assemble(config, layers))
}

/// gzip with fixed headers (no name, mtime 0): the same bytes give the same blob.
fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::GzBuilder::new().mtime(0).write(Vec::new(), flate2::Compression::default());
    gz.write_all(data).expect("writing to memory");
    gz.finish().expect("writing to memory")
}

/// The sha256 digest of `data`.
pub fn sha256(data: &[u8]) -> Digest {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data))).parse().expect("sha256 hex is a digest")
}

/// This machine's architecture as OCI names it.
fn oci_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn a_folder_gives_one_deterministic_layer_and_its_config() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("index.html"), "hi\n").unwrap();
        let run = RunConfig {
            cmd: Some(vec!["/bin/serve".into()]),
            env: vec!["A=1".into()],
            workdir: Some("/".into()),
            ..RunConfig::default()
        };
        let a = from_path(dir.path(), &run).unwrap();
        let b = from_path(dir.path(), &run).unwrap();
        assert_eq!(a.digest(), b.digest());
        assert_eq!(a.layers.len(), 1);
        assert_eq!(a.files, Some(1));
        let config: Value = serde_json::from_slice(&a.config.data).unwrap();
        assert_eq!(config["config"]["Cmd"], json!(["/bin/serve"]));
        assert_eq!(config["config"]["Env"], json!(["A=1"]));
        let manifest: Value = serde_json::from_slice(&a.manifest).unwrap();
        assert_eq!(manifest["config"]["digest"], json!(a.config.digest.as_str()));
        assert_eq!(manifest["layers"][0]["digest"], json!(a.layers[0].digest.as_str()));
        // Another setting is another image.
        assert_ne!(from_path(dir.path(), &RunConfig::default()).unwrap().digest(), a.digest());
    }

    #[test]
    fn a_docker_save_archive_keeps_its_config_and_an_oci_layout_its_manifest() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("f"), "x").unwrap();
        let image = from_path(dir.path(), &RunConfig::default()).unwrap();
        let layer_tar = {
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(image.layers[0].data.as_slice()).read_to_end(&mut plain).unwrap();
            plain
        };
        let archive = |entries: &[(&str, &[u8])]| {
            let mut b = tar::Builder::new(Vec::new());
            for (name, data) in entries {
                let mut h = tar::Header::new_gnu();
                h.set_size(data.len() as u64);
                h.set_mode(0o644);
                b.append_data(&mut h, name, *data).unwrap();
            }
            let path = dir.path().join(format!("a{}.tar", entries.len()));
            fs::write(&path, b.into_inner().unwrap()).unwrap();
            path
        };
        let saved = archive(&[
            ("manifest.json", br#"[{"Config":"c.json","RepoTags":["x:1"],"Layers":["l/layer.tar"]}]"#),
            ("c.json", &image.config.data),
            ("l/layer.tar", &layer_tar),
        ]);
        let imported = from_path(&saved, &RunConfig::default()).unwrap();
        assert_eq!(imported.config.data, image.config.data);
        assert_eq!(imported.digest(), image.digest(), "the same layer and config make the same manifest");

        let hex = |b: &Blob| format!("blobs/sha256/{}", b.digest.hex());
        let index = json!({"schemaVersion": 2, "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": image.digest().as_str(), "size": image.manifest.len()}]});
        let index = serde_json::to_vec(&index).unwrap();
        let layout = archive(&[
            ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
            ("index.json", &index),
            (&format!("blobs/sha256/{}", image.digest().hex()), &image.manifest),
            (&hex(&image.config), &image.config.data),
            (&hex(&image.layers[0]), &image.layers[0].data),
            ("extra", b""),
        ]);
        assert_eq!(from_path(&layout, &RunConfig::default()).unwrap().digest(), image.digest());
        let err = from_path(&layout, &RunConfig { cmd: Some(vec![]), ..RunConfig::default() }).unwrap_err();
        assert!(err.to_string().contains("is an image archive"), "{err}");
    }

    #[test]
    fn a_tarball_of_a_folder_gives_the_folders_image() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::create_dir_all(src.join("static")).unwrap();
        fs::write(src.join("index.html"), "hi\n").unwrap();
        fs::write(src.join("static/app.js"), "1\n").unwrap();
        let mut b = tar::Builder::new(Vec::new());
        b.append_path_with_name(src.join("static/app.js"), "./static/app.js").unwrap();
        b.append_path_with_name(src.join("index.html"), "./index.html").unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&b.into_inner().unwrap()).unwrap();
        fs::write(dir.path().join("src.tgz"), gz.finish().unwrap()).unwrap();
        let run = RunConfig::default();
        assert_eq!(
            from_path(&dir.path().join("src.tgz"), &run).unwrap().digest(),
            from_path(&src, &run).unwrap().digest()
        );
    }
}
