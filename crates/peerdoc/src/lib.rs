//! The peerdoc daemon and CLI.
//!
//! - [`api`]: the JSON bodies of the HTTP API, shared by server and client; the
//!   OpenAPI document is generated from them.
//! - [`daemon`]: `peerdoc run` — configuration, the node, the HTTP API, signals.
//! - [`server`]: the local HTTP API (see `docs/api.md`).
//! - [`client`]: a blocking client of that API, used by the CLI.
//! - [`cli`]: argument parsing and the client subcommands' output.
//! - [`team`]: teams: enrolment by invite code, membership, roles, revocation.
//! - [`shared_meta`]: titles and priorities every device sees.

pub mod api;
pub mod cli;
pub mod client;
pub mod cloud;
pub mod config;
pub mod daemon;
pub mod server;
pub mod shared_meta;
pub mod team;
