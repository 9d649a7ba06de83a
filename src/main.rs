//! The `mcp-zt` binary: parse arguments, run, print the error chain once, return an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = mcp_zt::cli::Cli::parse();
    match mcp_zt::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("mcp-zt: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
