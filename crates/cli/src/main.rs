//! `onstage`: a scriptable shell over the Onstage server and SDK.
//!
//! Everything on stdout is JSON, one object a line; logs go to stderr (`RUST_LOG` sets the
//! level). Each subcommand lives in its own module under `commands/`.

use std::process::ExitCode;

use clap::Parser;

mod cli;
mod commands;
mod output;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.command);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            output::print_error(
                None,
                &onstage_proto::ErrorBody::new(
                    onstage_proto::ErrorCode::Internal,
                    format!("cannot start the async runtime: {e}"),
                ),
            );
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(commands::run(cli.command))
}

/// Logs go to stderr, never stdout. `serve` logs at `info` by default, the client commands
/// at `warn`; `RUST_LOG` overrides both. The WebRTC stack's handshake chatter (STUN checks
/// that beat the answer, DTLS server-name defaults) is benign and kept to errors. The OS
/// certificate verifier's own error log is silenced: a refused certificate is reported
/// on stdout as `untrusted_server`.
fn init_logging(command: &Command) {
    let default = match command {
        Command::Serve(_) => "info,rtc=error,rtc_dtls=error,webrtc=error",
        _ => "warn,rtc=error,rtc_dtls=error,webrtc=error,rustls_platform_verifier=off",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}
