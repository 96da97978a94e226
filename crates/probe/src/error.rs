use onstage_client::{ClientError, ErrorCode};

/// Why a probe could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The probe's UDP socket could not be set up.
    #[error("udp socket: {0}")]
    Socket(#[from] std::io::Error),
    /// The server refused the media call, or the signaling connection failed.
    #[error("signaling: {0}")]
    Signaling(#[from] ClientError),
    /// Signaling through something other than an Onstage meeting (another SFU's API)
    /// failed.
    #[error("signaling: {0}")]
    Peer(String),
    /// Our offer could not be made or the server's answer could not be applied.
    #[error("sdp: {0}")]
    Sdp(String),
    /// The answer was applied but a media line we need is missing from it.
    #[error("negotiation: {0}")]
    Negotiation(String),
    /// The WebRTC session did not come up in time.
    #[error("the WebRTC session did not connect within {0:?}")]
    ConnectTimeout(std::time::Duration),
    /// The session ended before it connected.
    #[error("the WebRTC session ended before it connected")]
    ClosedBeforeConnect,
}

impl ProbeError {
    /// The server's error code when the server refused the call.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ProbeError::Signaling(e) => Some(e.code()),
            _ => None,
        }
    }
}
