//! The local AWS emulator for tests: moto's server (PyPI `moto[server]`, pinned below),
//! installed into the shared test venv under `target/` when missing and started on
//! 127.0.0.1 on a port the OS picks.
//!
//! - [`Moto::shared`]: one server for the whole test binary. Tests isolate themselves by
//!   name (each takes its own bucket, cluster…) instead of resetting it, since tests run in
//!   parallel and a reset would wipe a neighbour's data.
//! - [`Moto::start`]: a server of the test's own (with extra environment, e.g.
//!   `MOTO_ECS_SERVICE_RUNNING`), which it may [`reset`](Moto::reset) at will; killed when
//!   dropped.
//!
//! No server outlives the test process, however that ends: each is started with
//! `PR_SET_PDEATHSIG` (from a thread kept alive for the process' lifetime, because the
//! signal fires when the *thread* that forked the child exits) and also exits itself when
//! its stdin, a pipe from this process, reaches end of file.
//!
//! moto checks an S3 precondition (`If-Match`, `If-None-Match`) and then writes, with no
//! lock between the two, so two concurrent conditional writes can both pass (checked on
//! 5.2.5: 1 round in 40 with 8 racing `If-Match` writers let two through). Real S3 lets
//! exactly one through. The launcher therefore serves moto's WSGI app one request at a time.
//! moto also ignores `x-amz-copy-source-if-match` on CopyObject (the S3 state store keeps
//! its previous copy with it); the launcher answers such a copy whose source has another
//! ETag with S3's `412 PreconditionFailed` before moto sees it. Nothing else is changed.
//!
//! Anything that goes wrong panics with the server's log: a test that needs the emulator
//! fails, never skips.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use aws_sdk_s3::config::Credentials;
use ferry::aws::{self, AwsSettings};

use super::python::{python_venv, PythonVenv};

/// The moto release the harness installs (the one the issue's notes were checked on).
pub const MOTO_REQUIREMENT: &str = "moto[server]==5.2.5";
/// The CBOR codec the ECS emulator answers CloudWatch with (the Rust SDK speaks CloudWatch's
/// Smithy RPC v2 CBOR protocol, which moto does not).
pub const CBOR_REQUIREMENT: &str = "cbor2==5.6.5";
/// Region every client of the emulator uses (not us-east-1, so region handling is real).
pub const REGION: &str = "eu-central-1";

/// A stage file's `[runtime]` section for ECS on the emulator: `cluster`, and the subnets and
/// security groups of `net` (the JSON the tests' cluster set-up prints).
pub fn ecs_runtime_section(cluster: &str, net: &serde_json::Value) -> String {
    format!(
        "[runtime]\nkind = \"ecs\"\nregion = \"{REGION}\"\ncluster = \"{cluster}\"\nsubnets = [{}]\n\
         security_groups = [{}]\n",
        super::toml_strings_of(&net["subnets"]),
        super::toml_strings_of(&net["security_groups"]),
    )
}
/// Static credentials; moto accepts any.
pub const ACCESS_KEY_ID: &str = "testing";
pub const SECRET_ACCESS_KEY: &str = "testing";

/// How long the server may take to start (imports moto and its backends).
const START_DEADLINE: Duration = Duration::from_secs(120);

/// Runs moto's app from Python: binds port 0, prints the port, serves requests one at a
/// time with the copy-source condition added (see the module doc), and exits when stdin
/// closes.
const LAUNCHER: &str = r#"
import os, sys, threading
from urllib.parse import unquote
from werkzeug.serving import make_server
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from moto.s3.models import s3_backends

app = DomainDispatcherApplication(create_backend_app)
one_at_a_time = threading.Lock()

from moto.ecs.responses import EC2ContainerServiceResponse
moto_create_service = EC2ContainerServiceResponse.create_service

def create_service(self):
    # moto keeps the capacity provider strategy and ECS Exec on UpdateService but drops
    # them on CreateService: keep them here too, as ECS does.
    result = moto_create_service(self)
    cluster = self._get_param("cluster", "default").split("/")[-1]
    service = self.ecs_backend.services.get(cluster + ":" + self._get_param("serviceName"))
    if service is not None:
        service.capacity_provider_strategy = self._get_param("capacityProviderStrategy")
        service.enable_execute_command = bool(self._get_param("enableExecuteCommand"))
    return result

EC2ContainerServiceResponse.create_service = create_service

from moto.ecs.models import EC2ContainerServiceBackend
moto_requirements = EC2ContainerServiceBackend._calculate_task_resource_requirements

