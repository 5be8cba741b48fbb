//! The planner: diff a desired stage against its recorded state (and, with `--refresh`, what
//! the runtime runs: `drift`) into a [`Changeset`], a DAG of [`Operation`]s; record
//! operations' effects back into state; save plans to files.
//!
//! State in, changeset out: nothing here reads files or the clock (saved plans aside, whose
//! callers pass the time), so the CLI and the apply engine decide when state is read and
//! written.

pub mod changeset;
pub mod diff;
pub mod drift;
#[doc(hidden)]
pub mod fixture;
pub mod operation;
pub mod planner;
pub mod record;
pub mod saved;

pub use changeset::{Changeset, Edge, InvalidChangeset};
pub use drift::Drift;
pub use operation::{DeployKind, Operation, Running};
pub use planner::{plan, plan_refreshed, PlanError, PlanOptions, ReboundRelease, RemovalReason, KEEP_REVISIONS};
pub use record::{record, Outcome};
pub use saved::{input_hash, Moved, SavedPlan, SavedPlanError, StalePlan, PLAN_FORMAT_VERSION};

#[cfg(test)]
mod tests;
