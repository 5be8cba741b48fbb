//! Recorded state: the model (`model`, its timestamps read by `timestamp`), its one encoding
//! (`codec`; a large file decoded in pieces by `json_chunks`), where it is kept
//! (`store`: the `StateStore` trait and the in-memory store; `local`: JSON files; `s3`:
//! objects in an S3 bucket, written with conditional requests), the
//! locked session commands work through (`session`), and the conformance suite every store
//! passes (`conformance`).

pub mod archive;
pub mod codec;
pub mod conformance;
mod error;
pub mod json_chunks;
pub mod local;
pub mod model;
pub mod s3;
pub mod session;
pub mod store;
mod timestamp;

pub use local::LocalStateStore;
pub use model::*;
pub use s3::S3StateStore;
pub use session::{command_line, open_store, LockedStage, StageLock};
pub use store::{InMemoryStateStore, LockInfo, Restored, StateError, StateStore};
