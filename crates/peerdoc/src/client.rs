//! A blocking client of the daemon's HTTP API (`docs/api.md`).