def task_requirements(task_definition):
    # ECS on Fargate takes a container without its own memory (a sidecar sharing the task's);
    # moto's RunTask adds None and fails with a 500. Count such a container as 0 MiB.
    saved = [dict(c) for c in task_definition.container_definitions]
    for c in task_definition.container_definitions:
        if all(c.get(k) is None for k in ("memory", "memoryReservation", "Memory", "MemoryReservation")):
            c["memory"] = 0
    try:
        return moto_requirements(task_definition)
    finally:
        for c, before in zip(task_definition.container_definitions, saved):
            c.clear()
            c.update(before)

EC2ContainerServiceBackend._calculate_task_resource_requirements = staticmethod(task_requirements)

def copy_source_changed(environ):
    expected = environ.get("HTTP_X_AMZ_COPY_SOURCE_IF_MATCH")
    source = environ.get("HTTP_X_AMZ_COPY_SOURCE")
    if environ["REQUEST_METHOD"] != "PUT" or not expected or not source:
        return False
    bucket, _, key = unquote(source.split("?")[0]).lstrip("/").partition("/")
    where = s3_backends.bucket_accounts.get(bucket)
    obj = where and s3_backends[where[1]][where[0]].get_object(bucket, key)
    return bool(obj) and obj.etag.strip('"') != expected.strip('"')

PRECONDITION_FAILED = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>PreconditionFailed</Code>'
    b'<Message>At least one of the pre-conditions you specified did not hold</Message>'
    b'<Condition>x-amz-copy-source-If-Match</Condition></Error>')

def serialized(environ, start_response):
    with one_at_a_time:
        if copy_source_changed(environ):
            start_response("412 Precondition Failed", [("Content-Type", "application/xml")])
            return [PRECONDITION_FAILED]
        return list(app(environ, start_response))

server = make_server("127.0.0.1", 0, serialized, threaded=True, request_handler=MotoRequestHandler)
os.environ["MOTO_PORT"] = str(server.port)
print(server.port, flush=True)
sys.stdout = sys.stderr

def exit_with_parent():
    sys.stdin.buffer.read()
    os._exit(0)

threading.Thread(target=exit_with_parent, daemon=True).start()
server.serve_forever()
"#;

/// A running moto server.
pub struct Moto {
    port: u16,
    child: Mutex<Child>,
    log: PathBuf,
    venv: PythonVenv,
}

