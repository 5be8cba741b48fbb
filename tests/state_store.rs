//! Integration tests: state_store.
