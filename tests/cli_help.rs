//! Every command's `--help` ends with an example, so nobody has to guess the syntax.

use clap::CommandFactory;

/// Walk the command tree and collect the commands whose help has no example.
fn missing_examples(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
    for sub in cmd.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        let name = format!("{path} {}", sub.get_name());
        if sub.has_subcommands() {
            missing_examples(sub, &name, missing);
            continue;
        }
        let after = sub.get_after_help().map(|h| h.to_string()).unwrap_or_default();
        if !after.contains("Example") {
            missing.push(name);
        }
    }
}

#[test]
fn every_command_help_has_an_example() {
    let cli = ferry::cli::Cli::command();
    let mut missing = Vec::new();
    missing_examples(&cli, "ferry", &mut missing);
    assert!(missing.is_empty(), "commands whose --help has no example: {missing:?}");
    assert!(cli.get_subcommands().count() > 10, "the command tree was not walked");
}