impl Moto {
    /// The server shared by every test in this binary, started on first use.
    pub fn shared() -> &'static Moto {
        static SHARED: OnceLock<Moto> = OnceLock::new();
        SHARED.get_or_init(|| Moto::start(&[]))
    }

    /// A server of its own, with `env` added to its environment; killed when dropped.
    pub fn start(env: &[(&str, &str)]) -> Moto {
        Moto::launch(&["-c", LAUNCHER], env, &[MOTO_REQUIREMENT])
    }

    /// The ECS emulator of its own: moto with the service scheduler of
    /// `tests/support/ecs_emulator.py` (rollouts, the 2025 deployment APIs, strategies,
    /// hooks, alarms, the circuit breaker), rollouts taking `rollout_delay_s` seconds and
    /// a bake time minute lasting one second; killed when dropped.
    pub fn start_emulator(rollout_delay_s: f64) -> Moto {
        Moto::start_emulator_with(rollout_delay_s, &[])
    }

    /// [`start_emulator`](Moto::start_emulator) with `env` added to the emulator's
    /// environment, e.g. `ECS_EMULATOR_DRAIN` for services that stay DRAINING a while after
    /// DeleteService, as on ECS.
    pub fn start_emulator_with(rollout_delay_s: f64, env: &[(&str, &str)]) -> Moto {
        let script = super::repo_root().join("tests/support/ecs_emulator.py");
        let delay = rollout_delay_s.to_string();
        let mut all = vec![("ECS_EMULATOR_ROLLOUT_DELAY", delay.as_str()), ("ECS_EMULATOR_MINUTE", "1")];
        all.extend_from_slice(env);
        Moto::launch(&[script.to_str().expect("UTF-8 repository path")], &all, &[MOTO_REQUIREMENT, CBOR_REQUIREMENT])
    }

    /// The Python server given by `args`, with `env` added to its environment.
    fn launch(args: &[&str], env: &[(&str, &str)], requirements: &[&str]) -> Moto {
        let venv = python_venv(requirements);
        let log_dir = venv.dir.parent().expect("venv under target/").join("moto-logs");
        std::fs::create_dir_all(&log_dir).expect("create target/moto-logs");
        let log = log_dir.join(format!("moto-{}-{}.log", std::process::id(), uuid::Uuid::new_v4().simple()));
        let log_file = std::fs::File::create(&log).expect("create the moto log");

        let mut cmd = Command::new(venv.python());
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_DEFAULT_REGION", REGION)
            .envs(env.iter().copied());
        let parent = std::process::id();
        // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent died before prctl took effect: nobody will ever stop us.
                if libc::getppid() as u32 != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        let mut child = spawn_from_kept_thread(cmd)
            .unwrap_or_else(|e| panic!("cannot start moto server with {}: {e}", venv.python().display()));

        // The launcher prints its port once bound; read it with a deadline.
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(START_DEADLINE).unwrap_or_default();
        let port = match line.trim().parse::<u16>() {
            Ok(port) => port,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "moto server did not start within {START_DEADLINE:?} (printed {line:?})\n--- log {}\n{}",
                    log.display(),
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        let moto = Moto { port, child: Mutex::new(child), log, venv };
        moto.wait_ready();
        moto
    }

    /// Poll the server's own API until it answers, failing with its log after the deadline.
    fn wait_ready(&self) {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            match self.request("GET", "/moto-api/data.json") {
                Ok((200, _)) => return,
                other if Instant::now() >= deadline => {
                    panic!("moto server on port {} is not ready: {other:?}\n--- log\n{}", self.port, self.log_text())
                }
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server's log (werkzeug writes one line per request).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The venv moto runs from; it has boto3 too, for reading back with another client.
    pub fn venv(&self) -> &PythonVenv {
        &self.venv
    }

    /// Forget everything the server holds (`POST /moto-api/reset`). Only for a server of
    /// the test's own: on [`Moto::shared`] it would wipe other tests' data.
    pub fn reset(&self) {
        match self.request("POST", "/moto-api/reset") {
            Ok((200, _)) => {}
            other => panic!("moto reset failed: {other:?}"),
        }
    }

    /// One HTTP request to the server; `(status, body)`.
    pub fn request(&self, method: &str, path: &str) -> std::io::Result<(u16, String)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        Ok((status, body))
    }

    /// Settings for ferry's AWS clients: this endpoint, the region, static credentials.
    pub fn settings(&self) -> AwsSettings {
        AwsSettings {
            region: Some(REGION.into()),
            endpoint_url: Some(self.endpoint()),
            credentials: Some(Credentials::new(ACCESS_KEY_ID, SECRET_ACCESS_KEY, None, None, "moto")),
        }
    }

    /// An SDK configuration onto this server.
    pub fn sdk_config(&self) -> aws_config::SdkConfig {
        aws::block_on(aws::load_config(&self.settings()))
    }

    /// A plain S3 client onto this server (to plant and inspect objects behind a store).
    pub fn s3(&self) -> aws_sdk_s3::Client {
        aws::s3_client(&self.sdk_config())
    }

    /// Create a bucket with a fresh name starting with `purpose`, and return the name.
    pub fn new_bucket(&self, purpose: &str) -> String {
        let name = format!("{purpose}-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let client = self.s3();
        aws::block_on(async {
            client
                .create_bucket()
                .bucket(&name)
                .create_bucket_configuration(
                    aws_sdk_s3::types::CreateBucketConfiguration::builder()
                        .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(REGION))
                        .build(),
                )
                .send()
                .await
        })
        .unwrap_or_else(|e| panic!("create bucket {name}: {}", aws_sdk_s3::error::DisplayErrorContext(e)));
        name
    }

    /// The environment a child process (the `ferry` binary, boto3, the AWS CLI) needs to
    /// reach this server through the standard chain, and nothing else.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY.into()),
            ("AWS_REGION", REGION.into()),
            ("AWS_DEFAULT_REGION", REGION.into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            // Keep a developer's own profile and files out of it.
            ("AWS_CONFIG_FILE", "/dev/null".into()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".into()),
        ]
    }

    /// Point `cmd` at this server (see [`env`](Self::env)), clearing other AWS settings.
    pub fn configure(&self, cmd: &mut Command) {
        for var in ["AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_ECS"] {
            cmd.env_remove(var);
        }
        cmd.envs(self.env());
    }

    /// Run a Python script (boto3 is there) against this server.
    pub fn python(&self, script: &str, args: &[&str]) -> Output {
        let mut cmd = Command::new(self.venv.python());
        cmd.arg("-c").arg(script).args(args).stdin(Stdio::null());
        self.configure(&mut cmd);
        cmd.output().unwrap_or_else(|e| panic!("cannot run {}: {e}", self.venv.python().display()))
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|p| p.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Spawn `cmd` from a thread that lives as long as the process: `PR_SET_PDEATHSIG` fires
/// when the forking thread exits, and test threads end with their test.
fn spawn_from_kept_thread(mut cmd: Command) -> std::io::Result<Child> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new().name("moto-keeper".into()).spawn(move || {
        let _ = tx.send(cmd.spawn());
        loop {
            std::thread::park();
        }
    })?;
    rx.recv().expect("the keeper thread sends the spawn result")
}
