//! ferry: declarative deploys of container apps to AWS ECS or a local runtime.
//!
//! See `docs/ARCHITECTURE.md` for a map of the modules.

pub mod apply;
pub mod atomic_file;
pub mod aws;
pub mod build;
pub mod cli;
pub mod config;
pub mod edit;
pub mod events;
pub mod history;
pub mod import;
pub mod pipeline;
pub mod plan;
pub mod poll;
pub mod preview;
pub mod private_files;
pub mod process;
pub mod registry;
pub mod render;
pub mod runtime;
pub mod state;
pub mod ui;
