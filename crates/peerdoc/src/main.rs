//! `peerdoc`: the daemon (`peerdoc run`) and the client commands that talk to it.

fn main() -> std::process::ExitCode {
    peerdoc::cli::main()
}
