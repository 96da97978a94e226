//! One module per subcommand. Each `run` returns the process exit code and prints only
//! JSON lines on stdout.
//!
//! To add a subcommand: add its arguments to `cli::Command`, a module here with
//! `pub async fn run(args) -> ExitCode`, and a line in [`run`]. The admin client is the
//! SDK's (`onstage_client::AdminClient`; [`admin::client`] builds it from the command
//! line) and the bot's call handling in [`bot`] is reusable.

use std::process::ExitCode;

use crate::cli::Command;

pub mod admin;
pub mod bot;
pub mod client_bench;
pub mod devices;
pub mod load_test;
pub mod serve;

/// Runs one parsed command.
pub async fn run(command: Command) -> ExitCode {
    match command {
        Command::Serve(args) => serve::run(*args).await,
        Command::Meeting(command) => admin::meeting(command).await,
        Command::Participant(command) => admin::participant(command).await,
        Command::Preset(command) => admin::preset(command).await,
        Command::Invite(command) => admin::invite(command).await,
        Command::Bot(args) => bot::run(args).await,
        Command::LoadTest(args) => load_test::run(args).await,
        Command::Devices => devices::run().await,
    }
}

/// Resolves on Ctrl-C or SIGTERM: the server's own signal, so `serve` and `bot` stop alike.
pub use onstage_server::shutdown_signal;
