//! Integration tests: plan_cli.
