//! [`S3StateStore`]: state as objects in an S3 bucket (`[state] backend = "s3"`).
//!
//! Per stage, under the configured prefix: `<prefix>/<stage>.json` (the state),
//! `<prefix>/<stage>.json.previous` (the state before the last write) and
//! `<prefix>/<stage>.lock` (the lock, holding the holder's [`LockInfo`] as JSON).
//!
//! Every step that must not race is one conditional request, so S3 itself decides who wins:
//!
//! - The lock is created with `If-None-Match: *`: exactly one creator succeeds, the others
//!   get `412 Precondition Failed` (or `409 ConditionalRequestConflict` while a competing
//!   request is in flight) and read who holds it. It is removed with a `DeleteObject` carrying
//!   `If-Match` of the ETag that was checked, so an unlock never removes a lock someone else
//!   took between the check and the delete.
//! - The state is written with `If-Match` of the ETag that was read (the first write with
//!   `If-None-Match: *`): a writer whose read is out of date gets
//!   [`StateError::Conflict`] and nothing is lost. The serial and lineage rule
//!   ([`check_write`]) is applied to what was read before any request is made.
//! - The previous copy is a separate object rather than bucket versioning, so `state restore`
//!   works on any bucket and reads the same as the local store. It is made before the new
//!   state is written, by a server-side copy conditional on the same ETag
//!   (`x-amz-copy-source-if-match`): a stale writer fails there already, and the kept copy is
//!   always the exact state the new one replaced. (Versioning on the bucket is still a good
//!   idea; it keeps the whole history.)
//! - ETags identify content. Every state document carries its lineage and serial, so two
//!   different states never share an ETag; every lock carries a fresh random id.
//!
//! Retried requests: the SDK retries a request whose answer was lost, and a retried
//! conditional request then fails against its own first attempt. A lock request carries a
//! random attempt id as object metadata, and a refused state write compares the stored bytes
//! with its own, so both recognise their own success instead of reporting a conflict.
//!
//! Stale locks: a remote store cannot tell whether a pid on another machine still runs, so a
//! lock is reported stale only when it was taken on this host by a process that is gone.
//!
//! The store's methods are synchronous; requests run on the shared AWS runtime
//! ([`crate::aws::block_on`]), so it also works when called from inside a tokio runtime.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;

use super::codec;
use super::local::{process_is_gone, unreadable_lock_id};
use super::model::StageState;
use super::store::{check_write, hostname, LockInfo, Restored, Result, StateError, StateStore};
use crate::aws::{self, AwsSettings};

/// User metadata key (`x-amz-meta-…`) naming the call that wrote an object (a `try_lock`,
/// a project record's conditional write), so a retried request recognises its own success.
const ATTEMPT_METADATA: &str = "ferry-lock-attempt";

/// How often a step is tried again when the object changes under it (a lock let go between
/// the refused create and the read of its holder, a `409` from a request in flight).
pub(crate) const RETRIES: usize = 5;

/// State in `s3://<bucket>/<prefix>/`.
#[derive(Debug, Clone)]
pub struct S3StateStore {
    client: Client,
    bucket: String,
    /// Without leading or trailing slashes; empty for the bucket's top level.
    prefix: String,
}

/// An object as read: its bytes, ETag and the attempt id it was written with.
#[derive(Debug)]
pub(crate) struct Object {
    pub(crate) bytes: Vec<u8>,
    pub(crate) etag: String,
    pub(crate) attempt: Option<String>,
}

/// Why a request failed, as far as the store's logic cares.
#[derive(Debug)]
pub(crate) enum Failure {
    /// `412`: a condition did not hold.
    Precondition,
    /// `409 ConditionalRequestConflict`: a competing conditional request was in flight.
    InFlight,
    /// `404 NoSuchKey` (S3 answers an `If-Match` on a missing key so).
    NotFound,
    /// Anything else: the message for a [`StateError::Backend`].
    Other(String),
}

fn classify<E>(err: SdkError<E>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    match (status, err.code()) {
        (_, Some("PreconditionFailed")) | (Some(412), _) => Failure::Precondition,
        (_, Some("ConditionalRequestConflict")) => Failure::InFlight,
        (_, Some("NoSuchKey")) => Failure::NotFound,
        _ => Failure::Other(aws::error_text(&err)),
    }
}

