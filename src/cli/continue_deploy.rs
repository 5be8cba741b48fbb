//! `ferry continue [-s STAGE] APP`: release the pause hook an ECS deployment of APP waits at
//! (ContinueServiceDeployment). The commit watching it goes on by itself; `ferry abort`
//! rolls it back instead.

use clap::Args;

use crate::cli::agent::runtime_error;
use crate::cli::stage::select_stages;
use crate::cli::{CliError, CliResult, Context};
use crate::config;
use crate::runtime::ecs::EcsRuntime;

/// Release an ECS deployment waiting at a pause hook.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  ferry continue web\n  ferry continue -s production web")]
pub struct ContinueArgs {
    /// The stage. Not needed when the project has one stage.
    #[arg(short, long)]
    pub stage: Option<String>,
    /// The app whose deployment waits.
    pub app: String,
}

pub fn run(ctx: &Context, args: ContinueArgs) -> CliResult {
    let project = ctx.project()?;
    let name = select_stages(&project, args.stage.as_deref(), false)?.remove(0);
    let stage = config::load_stage(&project, &name).map_err(CliError::Config)?;
    let config::Runtime::Ecs(ecs) = &stage.runtime else {
        return Err(CliError::with_hint(
            format!("stage {name} runs locally: it has no deployment to continue"),
            "pause hooks are ECS lifecycle hooks (`hooks` in [apps.NAME.deploy] of an ecs stage)",
        ));
    };
    if !stage.apps.contains_key(&args.app) {
        return Err(CliError::new(format!("stage {name} has no app {}", crate::render::escape_line(&args.app))));
    }
    let sdk = crate::aws::block_on(crate::runtime::ecs::load_sdk_config(&ecs.region));
    let runtime = EcsRuntime::new(&name, ecs, &sdk);
    let released = crate::aws::block_on(runtime.continue_deployment(&args.app)).map_err(runtime_error)?;
    eprintln!("released the deployment of {} at {released}", args.app);
    Ok(())
}
