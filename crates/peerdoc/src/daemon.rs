//! `peerdoc run`: start the node and the API, wait for a signal, shut down cleanly.

use std::process::ExitCode;

use crate::cli::args::{GlobalArgs, RunArgs};

/// Runs the daemon until SIGINT/SIGTERM.
pub fn main(_global: &GlobalArgs, _run: &RunArgs) -> ExitCode {
    eprintln!("peerdoc: the daemon is not built yet");
    ExitCode::FAILURE
}