impl S3StateStore {
    /// A store using `client`, keeping its objects under `prefix` in `bucket`.
    pub fn new(client: Client, bucket: impl Into<String>, prefix: &str) -> Self {
        S3StateStore { client, bucket: bucket.into(), prefix: prefix.trim_matches('/').to_string() }
    }

    /// A store for `[state] backend = "s3"`: the standard AWS configuration chain, with the
    /// region from ferry.toml when it names one. Fails when no region can be found, since
    /// every request would fail the same way.
    pub fn connect(bucket: &str, prefix: &str, region: Option<&str>) -> Result<Self> {
        let settings = AwsSettings { region: region.map(str::to_string), ..AwsSettings::default() };
        let config = aws::block_on(aws::load_config(&settings));
        let store = S3StateStore::new(aws::s3_client(&config), bucket, prefix);
        if config.region().is_none() {
            return Err(StateError::Backend {
                location: store.url(""),
                message: "no AWS region is configured: set `region` under [state] in ferry.toml, or AWS_REGION".into(),
            });
        }
        Ok(store)
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The key of a stage's state object.
    pub fn state_key(&self, stage: &str) -> String {
        self.key(&format!("{stage}.json"))
    }

    /// The key of the copy kept from before the last write.
    pub fn previous_key(&self, stage: &str) -> String {
        self.key(&format!("{stage}.json.previous"))
    }

    /// `<prefix>/<stage>.history.jsonl`: deployments pruned from the state.
    pub fn archive_key(&self, stage: &str) -> String {
        self.key(&format!("{stage}.history.jsonl"))
    }

    /// The key of a stage's lock object.
    pub fn lock_key(&self, stage: &str) -> String {
        self.key(&format!("{stage}.lock"))
    }

    /// The key of `name` under the prefix.
    pub(crate) fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }

    /// `s3://bucket/key`, for messages.
    pub(crate) fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    fn backend_error(&self, key: &str, message: impl Into<String>) -> StateError {
        StateError::Backend { location: self.url(key), message: message.into() }
    }

    pub(crate) fn unexpected(&self, key: &str, failure: Failure) -> StateError {
        let message = match failure {
            Failure::Other(message) => message,
            other => format!("unexpected answer from S3: {other:?}"),
        };
        self.backend_error(key, message)
    }

    /// Stage names become keys: the same rule as file names in the local store, so a stage
    /// can move between stores and never reaches outside the prefix.
    fn check_stage(&self, stage: &str) -> Result<()> {
        let ok = !stage.is_empty()
            && !stage.starts_with('.')
            && stage.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if ok {
            Ok(())
        } else {
            Err(self.backend_error(&self.key(""), format!("`{stage}` is not a valid stage name for a state object")))
        }
    }

    // --- requests -------------------------------------------------------------------

    /// `GetObject`; `None` when there is no such key.
    pub(crate) fn get(&self, key: &str) -> Result<Option<Object>> {
        aws::block_on(async {
            let out = match self.client.get_object().bucket(&self.bucket).key(key).send().await {
                Ok(out) => out,
                Err(e) => {
                    return match classify(e) {
                        Failure::NotFound => Ok(None),
                        failure => Err(self.unexpected(key, failure)),
                    }
                }
            };
            let etag = out.e_tag().map(str::to_string);
            let attempt = out.metadata().and_then(|m| m.get(ATTEMPT_METADATA)).cloned();
            let bytes = out.body.collect().await.map_err(|e| self.backend_error(key, e.to_string()))?.to_vec();
            let etag = etag.ok_or_else(|| self.backend_error(key, "S3 returned the object without an ETag"))?;
            Ok(Some(Object { bytes, etag, attempt }))
        })
    }

    /// `PutObject` with a condition: `If-Match: etag`, or `If-None-Match: *` when `None`.
    pub(crate) fn put_if(
        &self,
        key: &str,
        bytes: &[u8],
        if_match: Option<&str>,
        attempt: Option<&str>,
    ) -> Result<(), Failure> {
        aws::block_on(async {
            let mut req = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .content_type("application/json")
                .body(ByteStream::from(bytes.to_vec()));
            req = match if_match {
                Some(etag) => req.if_match(etag),
                None => req.if_none_match("*"),
            };
            if let Some(attempt) = attempt {
                req = req.metadata(ATTEMPT_METADATA, attempt);
            }
            req.send().await.map(drop).map_err(classify)
        })
    }

