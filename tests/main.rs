//! The one integration test binary: runs the real `ferry` binary against real files,
//! processes and (for AWS) a real emulator. One module per area.

mod support;

mod browser;
mod build;
mod cli_help;
mod commit;
mod ecs_deploy;
mod ecs_drift;
mod ecs_runtime;
mod ecs_taskdef;
mod edit;
mod error_messages;
mod examples;
mod faults;
mod first_run;
mod fmt;
mod hcl;
mod history;
mod image;
mod import;
mod local_docker;
mod local_runtime;
mod pipeline;
mod plan_cli;
mod preview;
mod preview_ecs;
mod releases;
mod runtime_conformance;
mod s3_store;
mod schema;
mod security;
mod soak;
mod state_store;
pub mod ui;
