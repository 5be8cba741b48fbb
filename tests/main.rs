//! The one integration test binary: runs the real `ferry` binary against real files,
//! processes and (for AWS) a real emulator. One module per area.

mod support;

mod commit;
mod ecs_runtime;
mod edit;
mod error_messages;
mod examples;
mod fmt;
mod hcl;
mod image;
mod local_runtime;
mod plan_cli;
mod s3_store;
mod schema;
mod state_store;
