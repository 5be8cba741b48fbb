//! The runtime conformance suite ([`ferry::runtime::conformance`]) on the real runtimes:
//! the local runtime (process driver, through a real agent, as `local_runtime` starts it;
//! Docker driver, real containers of images in the tests' registry, as `local_docker` starts
//! it) and the ECS runtime on the moto emulator. The in-memory runtime runs the same suite in
//! the library's unit tests. Adding a runtime or a driver is one more fixture and one
//! `runtime_conformance!` line.
//!
//! moto never starts a service's tasks and keeps one deployment through service updates, so
//! ECS passes the control-plane checks only; what ECS does with running tasks and rollouts
//! is covered in `ecs_runtime` through its fault layer.

use ferry::runtime::conformance::{sample_spec, Behaviour, RuntimeFixture, APP};
use ferry::runtime::{RevisionId, RevisionSpec, Runtime, TaskSpec};

use crate::support::agent::LocalFixture;

/// The local runtime, process driver: app `web` is the test's Python HTTP app; a revision
/// that is never healthy answers its check with 503.
pub struct Local(LocalFixture);

impl Local {
    pub fn new() -> Self {
        Local(LocalFixture::new())
    }
}

impl RuntimeFixture for Local {
    fn runtime(&self) -> &dyn Runtime {
        &self.0.runtime
    }

    fn spec(&self, release: u64, behaviour: Behaviour) -> RevisionSpec {
        match behaviour {
            Behaviour::Healthy => self.0.spec(release, &[]),
            Behaviour::NeverHealthy => self.0.spec(release, &[("HEALTHY", "0")]),
        }
    }

    fn one_off(&self, revision: &RevisionId, name: &str, line: &str, exit: Option<i32>) -> TaskSpec {
        let end = match exit {
            Some(code) => format!("raise SystemExit({code})"),
            None => "time.sleep(600)".into(),
        };
        let script = format!("import time; print({line:?}, flush=True); {end}");
        TaskSpec {
            app: APP.into(),
            revision: revision.clone(),
            command: Some(vec!["python3".into(), "-c".into(), script]),
            env: Default::default(),
            name: name.into(),
        }
    }
}

mod local {
    ferry::runtime_conformance!(super::Local::new());
}

/// The local runtime, Docker driver: app `web` is busybox's httpd in a container of an image
/// pushed to the tests' registry per release; a never-healthy release's image lacks the file
/// its health command looks for.
pub struct Docker(crate::local_docker::DockerFixture);

impl RuntimeFixture for Docker {
    fn runtime(&self) -> &dyn Runtime {
        &self.0.runtime
    }

    fn spec(&self, release: u64, behaviour: Behaviour) -> RevisionSpec {
        let digest = self.0.push(release, behaviour == Behaviour::Healthy);
        self.0.spec(release, &digest, crate::local_docker::SERVE)
    }

    fn one_off(&self, revision: &RevisionId, name: &str, line: &str, exit: Option<i32>) -> TaskSpec {
        let end = exit.map_or_else(|| "exec /bin/busybox sleep 600".to_string(), |c| format!("exit {c}"));
        TaskSpec {
            app: APP.into(),
            revision: revision.clone(),
            command: Some(vec!["/bin/busybox".into(), "sh".into(), "-c".into(), format!("echo {line:?}; {end}")]),
            env: Default::default(),
            name: name.into(),
        }
    }
}

mod docker {
    ferry::runtime_conformance!(super::Docker(crate::local_docker::DockerFixture::new()));
}

/// The ECS runtime on a cluster and stage of its own on the shared emulator.
pub struct Ecs {
    runtime: ferry::runtime::ecs::EcsRuntime,
}

impl Ecs {
    pub fn new() -> Self {
        use crate::ecs_runtime::{python_json, unique, SETUP_CLUSTER};
        use crate::support::moto::{Moto, REGION};
        let moto = Moto::shared();
        let cluster = unique("cluster-");
        let net = python_json(moto, SETUP_CLUSTER, &[&cluster]);
        let strings = |v: &serde_json::Value| -> Vec<String> {
            v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
        };
        let settings = ferry::config::EcsRuntime {
            region: REGION.into(),
            cluster,
            subnets: strings(&net["subnets"]),
            security_groups: strings(&net["security_groups"]),
            assign_public_ip: false,
            execution_role: Some("arn:aws:iam::123456789012:role/ecsTaskExecutionRole".into()),
            task_role: None,
            log_group: None,
        };
        Ecs { runtime: ferry::runtime::ecs::EcsRuntime::new(&unique("s"), &settings, &moto.sdk_config()) }
    }
}

impl RuntimeFixture for Ecs {
    fn runtime(&self) -> &dyn Runtime {
        &self.runtime
    }

    fn spec(&self, release: u64, behaviour: Behaviour) -> RevisionSpec {
        let mut spec = sample_spec(release);
        spec.image = "123456789012.dkr.ecr.eu-central-1.amazonaws.com/shop/web".into();
        let check = match behaviour {
            Behaviour::Healthy => "curl -f http://localhost:8080/health || exit 1",
            Behaviour::NeverHealthy => "exit 1",
        };
        spec.config.health.path = None;
        spec.config.health.command = Some(vec!["CMD-SHELL".into(), check.into()]);
        spec
    }

    fn one_off(&self, revision: &RevisionId, name: &str, line: &str, exit: Option<i32>) -> TaskSpec {
        let end = exit.map_or_else(|| "sleep 600".to_string(), |c| format!("exit {c}"));
        TaskSpec {
            app: APP.into(),
            revision: revision.clone(),
            command: Some(vec!["sh".into(), "-c".into(), format!("echo {line:?}; {end}")]),
            env: Default::default(),
            name: name.into(),
        }
    }
}

mod ecs {
    ferry::runtime_conformance!(control_plane: super::Ecs::new());
}
