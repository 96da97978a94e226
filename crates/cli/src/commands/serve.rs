//! `onstage serve` (waiting for the server library's `start` API).

use std::process::ExitCode;

use onstage_proto::{ErrorBody, ErrorCode};

pub async fn run(_args: crate::cli::ServeArgs) -> ExitCode {
    crate::output::print_error(
        None,
        &ErrorBody::new(ErrorCode::Internal, "serve is not available in this build yet"),
    );
    ExitCode::FAILURE
}
