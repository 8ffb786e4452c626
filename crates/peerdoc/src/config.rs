//! The daemon's configuration: defaults, TOML file, environment, flags.
