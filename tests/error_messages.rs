//! Integration tests: error_messages.