    /// Server-side `CopyObject` from `from` to `to`, only while `from` still has `etag`.
    fn copy_if(&self, from: &str, to: &str, etag: &str) -> Result<(), Failure> {
        aws::block_on(async {
            self.client
                .copy_object()
                .bucket(&self.bucket)
                .key(to)
                .copy_source(format!("{}/{}", self.bucket, urlencode_key(from)))
                .copy_source_if_match(etag)
                .send()
                .await
                .map(drop)
                .map_err(classify)
        })
    }

    /// `DeleteObject` only while the object still has `etag`.
    fn delete_if(&self, key: &str, etag: &str) -> Result<(), Failure> {
        aws::block_on(async {
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(key)
                .if_match(etag)
                .send()
                .await
                .map(drop)
                .map_err(classify)
        })
    }

    // --- state ----------------------------------------------------------------------

    fn decode(&self, key: &str, stage: &str, object: Option<&Object>) -> Result<Option<StageState>> {
        object.map(|o| codec::decode(&self.url(key), stage, &o.bytes)).transpose()
    }

    /// A conditional write of `written` over serial `expected` was refused: find out what
    /// is stored now. Our own bytes there mean the request took effect on an earlier attempt
    /// whose answer was lost.
    fn after_refused_write(&self, stage: &str, expected: u64, written: &[u8]) -> Result<()> {
        let key = self.state_key(stage);
        let now = self.get(&key)?;
        if now.as_ref().is_some_and(|o| o.bytes == written) {
            return Ok(());
        }
        let found = self.decode(&key, stage, now.as_ref())?.map_or(0, |s| s.serial);
        Err(StateError::Conflict { stage: stage.to_string(), expected, found })
    }

    /// Write `bytes` as the stage's state over `current` (as read at serial `expected`;
    /// `None`: nothing stored), first keeping `current` as the previous copy when asked.
    fn replace_state(
        &self,
        stage: &str,
        expected: u64,
        current: Option<&Object>,
        keep_previous: bool,
        bytes: &[u8],
    ) -> Result<()> {
        let key = self.state_key(stage);
        if let (Some(current), true) = (current, keep_previous) {
            let previous = self.previous_key(stage);
            match self.copy_if(&key, &previous, &current.etag) {
                Ok(()) => {}
                Err(Failure::Precondition | Failure::NotFound) => {
                    return self.after_refused_write(stage, expected, bytes)
                }
                Err(failure) => return Err(self.unexpected(&previous, failure)),
            }
        }
        let etag = current.map(|o| o.etag.as_str());
        for _ in 0..RETRIES {
            match self.put_if(&key, bytes, etag, None) {
                Ok(()) => return Ok(()),
                Err(Failure::Precondition | Failure::NotFound) => {
                    return self.after_refused_write(stage, expected, bytes)
                }
                // Another conditional write is in flight: S3 asks to read again and retry.
                Err(Failure::InFlight) => {
                    if self.get(&key)?.map(|o| o.etag).as_deref() != etag {
                        return self.after_refused_write(stage, expected, bytes);
                    }
                }
                Err(failure) => return Err(self.unexpected(&key, failure)),
            }
        }
        Err(self.backend_error(&key, "S3 kept reporting a conflicting write in flight; try again"))
    }

    // --- lock -----------------------------------------------------------------------

    /// The lock object and who it names: `Err(LockUnreadable)` when it does not parse.
    fn holder_of(&self, stage: &str, object: &Object) -> Result<LockInfo> {
        serde_json::from_slice::<LockInfo>(&object.bytes).map_err(|e| StateError::LockUnreadable {
            stage: stage.into(),
            location: self.url(&self.lock_key(stage)),
            id: unreadable_lock_id(&object.bytes),
            message: if object.bytes.is_empty() { "the object is empty".into() } else { e.to_string() },
        })
    }

    fn locked_error(&self, stage: &str, holder: LockInfo) -> StateError {
        let stale = holder.host == hostname() && process_is_gone(holder.pid);
        StateError::Locked { stage: stage.into(), holder: Box::new(holder), stale }
    }

