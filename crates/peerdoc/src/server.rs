//! The local HTTP API (`docs/api.md`).
