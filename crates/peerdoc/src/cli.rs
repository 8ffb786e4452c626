//! Command-line parsing and dispatch.

pub mod args;
mod commands;
mod error;
mod input;
mod output;

use std::process::ExitCode;

use clap::Parser as _;

use self::args::{Cli, Command};

/// Runs the `peerdoc` command line; the exit code is 0 on success, 1 on an error the
/// command reports, 2 on a usage error (clap's convention).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(ref run) => crate::daemon::main(&cli.global, run),
        ref command => commands::exec(&cli.global, command),
    }
}
