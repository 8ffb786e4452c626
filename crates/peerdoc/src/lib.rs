//! The peerdoc daemon and CLI.
//!
//! - [`daemon`]: `peerdoc run` — configuration, the node, the HTTP API, signals.
//! - [`server`]: the local HTTP API (see `docs/api.md`).
//! - [`client`]: a blocking client of that API, used by the CLI.
//! - [`cli`]: argument parsing and the client subcommands' output.
//! - [`team`]: teams: enrolment by invite code, membership, roles, revocation.

pub mod cli;
pub mod client;
pub mod cloud;
pub mod config;
pub mod daemon;
pub mod server;
pub mod team;