    /// Remove the lock if it has `id` (or, forced, is unreadable with that token).
    fn remove_lock(&self, stage: &str, id: &str, accept_unreadable: bool) -> Result<()> {
        let key = self.lock_key(stage);
        let mut deleted_once = false;
        for _ in 0..RETRIES {
            let Some(object) = self.get(&key)? else {
                // Gone after our delete was refused or its answer lost: it is not held.
                if deleted_once {
                    return Ok(());
                }
                return Err(StateError::LockMismatch { stage: stage.into(), id: id.into(), held_by: None });
            };
            match self.holder_of(stage, &object) {
                Ok(holder) if holder.id == id => {}
                Ok(holder) => {
                    return Err(StateError::LockMismatch {
                        stage: stage.into(),
                        id: id.into(),
                        held_by: Some(Box::new(holder)),
                    })
                }
                Err(StateError::LockUnreadable { id: token, .. }) if accept_unreadable && token == id => {}
                Err(e) => return Err(e),
            }
            match self.delete_if(&key, &object.etag) {
                Ok(()) | Err(Failure::NotFound) => return Ok(()),
                // Changed hands since we read it: look again.
                Err(Failure::Precondition | Failure::InFlight) => deleted_once = true,
                Err(failure) => return Err(self.unexpected(&key, failure)),
            }
        }
        Err(self.backend_error(&key, "the lock keeps changing hands; try again"))
    }
}

