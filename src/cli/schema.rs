//! `ferry schema`: print the JSON Schema of the project or stage file.

use clap::{Args, ValueEnum};
use schemars::gen::SchemaSettings;

use crate::cli::{print_out, CliResult, Context};
use crate::config::file::{ProjectFile, StageFile};

/// Print the JSON Schema of ferry.toml or of a stage file (for editors and taplo).
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  ferry schema stage > stage.schema.json\n  ferry schema project")]
pub struct SchemaArgs {
    /// Which file's schema.
    #[arg(value_enum, default_value_t = SchemaKind::Stage)]
    pub kind: SchemaKind,
}

/// Which schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemaKind {
    /// ferry.toml
    Project,
    /// stages/NAME.toml
    Stage,
}

/// The schema as pretty JSON with a trailing newline, exactly as checked in under `schema/`.
pub fn schema_json(kind: SchemaKind) -> String {
    // TOML and HCL have no null, so an optional key is simply absent: leave `null` out of
    // the types editors offer.
    let generator = SchemaSettings::draft07().with(|s| s.option_add_null_type = false).into_generator();
    let schema = match kind {
        SchemaKind::Project => generator.into_root_schema_for::<ProjectFile>(),
        SchemaKind::Stage => generator.into_root_schema_for::<StageFile>(),
    };
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

pub fn run(_ctx: &Context, args: SchemaArgs) -> CliResult {
    print_out(&schema_json(args.kind))
}
