//! Command-line parsing and dispatch.

pub mod args;
mod commands;
mod error;
mod input;
pub(crate) mod output;

use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _};

use self::args::{Cli, Command};

/// Runs the `peerdoc` command line; the exit code is 0 on success, 1 on an error the
/// command reports, 2 on a usage error (clap's convention).
pub fn main() -> ExitCode {
    let matches = command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    match cli.command {
        Command::Run(ref run) => crate::daemon::main(&cli.global, run),
        ref command => commands::exec(&cli.global, command),
    }
}

/// The command line, with the client-only options (`--api-url`, `--token`, `--json`)
/// hidden from `peerdoc run --help`: they are global so that both `peerdoc --json
/// status` and `peerdoc status --json` work, but mean nothing to the daemon. `run`
/// gets hidden options of the same ids, which global propagation then leaves alone.
pub fn command() -> clap::Command {
    use clap::{Arg, ArgAction};
    Cli::command().mut_subcommand("run", |run| {
        run.arg(
            Arg::new("json")
                .long("json")
                .action(ArgAction::SetTrue)
                .hide(true),
        )
        .arg(Arg::new("api_url").long("api-url").hide(true))
        .arg(Arg::new("token").long("token").hide(true))
    })
}
