//! Deployment history: the pure helpers that give each deployment vN its words and origin,
//! and find rollback targets. The apply engine records deployments with them; `ferry
//! history`, `ferry releases` and `ferry rollback` read them back.
//!
//! - [`describe_change`] / [`change_kind`]: "Activate release 3 (sha256:2b51cd…)",
//!   "Config change: +FEATURE_X ~RAILS_ENV -OLD", "Scale 2 → 4", "Rollback to v5",
//!   "Promotion from staging (release 3)".
//! - [`Source::detect`](crate::state::Source::detect): the git checkout and CI run applying.
//! - [`rollback_target`]: which deployment `ferry rollback` restores, or why none;
//!   [`rollback_target_matching`]: whether an applied change *is* a rollback to some vN.
//! - [`relative_time`]: "3 days ago", with "now" pinnable for tests ([`now`]).

mod describe;
mod rollback;
mod source;
mod time;

pub use describe::{change_kind, describe_change, short_digest, NextDeployment};
pub use rollback::{earlier_target, rollback_target, rollback_target_matching, running_after_failure, RollbackRefusal};
pub use source::{operator, GitCheckout};
pub use time::{now, relative_time, NOW_VAR};
