//! Recorded state: the model (`model`), and where it is kept (`store`: the `StateStore`
//! trait and its implementations).

pub mod model;
pub mod store;

pub use model::*;
pub use store::{InMemoryStateStore, LockInfo, StateError, StateStore};
