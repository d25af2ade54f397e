//! The `treevis` binary: parse arguments, run one command, report errors on one line.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = treevis::cli::Cli::parse();
    treevis::cli::init_logging(cli.verbose);
    match treevis::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("treevis: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
