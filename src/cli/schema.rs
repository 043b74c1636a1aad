//! `schema check`: is every event type's newest version compatible with its
//! predecessors under the type's policy? Exit code 1 when not, for CI.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use modelbus::schema::SchemaRegistry;

use super::out::Out;

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
            let mut out = Out::new();
            if problems.is_empty() {
                writeln!(out, "{}: every schema version is compatible under its policy", dir.display())?;
                out.flush()?;
                return Ok(ExitCode::SUCCESS);
            }
            for (ty, version, inc) in &problems {
                writeln!(out, "{ty} v{version}: {} at {}: {}", inc.rule, inc.path, inc.message)?;
            }
            writeln!(out, "{} incompatible change(s)", problems.len())?;
            out.flush()?;
            Ok(ExitCode::from(1))
        }
    }
}
