//! Recorded state: the model (`model`), and where it is kept (`StateStore` and its
//! implementations).

pub mod model;

pub use model::*;
