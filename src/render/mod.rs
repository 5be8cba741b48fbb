//! Rendering plans: a changeset becomes one view model ([`view`]), which each format reads:
//! [`text`] for people at a terminal, [`json`] for machines, [`markdown`] for pull-request
//! comments, [`dot`] for `ferry graph`.

pub mod dot;
pub mod json;
pub mod markdown;
pub mod text;
pub mod view;

pub use view::{Action, AppView, Counts, OperationView, PlanView, StageView, JSON_FORMAT_VERSION};
