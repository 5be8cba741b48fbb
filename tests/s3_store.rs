//! The S3 state store against the moto emulator ([`crate::support::moto`]): the shared
//! conformance suite, racing writers, the exact objects read back with an independent client
//! (boto3), and the `ferry` binary using `backend = "s3"` through the standard AWS chain.
//!
//! Every test takes a bucket of its own on the one shared server, so they run in parallel.
//!
//! What the emulator checks: the lock's `If-None-Match: *`, the state's `If-Match`, the
//! unlock's conditional `DeleteObject` (all native in moto 5.2.5, made atomic by the
//! harness serving one request at a time) and the previous copy's
//! `x-amz-copy-source-if-match` (added by the harness, since moto ignores it). What it
//! cannot: moto never answers `409 ConditionalRequestConflict`, so a test interceptor
//! ([`InFlightConflicts`]) makes a request fail on the emulator and answers it with that 409
//! (with, in one test, a real competing write landing first); and it never loses an answer,
//! so another ([`LoseAnswers`]) turns answers into `503`s to make the SDK retry a
//! conditional request that already took effect.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_s3::config::interceptors::{
    BeforeDeserializationInterceptorContextMut, BeforeTransmitInterceptorContextMut,
    BeforeTransmitInterceptorContextRef,
};
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_s3::error::BoxError;

use ferry::aws;
use ferry::pipeline::records::{update, RecordStore, S3RecordStore};
use ferry::state::conformance::{sample, Backend};
use ferry::state::{AppState, LockInfo, S3StateStore, StageState, StateError, StateStore};

use crate::support::moto::Moto;
use crate::support::TestProject;

/// One bucket on the shared emulator; every client is a store with its own SDK client.
struct S3Fixture {
    moto: &'static Moto,
    bucket: String,
    prefix: String,
}

impl S3Fixture {
    fn new() -> Self {
        let moto = Moto::shared();
        S3Fixture { moto, bucket: moto.new_bucket("ferry-state"), prefix: "ferry/shop".into() }
    }

    fn store(&self) -> S3StateStore {
        S3StateStore::new(aws::s3_client(&self.moto.sdk_config()), &self.bucket, &self.prefix)
    }

    fn key(&self, name: &str) -> String {
        format!("{}/{name}", self.prefix)
    }

    fn get(&self, key: &str) -> Option<Vec<u8>> {
        let client = self.moto.s3();
        aws::block_on(async {
            match client.get_object().bucket(&self.bucket).key(key).send().await {
                Ok(out) => Some(out.body.collect().await.expect("body").to_vec()),
                Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => None,
                Err(e) => panic!("get {key}: {}", aws_sdk_s3::error::DisplayErrorContext(e)),
            }
        })
    }

    fn put(&self, key: &str, bytes: &[u8]) {
        let client = self.moto.s3();
        aws::block_on(async {
            client.put_object().bucket(&self.bucket).key(key).body(bytes.to_vec().into()).send().await
        })
        .unwrap_or_else(|e| panic!("put {key}: {}", aws_sdk_s3::error::DisplayErrorContext(e)));
    }
}

impl Backend for S3Fixture {
    fn client(&self) -> Box<dyn StateStore> {
        Box::new(self.store())
    }
    fn put_raw(&self, stage: &str, bytes: &[u8]) {
        self.put(&self.key(&format!("{stage}.json")), bytes)
    }
    fn get_raw(&self, stage: &str) -> Option<Vec<u8>> {
        self.get(&self.key(&format!("{stage}.json")))
    }
}

mod conformance {
    use super::S3Fixture;

    ferry::state_store_conformance!(S3Fixture::new());
}

