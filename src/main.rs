use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = runner::cli::Cli::parse();
    match runner::cli::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(runner::error::exit_code_for(&err))
        }
    }
}
