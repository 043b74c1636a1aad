//! `schema check`: is every event type's newest version compatible with its
//! predecessors under the type's policy? Exit code 1 when not, for CI.

use std::path::PathBuf;
use std::process::ExitCode;

use modelbus::schema::SchemaRegistry;

#[derive(clap::Subcommand)]
pub enum SchemaCommand {
    /// Check every event type's versions for compatibility under its policy.
    Check {
        /// The schema directory (`<dir>/<EventType>/<n>.json`); overrides --config.
        #[arg(long)]
        dir: Option<PathBuf>,
        #[arg(long, short, default_value = "modelbus.toml")]
        config: PathBuf,
    },
}

pub fn schema(cmd: SchemaCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        SchemaCommand::Check { dir, config } => {
            let dir = match dir {
                Some(d) => d,
                None => super::load_config(&config)?.schemas,
            };
            let registry = SchemaRegistry::load(&dir)?;
            let problems = registry.check_all();
            if problems.is_empty() {
                println!("{}: every schema version is compatible under its policy", dir.display());
                return Ok(ExitCode::SUCCESS);
            }
            for (ty, version, inc) in &problems {
                println!("{ty} v{version}: {} at {}: {}", inc.rule, inc.path, inc.message);
            }
            println!("{} incompatible change(s)", problems.len());
            Ok(ExitCode::from(1))
        }
    }
}