/// A key as the `x-amz-copy-source` header wants it: percent-encoded, slashes kept.
fn urlencode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl StateStore for S3StateStore {
    fn location(&self, stage: &str) -> String {
        self.url(&self.state_key(stage))
    }

    fn lock_location(&self, stage: &str) -> String {
        self.url(&self.lock_key(stage))
    }

    fn try_lock(&self, stage: &str, info: &LockInfo) -> Result<()> {
        self.check_stage(stage)?;
        let key = self.lock_key(stage);
        let bytes = serde_json::to_vec_pretty(info).expect("LockInfo serialises");
        let attempt = uuid::Uuid::new_v4().to_string();
        for _ in 0..RETRIES {
            match self.put_if(&key, &bytes, None, Some(&attempt)) {
                Ok(()) => return Ok(()),
                Err(Failure::Precondition | Failure::InFlight) => {}
                Err(failure) => return Err(self.unexpected(&key, failure)),
            }
            match self.get(&key)? {
                // Created by an earlier attempt of this very call whose answer was lost.
                Some(object) if object.attempt.as_deref() == Some(attempt.as_str()) => return Ok(()),
                Some(object) => return Err(self.locked_error(stage, self.holder_of(stage, &object)?)),
                // Let go of between our refused create and this read: try again.
                None => {}
            }
        }
        Err(self.backend_error(&key, "the lock keeps changing hands; try again"))
    }

    fn unlock(&self, stage: &str, id: &str) -> Result<()> {
        self.check_stage(stage)?;
        self.remove_lock(stage, id, false)
    }

    fn force_unlock(&self, stage: &str, id: &str) -> Result<()> {
        self.check_stage(stage)?;
        self.remove_lock(stage, id, true)
    }

    fn lock_holder(&self, stage: &str) -> Result<Option<LockInfo>> {
        self.check_stage(stage)?;
        self.get(&self.lock_key(stage))?.map(|o| self.holder_of(stage, &o)).transpose()
    }

    fn read(&self, stage: &str) -> Result<Option<StageState>> {
        self.check_stage(stage)?;
        let key = self.state_key(stage);
        self.decode(&key, stage, self.get(&key)?.as_ref())
    }

    fn write(&self, state: &mut StageState) -> Result<()> {
        let stage = state.stage.clone();
        self.check_stage(&stage)?;
        let key = self.state_key(&stage);
        let current = self.get(&key)?;
        // Refuses a corrupt or newer object before anything is touched.
        let stored = self.decode(&key, &stage, current.as_ref())?;
        check_write(stored.as_ref(), state)?;
        let mut next = state.clone();
        next.serial += 1;
        self.replace_state(&stage, state.serial, current.as_ref(), true, &codec::encode(&next))?;
        state.serial = next.serial;
        Ok(())
    }

    fn append_archive(&self, stage: &str, lines: &[u8]) -> Result<()> {
        self.check_stage(stage)?;
        let key = self.archive_key(stage);
        // S3 cannot append: read, add, write back only if nobody wrote it meanwhile (the
        // caller holds the stage lock, so a refusal means a writer that lost its lock).
        let current = self.get(&key)?;
        let mut bytes = current.as_ref().map(|o| o.bytes.clone()).unwrap_or_default();
        bytes.extend_from_slice(lines);
        self.put_if(&key, &bytes, current.as_ref().map(|o| o.etag.as_str()), None)
            .map_err(|failure| self.unexpected(&key, failure))
    }

    fn delete(&self, stage: &str) -> Result<()> {
        self.check_stage(stage)?;
        for key in [self.state_key(stage), self.previous_key(stage), self.archive_key(stage)] {
            if let Some(object) = self.get(&key)? {
                self.delete_if(&key, &object.etag).map_err(|failure| self.unexpected(&key, failure))?;
            }
        }
        Ok(())
    }

    fn read_archive(&self, stage: &str) -> Result<Option<Vec<u8>>> {
        self.check_stage(stage)?;
        Ok(self.get(&self.archive_key(stage))?.map(|o| o.bytes))
    }

    fn read_previous(&self, stage: &str) -> Result<Option<StageState>> {
        self.check_stage(stage)?;
        let key = self.previous_key(stage);
        self.decode(&key, stage, self.get(&key)?.as_ref())
    }

    fn restore_previous(&self, stage: &str) -> Result<Restored> {
        self.check_stage(stage)?;
        let mut restored =
            self.read_previous(stage)?.ok_or_else(|| StateError::NoPrevious { location: self.location(stage) })?;
        let from_serial = restored.serial;
        let key = self.state_key(stage);
        let current = self.get(&key)?;
        let (replaced_serial, set_aside) = match self.decode(&key, stage, current.as_ref()) {
            Ok(Some(s)) => (Some(s.serial), None),
            Ok(None) => (None, None),
            // Newer: restoring would downgrade what a newer ferry wrote; refuse.
            Err(e @ StateError::NewerVersion { .. }) => return Err(e),
            Err(StateError::Corrupt { .. }) => {
                // Keep the damaged object (never delete it) under another key; the restored
                // state then replaces it, conditional on it being the one set aside.
                let current = current.as_ref().expect("a corrupt object was read");
                let aside =
                    self.key(&format!("{stage}.json.corrupt-{}", chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")));
                self.copy_if(&key, &aside, &current.etag).map_err(|f| self.unexpected(&aside, f))?;
                (None, Some(self.url(&aside)))
            }
            Err(e) => return Err(e),
        };
        // A fresh serial above both: a saved plan made against either is refused. When the
        // current object was unreadable its serial is unknown; it was written after the
        // previous copy, so skip one past that.
        restored.serial = match replaced_serial {
            Some(s) => s.max(from_serial) + 1,
            None => from_serial + 2,
        };
        // The replaced state becomes the kept copy, so a restore can be undone; an unreadable
        // one was kept aside instead.
        let keep = replaced_serial.is_some();
        let expected = replaced_serial.unwrap_or(0);
        self.replace_state(stage, expected, current.as_ref(), keep, &codec::encode(&restored))?;
        Ok(Restored { from_serial, replaced_serial, serial: restored.serial, set_aside })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(prefix: &str) -> S3StateStore {
        let config = aws::block_on(aws::load_config(&AwsSettings {
            region: Some("eu-central-1".into()),
            endpoint_url: Some("http://127.0.0.1:1".into()),
            credentials: Some(aws_sdk_s3::config::Credentials::new("a", "b", None, None, "test")),
        }));
        S3StateStore::new(aws::s3_client(&config), "bucket", prefix)
    }

    #[test]
    fn keys_sit_under_the_prefix() {
        let s = store("/shop/state/");
        assert_eq!(s.state_key("dev"), "shop/state/dev.json");
        assert_eq!(s.previous_key("dev"), "shop/state/dev.json.previous");
        assert_eq!(s.lock_key("dev"), "shop/state/dev.lock");
        assert_eq!(s.location("dev"), "s3://bucket/shop/state/dev.json");
        assert_eq!(s.lock_location("dev"), "s3://bucket/shop/state/dev.lock");
        assert_eq!(store("").state_key("dev"), "dev.json");
    }

    #[test]
    fn stage_names_cannot_leave_the_prefix() {
        let s = store("p");
        for bad in ["../x", "", ".hidden", "a/b"] {
            let err = s.read(bad).unwrap_err();
            assert!(err.to_string().contains("not a valid stage name"), "{err}");
        }
    }

    #[test]
    fn copy_source_keys_are_percent_encoded() {
        assert_eq!(urlencode_key("a b/c+d.json"), "a%20b/c%2Bd.json");
    }

    #[test]
    fn an_unreachable_endpoint_is_a_backend_error_naming_the_object() {
        let err = store("p").read("dev").unwrap_err();
        assert!(matches!(err, StateError::Backend { .. }), "{err:?}");
        assert!(err.to_string().starts_with("s3://bucket/p/dev.json: "), "{err}");
    }
}
