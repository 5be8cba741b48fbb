//! Integration tests: local_runtime.
