//! One module per subcommand. Each `run` returns the process exit code and prints only
//! JSON lines on stdout.
//!
//! To add a subcommand: add its arguments to `cli::Command`, a module here with
//! `pub async fn run(args) -> ExitCode`, and a line in [`run`]. The admin helpers
//! in [`admin`] (`AdminClient`) and the bot's call handling in [`bot`] are reusable.

use std::process::ExitCode;

use crate::cli::Command;

pub mod admin;
pub mod bot;
pub mod client_bench;
pub mod load_test;
pub mod serve;

/// Runs one parsed command.
pub async fn run(command: Command) -> ExitCode {
    match command {
        Command::Serve(args) => serve::run(args).await,
        Command::Meeting(command) => admin::meeting(command).await,
        Command::Participant(command) => admin::participant(command).await,
        Command::Preset(command) => admin::preset(command).await,
        Command::Bot(args) => bot::run(args).await,
        Command::LoadTest(args) => load_test::run(args).await,
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