/// Two stores read the same serial and write at the same moment: one wins, the other gets
/// a conflict naming both serials, the winner's state and the previous copy are intact, and
/// the loser's change lands after it reads again.
#[test]
fn two_stores_racing_from_the_same_serial_lose_nothing() {
    let f = S3Fixture::new();
    let mut base = sample("dev");
    f.store().write(&mut base).unwrap();
    let (one, two) = (f.store(), f.store());
    let barrier = std::sync::Barrier::new(2);
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = [("one", &one), ("two", &two)]
            .into_iter()
            .map(|(name, store)| {
                let (barrier, mut s) = (&barrier, store.read("dev").unwrap().unwrap());
                scope.spawn(move || {
                    s.apps.insert(format!("from-{name}"), AppState::default());
                    barrier.wait();
                    store.write(&mut s).map(|()| s)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let (winner, loser) = match (&results[0], &results[1]) {
        (Ok(w), Err(e)) => (w.clone(), (&two, e)),
        (Err(e), Ok(w)) => (w.clone(), (&one, e)),
        other => panic!("expected exactly one winner: {other:?}"),
    };
    assert!(matches!(loser.1, StateError::Conflict { expected: 1, found: 2, .. }), "{:?}", loser.1);
    let location = format!("s3://{}/ferry/shop/dev.json", f.bucket);
    assert!(loser.1.to_string().contains("changed since it was read (expected serial 1, found 2)"), "{}", loser.1);
    assert_eq!(one.location("dev"), location);
    assert_eq!(f.store().read("dev").unwrap(), Some(winner.clone()), "the winner's write is stored");
    assert_eq!(f.store().read_previous("dev").unwrap(), Some(base), "the previous copy is the replaced state");

    let mut again = loser.0.read("dev").unwrap().unwrap();
    let name = if winner.apps.contains_key("from-one") { "from-two" } else { "from-one" };
    again.apps.insert(name.into(), AppState::default());
    loser.0.write(&mut again).unwrap();
    let stored = f.store().read("dev").unwrap().unwrap();
    assert_eq!(stored.serial, 3);
    assert!(stored.apps.contains_key("from-one") && stored.apps.contains_key("from-two"), "nothing lost");
}

/// boto3, not ferry's SDK, lists and reads the bucket: exactly the state, its previous copy
/// and the lock, under the prefix, holding exactly what was written.
#[test]
fn objects_read_back_by_boto3_are_exactly_as_written() {
    let f = S3Fixture::new();
    let store = f.store();
    let mut s = sample("dev");
    store.write(&mut s).unwrap();
    let first = s.clone();
    s.apps.insert("api".into(), AppState::default());
    store.write(&mut s).unwrap();
    let lock = LockInfo::for_this_process("ferry commit -s dev");
    store.try_lock("dev", &lock).unwrap();

    let script = r#"
import json, sys, boto3
s3 = boto3.client("s3")
bucket = sys.argv[1]
listing = s3.list_objects_v2(Bucket=bucket)
out = {}
for item in listing.get("Contents", []):
    obj = s3.get_object(Bucket=bucket, Key=item["Key"])
    out[item["Key"]] = {"body": obj["Body"].read().decode(), "content_type": obj["ContentType"]}
print(json.dumps(out))
"#;
    let run = f.moto.python(script, &[&f.bucket]);
    assert!(run.status.success(), "boto3 failed: {}", String::from_utf8_lossy(&run.stderr));
    let objects: serde_json::Value = serde_json::from_slice(&run.stdout).expect("JSON from boto3");
    let keys: Vec<&str> = objects.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["ferry/shop/dev.json", "ferry/shop/dev.json.previous", "ferry/shop/dev.lock"]);
    let body = |key: &str| objects[key]["body"].as_str().unwrap().to_string();
    for key in keys {
        assert_eq!(objects[key]["content_type"], "application/json", "{key}");
    }

    let stored: serde_json::Value = serde_json::from_str(&body("ferry/shop/dev.json")).unwrap();
    assert_eq!(stored, serde_json::to_value(&s).unwrap());
    assert_eq!(stored["serial"], 2);
    assert_eq!(stored["stage"], "dev");
    assert!(body("ferry/shop/dev.json").ends_with("}\n"), "the one encoding: pretty JSON, final newline");
    let previous: serde_json::Value = serde_json::from_str(&body("ferry/shop/dev.json.previous")).unwrap();
    assert_eq!(previous, serde_json::to_value(&first).unwrap());
    let held: LockInfo = serde_json::from_str(&body("ferry/shop/dev.lock")).unwrap();
    assert_eq!(held, lock);

    store.unlock("dev", &lock.id).unwrap();
    assert_eq!(f.get("ferry/shop/dev.lock"), None, "unlock deletes the lock object");
}

/// The store is synchronous but must work when called from inside a tokio runtime (where
/// blocking on another runtime would panic), also on a current-thread one.
#[test]
fn works_when_called_from_inside_a_tokio_runtime() {
    let f = S3Fixture::new();
    let store = f.store();
    for runtime in [
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap(),
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap(),
    ] {
        let serial = runtime.block_on(async {
            let mut s = store.read("dev").unwrap().unwrap_or_else(|| sample("dev"));
            store.write(&mut s).unwrap();
            s.serial
        });
        assert_eq!(store.read("dev").unwrap().unwrap().serial, serial);
    }
}

/// A lock taken on this host by a process that is gone is reported stale (and not taken
/// over); the same pid on another host says nothing, since no pid can be checked remotely.
#[test]
fn a_lock_of_a_dead_process_on_this_host_is_stale() {
    let f = S3Fixture::new();
    let store = f.store();
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let mut holder = LockInfo::for_this_process("ferry commit");
    holder.pid = child.id();
    child.wait().unwrap();
    store.try_lock("dev", &holder).unwrap();
    let err = store.lock("dev", &LockInfo::for_this_process("ferry plan"), Duration::from_secs(30)).unwrap_err();
    assert!(matches!(&err, StateError::Locked { stale: true, .. }), "{err:?}");
    assert_eq!(store.lock_holder("dev").unwrap(), Some(holder.clone()), "still there");

    store.force_unlock("dev", &holder.id).unwrap();
    holder.host = "elsewhere.example".into();
    store.try_lock("dev", &holder).unwrap();
    let err = store.try_lock("dev", &LockInfo::for_this_process("ferry plan")).unwrap_err();
    assert!(matches!(err, StateError::Locked { stale: false, .. }), "{err:?}");
}

/// A lock object that does not parse is reported with its s3:// URL and removed only by
/// force-unlock with the id derived from its bytes.
#[test]
fn an_unreadable_lock_is_reported_and_can_be_forced() {
    let f = S3Fixture::new();
    let store = f.store();
    f.put("ferry/shop/dev.lock", b"{\"id\": \"abc\", \"pid\": 12");
    let err = store.try_lock("dev", &LockInfo::for_this_process("ferry plan")).unwrap_err();
    let StateError::LockUnreadable { location, id, .. } = &err else { panic!("{err:?}") };
    assert_eq!(location, &format!("s3://{}/ferry/shop/dev.lock", f.bucket));
    assert!(store.unlock("dev", id).is_err(), "plain unlock does not remove it");
    assert!(store.force_unlock("dev", "unreadable-000000000000").is_err(), "another id");
    store.force_unlock("dev", id).unwrap();
    assert_eq!(f.get("ferry/shop/dev.lock"), None);
}

/// `state restore` semantics on S3: the previous copy comes back under a new serial, the
/// replaced state becomes the previous copy, and a corrupt state is kept aside, not deleted.
#[test]
fn restore_brings_back_the_previous_copy() {
    let f = S3Fixture::new();
    let store = f.store();
    assert!(matches!(store.restore_previous("dev"), Err(StateError::NoPrevious { .. })));
    let mut s = sample("dev");
    store.write(&mut s).unwrap();
    let good = s.clone();
    s.apps.clear();
    store.write(&mut s).unwrap();

    let r = store.restore_previous("dev").unwrap();
    assert_eq!((r.from_serial, r.replaced_serial, r.serial, r.set_aside), (1, Some(2), 3, None));
    let now = store.read("dev").unwrap().unwrap();
    assert_eq!((now.serial, &now.apps, &now.lineage), (3, &good.apps, &good.lineage));
    assert_eq!(store.read_previous("dev").unwrap().unwrap().serial, 2, "the restore can be undone");

    f.put("ferry/shop/dev.json", b"{garbage");
    let r = store.restore_previous("dev").unwrap();
    assert_eq!((r.from_serial, r.replaced_serial, r.serial), (2, None, 4));
    let aside = r.set_aside.unwrap();
    let prefix = format!("s3://{}/", f.bucket);
    assert!(aside.starts_with(&format!("{prefix}ferry/shop/dev.json.corrupt-")), "{aside}");
    assert_eq!(f.get(&aside[prefix.len()..]).as_deref(), Some(&b"{garbage"[..]), "kept byte for byte");
    assert_eq!(store.read("dev").unwrap().unwrap().serial, 4);
}

/// A bucket that does not exist is a backend error naming the object and S3's reason.
#[test]
fn a_missing_bucket_is_a_clear_error() {
    let moto = Moto::shared();
    let store = S3StateStore::new(aws::s3_client(&moto.sdk_config()), "no-such-bucket-for-ferry", "p");
    let err = store.read("dev").unwrap_err();
    assert!(matches!(err, StateError::Backend { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "s3://no-such-bucket-for-ferry/p/dev.json: NoSuchBucket: The specified bucket does not exist — create the \
         bucket, or fix `bucket` under [state] in ferry.toml"
    );
    let mut s = StageState::new("dev");
    assert!(matches!(store.write(&mut s), Err(StateError::Backend { .. })));
}

/// `ferry` on an S3 project, with the environment cleared of every AWS setting and the
/// shared config files pointed away: only what `env` sets reaches the SDK.
fn run_with_aws_env(p: &TestProject, env: &[(&str, &str)], args: &[&str]) -> crate::support::Run {
    let mut cmd = p.ferry();
    for (var, _) in std::env::vars_os().filter(|(k, _)| k.to_string_lossy().starts_with("AWS_")) {
        cmd.env_remove(var);
    }
    let nowhere = p.path().join("no-aws-config");
    cmd.env("AWS_CONFIG_FILE", &nowhere).env("AWS_SHARED_CREDENTIALS_FILE", &nowhere);
    // Never ask an instance metadata service: the test must not depend on where it runs.
    cmd.env("AWS_EC2_METADATA_DISABLED", "true").env_remove("FERRY_LOG");
    crate::support::Run(cmd.envs(env.iter().copied()).args(args).output().expect("run ferry"))
}

/// A project whose state is in S3, with one stage.
fn s3_project() -> TestProject {
    let p = TestProject::empty();
    p.write(
        "ferry.toml",
        "[project]\nname = \"shop\"\n\n[state]\nbackend = \"s3\"\nbucket = \"ferry-state\"\nregion = \"eu-central-1\"\n",
    );
    p.write("stages/dev.toml", "");
    p
}

/// Without credentials, an AWS error is what ferry tried, the cause and what to do, in a line
/// or two, not the SDK's debug dump; `-v` (or FERRY_LOG=debug) adds the full chain.
#[test]
fn no_aws_credentials_is_a_short_error_that_says_what_to_do() {
    let p = s3_project();
    let run = run_with_aws_env(&p, &[], &["plan"]);
    run.expect_code(1);
    let err = run.stderr();
    assert!(
        err.starts_with("error: s3://ferry-state/shop/dev.json: no AWS credentials found — set AWS_PROFILE"),
        "{err}"
    );
    assert!(err.lines().count() <= 2 && err.len() < 400, "{} characters:\n{err}", err.len());
    assert!(!err.contains("DispatchFailure") && !err.contains("CredentialsNotLoaded"), "{err}");

    for verbose in [&["-v", "plan"][..], &["plan", "--verbose"][..]] {
        let err = run_with_aws_env(&p, &[], verbose).stderr();
        assert!(err.contains("no AWS credentials found") && err.contains("SDK error:"), "{err}");
    }
    let err = run_with_aws_env(&p, &[("FERRY_LOG", "debug")], &["plan"]).stderr();
    assert!(err.contains("SDK error:"), "{err}");
}

/// An endpoint nobody listens on: the cause in the operating system's words, and what to check.
#[test]
fn an_unreachable_endpoint_is_a_short_error() {
    let p = s3_project();
    let closed = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let env = [("AWS_ENDPOINT_URL", endpoint.as_str()), ("AWS_ACCESS_KEY_ID", "a"), ("AWS_SECRET_ACCESS_KEY", "b")];
    let run = run_with_aws_env(&p, &env, &["plan"]);
    run.expect_code(1);
    let err = run.stderr();
    assert!(err.starts_with("error: s3://ferry-state/shop/dev.json: cannot reach AWS: "), "{err}");
    assert!(err.contains("— check the network"), "{err}");
    assert!(err.lines().count() <= 2 && err.len() < 400, "{} characters:\n{err}", err.len());
}

/// An error AWS answered with: its code and message, and what to do.
#[test]
fn an_aws_error_code_is_shown_with_what_to_do() {
    let moto = Moto::shared();
    let p = s3_project();
    let mut cmd = p.ferry();
    moto.configure(&mut cmd);
    let run = crate::support::Run(cmd.args(["plan"]).output().expect("run ferry"));
    run.expect_code(1);
    assert_eq!(
        run.stderr(),
        "error: s3://ferry-state/shop/dev.json: NoSuchBucket: The specified bucket does not exist — create the bucket, or \
         fix `bucket` under [state] in ferry.toml\n"
    );
}

/// The real binary with `backend = "s3"`: `open_store` connects through the standard chain
/// (endpoint, region and credentials from the environment only), and the state commands see
/// what a store wrote, locks included.
#[test]
fn ferry_uses_the_s3_backend_from_ferry_toml() {
    let moto = Moto::shared();
    let bucket = moto.new_bucket("ferry-cli");
    let p = TestProject::empty();
    p.run(&["init", "--name", "shop"]).expect_code(0);
    p.write(
        "ferry.toml",
        &format!(
            "[project]\nname = \"shop\"\n\n[state]\nbackend = \"s3\"\nbucket = \"{bucket}\"\nprefix = \"teams/shop\"\n"
        ),
    );
    let run = |args: &[&str]| {
        let mut cmd = p.ferry();
        moto.configure(&mut cmd);
        crate::support::Run(cmd.args(args).output().expect("run ferry"))
    };

    let store = S3StateStore::new(moto.s3(), &bucket, "teams/shop");
    let mut s = StageState::new("development");
    s.apps.insert("web".into(), AppState::default());
    store.write(&mut s).unwrap();
    let holder = LockInfo::for_this_process("ferry commit -s development");
    store.try_lock("development", &holder).unwrap();

    let out = run(&["state", "show", "-s", "development", "--json"]);
    out.expect_code(0);
    let doc: serde_json::Value = serde_json::from_str(&out.stdout()).expect("JSON");
    let stage = &doc["stages"][0];
    assert_eq!(stage["location"], format!("s3://{bucket}/teams/shop/development.json"));
    assert_eq!(stage["serial"], 1);
    assert_eq!(stage["lineage"], s.lineage.as_str());
    assert_eq!(stage["lock"]["id"], holder.id.as_str(), "{stage}");

    let out = run(&["state", "restore", "-s", "development"]);
    out.expect_code(1);
    assert!(out.stderr().contains("is locked by `ferry commit -s development`"), "{}", out.stderr());

    run(&["force-unlock", &holder.id]).expect_code(0);
    assert_eq!(store.lock_holder("development").unwrap(), None);

    // Without a region anywhere, the error says where to set one.
    let mut cmd = p.ferry();
    moto.configure(&mut cmd);
    cmd.env_remove("AWS_REGION").env_remove("AWS_DEFAULT_REGION");
    let out = crate::support::Run(cmd.args(["state", "show"]).output().unwrap());
    out.expect_code(1);
    assert!(out.stderr().contains("no AWS region is configured"), "{}", out.stderr());
}

/// What the store relies on, checked on the emulator itself with plain SDK calls: every
/// condition is refused with S3's `412 PreconditionFailed`, and an `If-Match` on a missing
/// key with `404 NoSuchKey`. (The copy-source condition is the harness's addition.)
#[test]
fn the_emulator_refuses_stale_conditions_like_s3() {
    let moto = Moto::shared();
    let bucket = moto.new_bucket("ferry-conditions");
    let s3 = moto.s3();
    let code = |e: &dyn aws_sdk_s3::error::ProvideErrorMetadata| e.code().unwrap_or("none").to_string();
    aws::block_on(async {
        let put = || s3.put_object().bucket(&bucket).key("k");
        let first = put().body(b"1".to_vec().into()).if_none_match("*").send().await.unwrap();
        let old = first.e_tag().unwrap().to_string();
        let e = put().body(b"2".to_vec().into()).if_none_match("*").send().await.unwrap_err();
        assert_eq!(code(&e), "PreconditionFailed");
        put().body(b"2".to_vec().into()).if_match(&old).send().await.unwrap();
        let e = put().body(b"3".to_vec().into()).if_match(&old).send().await.unwrap_err();
        assert_eq!(code(&e), "PreconditionFailed");
        let e = s3.put_object().bucket(&bucket).key("none").if_match(&old).send().await.unwrap_err();
        assert_eq!(code(&e), "NoSuchKey");

        let copy = || s3.copy_object().bucket(&bucket).key("k.previous").copy_source(format!("{bucket}/k"));
        let e = copy().copy_source_if_match(&old).send().await.unwrap_err();
        assert_eq!(code(&e), "PreconditionFailed");
        let current = s3.head_object().bucket(&bucket).key("k").send().await.unwrap().e_tag().unwrap().to_string();
        copy().copy_source_if_match(&current).send().await.unwrap();

        let e = s3.delete_object().bucket(&bucket).key("k").if_match(&old).send().await.unwrap_err();
        assert_eq!(code(&e), "PreconditionFailed");
        s3.delete_object().bucket(&bucket).key("k").if_match(&current).send().await.unwrap();
    });
}

/// Turns S3's answer to the next `remaining` PutObject requests on keys ending in `suffix`
/// into a `503` after S3 carried them out, so the SDK sends them again: what happens when
/// an answer is lost on the network. The emulator cannot do this by itself.
#[derive(Debug, Clone)]
struct LoseAnswers {
    suffix: &'static str,
    remaining: Arc<AtomicUsize>,
    armed: Arc<AtomicBool>,
}

impl LoseAnswers {
    fn new(suffix: &'static str, count: usize) -> Self {
        LoseAnswers { suffix, remaining: Arc::new(AtomicUsize::new(count)), armed: Arc::default() }
    }

    fn remaining(&self) -> usize {
        self.remaining.load(Ordering::SeqCst)
    }
}

impl Intercept for LoseAnswers {
    fn name(&self) -> &'static str {
        "LoseAnswers"
    }

    fn read_before_transmit(
        &self,
        ctx: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = ctx.request();
        let path = request.uri().split('?').next().unwrap_or_default();
        let put_object = request.method() == "PUT"
            && path.ends_with(self.suffix)
            && request.headers().get("x-amz-copy-source").is_none();
        self.armed.store(put_object, Ordering::SeqCst);
        Ok(())
    }

    fn modify_before_deserialization(
        &self,
        ctx: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if self.armed.load(Ordering::SeqCst)
            && ctx.response().status().is_success()
            && self.remaining.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
        {
            *ctx.response_mut().status_mut() = 503.try_into()?;
        }
        Ok(())
    }
}

/// A conditional request whose answer was lost is sent again by the SDK and then fails
/// against its own first attempt; the store recognises its own success (the lock by its
/// attempt id, the state by its bytes) instead of reporting itself as the holder or a
/// conflict.
#[test]
fn a_retried_request_recognises_its_own_success() {
    let f = S3Fixture::new();
    let store_losing = |lose: &LoseAnswers| {
        let config = aws_sdk_s3::config::Builder::from(&f.moto.sdk_config())
            .force_path_style(true)
            .interceptor(lose.clone())
            .build();
        S3StateStore::new(aws_sdk_s3::Client::from_conf(config), &f.bucket, &f.prefix)
    };

    let lose = LoseAnswers::new(".lock", 1);
    let store = store_losing(&lose);
    let info = LockInfo::for_this_process("ferry commit");
    store.try_lock("dev", &info).expect("the retried lock request is ours");
    assert_eq!(lose.remaining(), 0, "the first answer was lost");
    assert_eq!(store.lock_holder("dev").unwrap(), Some(info.clone()));
    assert!(matches!(store.try_lock("dev", &info), Err(StateError::Locked { .. })), "still not re-entrant");

    let lose = LoseAnswers::new(".json", 2);
    let store = store_losing(&lose);
    let mut s = sample("dev");
    store.write(&mut s).expect("create, answer lost");
    s.apps.insert("api".into(), AppState::default());
    store.write(&mut s).expect("update, answer lost");
    assert_eq!(lose.remaining(), 0, "both answers were lost");
    assert_eq!(s.serial, 2);
    assert_eq!(f.store().read("dev").unwrap(), Some(s));
    assert_eq!(f.store().read_previous("dev").unwrap().unwrap().serial, 1);
}

/// Project records (status checks, image imports) on S3: the record store conformance suite
/// (conditional create and replace, racing read-modify-writes that lose nothing), under
/// `<prefix>/records/`.
#[test]
fn the_s3_record_store_conforms() {
    let f = S3Fixture::new();
    let records = S3RecordStore::new(f.store());
    ferry::pipeline::records::conformance(&records);
    assert_eq!(records.location("status/web"), format!("s3://{}/ferry/shop/records/status/web.json", f.bucket));
    assert_eq!(f.get("ferry/shop/records/counter.json").as_deref(), Some(&b"40\n"[..]));
}

/// A record write whose answer is lost is sent again by the SDK and refused against its own
/// first attempt; the store recognises it by its attempt id, so the update is neither
/// reported as a conflict nor applied twice.
#[test]
fn a_retried_record_write_recognises_its_own_success() {
    let f = S3Fixture::new();
    let lose = LoseAnswers::new("counter.json", 2);
    let config = aws_sdk_s3::config::Builder::from(&f.moto.sdk_config())
        .force_path_style(true)
        .interceptor(lose.clone())
        .build();
    let store = S3StateStore::new(aws_sdk_s3::Client::from_conf(config), &f.bucket, &f.prefix);
    let records = S3RecordStore::new(store);
    for _ in 0..3 {
        update(&records, "counter", |n: &mut u64| *n += 1).unwrap();
    }
    assert_eq!(lose.remaining(), 0, "two answers were lost");
    assert_eq!(f.get("ferry/shop/records/counter.json").as_deref(), Some(&b"3\n"[..]));
}

/// `ferry status set|list` and `ferry promote` on a project with `backend = "s3"`: the checks
/// live in the state bucket with their history, a required check refuses the promotion until
/// it is `success`, and writers racing from separate processes lose no report. The object is
/// read back with the SDK.
#[test]
fn status_checks_of_an_s3_project_live_in_the_state_bucket() {
    let moto = Moto::shared();
    let bucket = moto.new_bucket("ferry-records");
    let p = TestProject::empty();
    p.write(
        "ferry.toml",
        &format!(
            "[project]\nname = \"shop\"\n\n[state]\nbackend = \"s3\"\nbucket = \"{bucket}\"\nprefix = \"teams/shop\"\n\n\
             [[pipeline.steps]]\nname = \"development\"\nstages = [\"development\"]\n\n\
             [[pipeline.steps]]\nname = \"production\"\nstages = [\"production\"]\nrequired_checks = [\"ci/tests\"]\n"
        ),
    );
    let ferry = |args: &[&str]| {
        let mut cmd = p.ferry();
        moto.configure(&mut cmd);
        cmd.args(args);
        cmd
    };
    let run = |args: &[&str]| crate::support::Run(ferry(args).output().expect("run ferry"));
    let mut digests = Vec::new();
    for version in ["one", "two"] {
        p.write(&format!("images/{version}/VERSION"), version);
        let push = run(&["image", "push", &format!("images/{version}"), "--repo", "web"]);
        digests.push(push.expect_code(0).stdout().trim().to_string());
    }
    let (d1, d2) = (&digests[0], &digests[1]);
    let stage = |releases: &str, active: u64| {
        format!("[apps.web]\nimage = \"web\"\nactive = {active}\nport = 8080\n\n[apps.web.releases]\n{releases}")
    };
    p.write("stages/development.toml", &stage(&format!("1 = \"{d1}\"\n2 = \"{d2}\"\n"), 2));
    p.write("stages/production.toml", &stage(&format!("1 = \"{d1}\"\n"), 1));

    let refused = run(&["promote", "web", "--from", "development"]);
    refused.expect_code(1);
    assert!(refused.stderr().contains("ci/tests: missing"), "{}", refused.stderr());
    run(&["status", "set", "web", d2, "ci/tests", "failure", "-d", "2 failed", "-u", "https://ci/9"]).expect_code(0);
    let refused = run(&["promote", "web", "--from", "development"]);
    refused.expect_code(1);
    assert!(refused.stderr().contains("ci/tests: failure — 2 failed (https://ci/9)"), "{}", refused.stderr());

    // Nine writers at once, each from its own process: every report is kept.
    let mut writers: Vec<(String, std::process::Child)> = (0..8)
        .map(|i| {
            let context = format!("load/{i}");
            let child = ferry(&["status", "set", "web", d2, &context, "success"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn ferry");
            (context, child)
        })
        .collect();
    let ci = ferry(&["status", "set", "web", d2, "ci/tests", "success"]).stderr(std::process::Stdio::piped()).spawn();
    writers.push(("ci/tests".into(), ci.expect("spawn ferry")));
    for (context, child) in writers {
        let out = child.wait_with_output().expect("wait for ferry");
        assert!(out.status.success(), "{context}: {}", String::from_utf8_lossy(&out.stderr));
    }

    let list = run(&["status", "list", "web", d2, "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&list.expect_code(0).stdout()).expect("JSON");
    assert_eq!(doc["history"].as_array().unwrap().len(), 10, "{doc:#}");
    let latest = doc["latest"].as_array().unwrap();
    assert_eq!(latest.len(), 9, "{doc:#}");
    assert!(latest.iter().all(|r| r["state"] == "success"), "{doc:#}");

    let promoted = run(&["promote", "web", "--from", "development"]);
    promoted.expect_code(0);
    assert!(p.read("stages/production.toml").contains(&format!("2 = \"{d2}\"")), "{}", promoted.stderr());

    // The object itself, through the SDK: the whole history, oldest first.
    let client = moto.s3();
    let body = aws::block_on(async {
        let out = client.get_object().bucket(&bucket).key("teams/shop/records/status/web.json").send().await;
        out.expect("the status object exists").body.collect().await.expect("body").to_vec()
    });
    let stored: serde_json::Value = serde_json::from_slice(&body).expect("JSON object");
    let reports = stored["reports"].as_array().unwrap();
    assert_eq!(reports.len(), 10);
    assert_eq!((reports[0]["context"].as_str(), reports[0]["state"].as_str()), (Some("ci/tests"), Some("failure")));
    assert_eq!(reports[0]["description"], "2 failed");
    assert!(!p.path().join(".ferry/status").exists(), "nothing kept locally");
}

/// A competing request run just before the conflicting one, as if it had been in flight.
type Competitor = Box<dyn FnOnce() + Send>;

/// Makes S3 answer the next `remaining` PutObject requests on keys ending in `suffix` with
/// `409 ConditionalRequestConflict`, S3's answer while a competing conditional request on
/// the object is in flight — which moto never gives, and which no real part of the test
/// setup can provoke (the harness serialises requests). The request is first made to have
/// no effect on the emulator: its condition is replaced by an `If-Match` that no object
/// has, which moto refuses; then its refusal is rewritten to the 409. `competitor`, when
/// set, runs (for real, through another store) just before the first such request.
#[derive(Clone)]
struct InFlightConflicts {
    suffix: &'static str,
    remaining: Arc<AtomicUsize>,
    armed: Arc<AtomicBool>,
    competitor: Arc<Mutex<Option<Competitor>>>,
}

impl std::fmt::Debug for InFlightConflicts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlightConflicts").field("suffix", &self.suffix).field("remaining", &self.remaining).finish()
    }
}

impl InFlightConflicts {
    fn new(suffix: &'static str, count: usize) -> Self {
        InFlightConflicts {
            suffix,
            remaining: Arc::new(AtomicUsize::new(count)),
            armed: Arc::default(),
            competitor: Arc::default(),
        }
    }

    fn remaining(&self) -> usize {
        self.remaining.load(Ordering::SeqCst)
    }

    /// A store on the fixture's bucket whose requests pass through this layer.
    fn store(&self, f: &S3Fixture) -> S3StateStore {
        let config = aws_sdk_s3::config::Builder::from(&f.moto.sdk_config())
            .force_path_style(true)
            .interceptor(self.clone())
            .build();
        S3StateStore::new(aws_sdk_s3::Client::from_conf(config), &f.bucket, &f.prefix)
    }
}

impl Intercept for InFlightConflicts {
    fn name(&self) -> &'static str {
        "InFlightConflicts"
    }

    fn modify_before_transmit(
        &self,
        ctx: &mut BeforeTransmitInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = ctx.request_mut();
        let path = request.uri().split('?').next().unwrap_or_default().to_string();
        let put_object = request.method() == "PUT"
            && path.ends_with(self.suffix)
            && request.headers().get("x-amz-copy-source").is_none();
        let conflict =
            put_object && self.remaining.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        self.armed.store(conflict, Ordering::SeqCst);
        if conflict {
            if let Some(competitor) = self.competitor.lock().unwrap().take() {
                // Its own thread: it drives its requests with its own `block_on`.
                std::thread::spawn(competitor).join().expect("the competing request");
            }
            let headers = request.headers_mut();
            headers.remove("If-None-Match");
            headers.insert("If-Match", "\"00000000000000000000000000000000\"");
        }
        Ok(())
    }

    fn modify_before_deserialization(
        &self,
        ctx: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if self.armed.swap(false, Ordering::SeqCst) {
            let response = ctx.response_mut();
            assert!(!response.status().is_success(), "the emulator must have refused the neutralised request");
            *response.status_mut() = 409.try_into()?;
            *response.body_mut() = aws_sdk_s3::primitives::SdkBody::from(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>ConditionalRequestConflict</Code>\
                 <Message>A conflicting conditional operation is currently in progress against this resource. \
                 Please try again.</Message></Error>",
            );
        }
        Ok(())
    }
}

/// A `409 ConditionalRequestConflict` while nothing changed (the competing request failed
/// or did not touch the object) is tried again: the lock is taken and both the first write
/// (`If-None-Match: *`) and an update (`If-Match`) land, with the previous copy as usual.
#[test]
fn a_conflicting_request_in_flight_is_tried_again() {
    let f = S3Fixture::new();
    let conflicts = InFlightConflicts::new(".lock", 1);
    let info = LockInfo::for_this_process("ferry commit");
    conflicts.store(&f).try_lock("dev", &info).expect("taken on the second try");
    assert_eq!(conflicts.remaining(), 0, "the 409 was answered");
    assert_eq!(f.store().lock_holder("dev").unwrap(), Some(info));

    let conflicts = InFlightConflicts::new(".json", 2);
    let store = conflicts.store(&f);
    let mut s = sample("dev");
    store.write(&mut s).expect("create after a 409");
    let first = s.clone();
    s.apps.insert("api".into(), AppState::default());
    store.write(&mut s).expect("update after a 409");
    assert_eq!(conflicts.remaining(), 0, "both 409s were answered");
    assert_eq!(s.serial, 2);
    assert_eq!(f.store().read("dev").unwrap(), Some(s));
    assert_eq!(f.store().read_previous("dev").unwrap(), Some(first));
}

/// A `409` because a competing write was in flight — and landed: the store reads again,
/// sees another serial and reports the conflict; the competitor's state is stored, the
/// previous copy is the state both started from, and nothing of either is lost. A `409`
/// that never ends is a clear error after a bounded number of tries, with nothing written.
#[test]
fn a_write_refused_while_a_competing_one_lands_is_a_conflict() {
    let f = S3Fixture::new();
    let mut base = sample("dev");
    f.store().write(&mut base).unwrap();

    let conflicts = InFlightConflicts::new(".json", 1);
    let mut theirs = base.clone();
    theirs.apps.insert("theirs".into(), AppState::default());
    let competitor = f.store();
    let landed = Arc::new(Mutex::new(None));
    let landed_by = landed.clone();
    *conflicts.competitor.lock().unwrap() = Some(Box::new(move || {
        competitor.write(&mut theirs).expect("the competing write lands");
        *landed_by.lock().unwrap() = Some(theirs);
    }));
    let mut ours = base.clone();
    ours.apps.insert("ours".into(), AppState::default());
    let err = conflicts.store(&f).write(&mut ours).unwrap_err();
    assert!(matches!(err, StateError::Conflict { expected: 1, found: 2, .. }), "{err:?}");
    assert_eq!(ours.serial, 1, "our state is not claimed written");
    let theirs = landed.lock().unwrap().clone().expect("the competitor ran");
    assert_eq!(f.store().read("dev").unwrap(), Some(theirs.clone()), "the competitor's write is stored");
    assert_eq!(f.store().read_previous("dev").unwrap(), Some(base), "the previous copy is what both replaced");

    let forever = InFlightConflicts::new(".json", usize::MAX);
    let mut again = f.store().read("dev").unwrap().unwrap();
    again.apps.insert("ours".into(), AppState::default());
    let err = forever.store(&f).write(&mut again).unwrap_err();
    assert!(err.to_string().contains("kept reporting a conflicting write in flight"), "{err}");
    assert_eq!(f.store().read("dev").unwrap(), Some(theirs), "nothing written");
}
