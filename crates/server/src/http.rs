//! The HTTP front door: accepts TCP (and TLS) connections, holds each to the caps of
//! [`crate::limits`] and serves it with hyper under time limits.
//!
//! What a connection may cost, and for how long:
//! - It is counted from `accept` until its socket closes — a WebSocket upgrade keeps its
//!   place (the count travels inside the stream), so signaling sockets count too.
//! - Over a cap it gets a fast `503` and is closed, and nothing else changes: existing
//!   connections are untouched. Refusals run on a few tasks of their own, each bounded in
//!   time; past that many, refused connections are closed unanswered.
//! - The TLS handshake must finish within [`ServerConfig::tls_handshake_timeout`].
//! - A request's head must arrive within [`ServerConfig::http_header_timeout`], counted
//!   from when the connection starts waiting for it: a new connection's first request and
//!   each keep-alive one, so it is the idle timeout as well. Half-open requests (slowloris)
//!   are closed by it.
//! - A request (its body included) must be answered within
//!   [`ServerConfig::http_request_timeout`], else `408`.
//!
//! [`ServerConfig::tls_handshake_timeout`]: crate::ServerConfig::tls_handshake_timeout
//! [`ServerConfig::http_header_timeout`]: crate::ServerConfig::http_header_timeout
//! [`ServerConfig::http_request_timeout`]: crate::ServerConfig::http_request_timeout

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::limits::{ConnectionLimits, ConnectionPermit, Refusal};
use crate::metrics::{Metrics, RefusedLabels};

/// Refused connections answered at once; more are closed without an answer.
const MAX_REFUSING: usize = 64;
/// How long a refused connection may take to be told (and, with TLS, to handshake).
const REFUSE_TIMEOUT: Duration = Duration::from_secs(2);

/// How the front door serves.
#[derive(Clone)]
pub(crate) struct FrontDoor {
    pub app: Router,
    pub limits: Arc<ConnectionLimits>,
    pub tls: Option<TlsAcceptor>,
    pub handshake_timeout: Duration,
    pub header_timeout: Duration,
    pub metrics: Arc<Metrics>,
}

impl FrontDoor {
    /// Accepts until `stop` turns true, then stops accepting (the port closes), lets every
    /// connection finish its request in flight and returns once all have closed. (Upgraded
    /// WebSockets are not waited for here: they watch the stop themselves.)
    pub(crate) async fn serve(self, listener: TcpListener, mut stop: watch::Receiver<bool>) {
        let door = Arc::new(self);
        let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
        let mut connections = JoinSet::new();
        let mut trim = Trim::default();
        loop {
            tokio::select! {
                () = stopped(&mut stop) => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => {
                    trim.closed(door.limits.open());
                }
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        // Signaling is small messages both ways: Nagle's algorithm would
                        // hold a reply behind an event until the peer's delayed ACK.
                        let _ = tcp.set_nodelay(true);
                        match door.limits.admit(peer.ip()) {
                            Ok(permit) => {
                                trim.opened(door.limits.open());
                                connections.spawn(door.clone().connection(tcp, peer, permit, stop.clone()));
                            }
                            Err(refusal) => {
                                door.metrics
                                    .http_refused
                                    .get_or_create(&RefusedLabels { reason: refusal.as_str() })
                                    .inc();
                                tracing::debug!(%peer, reason = refusal.as_str(), "connection refused");
                                if let Ok(slot) = refusing.clone().try_acquire_owned() {
                                    let tls = door.tls.clone();
                                    connections.spawn(async move {
                                        refuse(tcp, tls, refusal).await;
                                        drop(slot);
                                    });
                                }
                            }
                        }
                    }
                    Err(e) => accept_error(e).await,
                },
            }
        }
        drop(listener);
        while connections.join_next().await.is_some() {}
    }

    async fn connection(
        self: Arc<Self>,
        tcp: tokio::net::TcpStream,
        peer: SocketAddr,
        permit: ConnectionPermit,
        stop: watch::Receiver<bool>,
    ) {
        match &self.tls {
            None => self.serve_io(Counted::new(tcp, permit), peer, stop).await,
            Some(acceptor) => {
                match tokio::time::timeout(self.handshake_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => self.serve_io(Counted::new(tls, permit), peer, stop).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            }
        }
    }

    async fn serve_io<S>(&self, io: Counted<S>, peer: SocketAddr, mut stop: watch::Receiver<bool>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let app = self.app.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            // What `into_make_service_with_connect_info` would give: handlers can see who
            // is asking (the admin back-off counts by source).
            request.extensions_mut().insert(ConnectInfo(peer));
            tower_service::Service::call(&mut app.clone(), request)
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_timeout)
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        tokio::pin!(connection);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
                }
            }
            () = stopped(&mut stop) => {
                // Finish the request in flight, then close.
                connection.as_mut().graceful_shutdown();
                let _ = connection.await;
            }
        }
    }
}

/// Gives the memory of closed connections back to the system after a flood.
///
/// glibc's allocator keeps what thousands of connections had allocated in its per-thread
/// arenas, fragmented, and each flood left the process larger than the last (BENCHMARKS.md,
/// "Floods"). Once most of a crowd of connections has gone, `malloc_trim` returns the free
/// pages. It runs only after a drop of [`Trim::AFTER_CLOSED`] connections, so ordinary
/// coming and going never pays for it.
#[derive(Debug, Default)]
struct Trim {
    /// The most connections open since the last trim.
    high_water: usize,
}

impl Trim {
    const AFTER_CLOSED: usize = 1000;

    fn opened(&mut self, open: usize) {
        self.high_water = self.high_water.max(open);
    }

    fn closed(&mut self, open: usize) {
        if self.high_water >= open + Self::AFTER_CLOSED && open <= self.high_water / 2 {
            self.high_water = open;
            // It walks every arena: off the async threads.
            tokio::task::spawn_blocking(trim_allocator);
        }
    }
}

/// Returns free heap memory to the system, where the allocator can.
pub fn trim_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; it is safe to call at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Completes once the server stops. (The watch's guard must not live across an await.)
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// The 503 a connection over a cap gets, in our JSON error shape.
fn refusal_response(refusal: Refusal) -> Vec<u8> {
    let message = match refusal {
        Refusal::ServerFull => "the server holds as many connections as it can; try again shortly",
        Refusal::SourceFull => "too many connections from your address; close some and try again",
        Refusal::SourceTooFast => {
            "your address opens connections too fast; wait a moment and try again"
        }
    };
    let error = onstage_proto::ErrorBody::new(onstage_proto::ErrorCode::RateLimited, message);
    let body = serde_json::to_string(&onstage_proto::rest::Envelope::<()>::Failure(error))
        .unwrap_or_default();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 5\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Answers 503 and closes, within [`REFUSE_TIMEOUT`].
async fn refuse(tcp: tokio::net::TcpStream, tls: Option<TlsAcceptor>, refusal: Refusal) {
    let response = refusal_response(refusal);
    let _ = tokio::time::timeout(REFUSE_TIMEOUT, async move {
        match tls {
            None => answer_and_close(tcp, &response).await,
            Some(acceptor) => match acceptor.accept(tcp).await {
                Ok(tls) => answer_and_close(tls, &response).await,
                Err(e) => Err(e),
            },
        }
    })
    .await;
}

/// Waits for the request's head (an HTTP client takes an answer that comes before its
/// request for a broken connection), writes the answer, ends our side and reads what the
/// client still sends until it closes: closing a socket with unread input sends a reset,
/// which can destroy the answer before the client has read it.
async fn answer_and_close<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    response: &[u8],
) -> io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8 * 1024 {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    stream.write_all(response).await?;
    stream.shutdown().await?;
    let mut sink = [0u8; 1024];
    while stream.read(&mut sink).await? > 0 {}
    Ok(())
}

/// As axum's own listener does: a connection that died before it was accepted is nothing;
/// anything else (out of file descriptors) is logged and paced.
async fn accept_error(e: io::Error) {
    use io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept error");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// A stream that holds its connection's place in the caps until it is dropped — after
/// an upgrade, inside the WebSocket.
struct Counted<S> {
    inner: S,
    _permit: ConnectionPermit,
}

impl<S> Counted<S> {
    fn new(inner: S, permit: ConnectionPermit) -> Self {
        Self {
            inner,
            _permit: permit,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The highest number of open files this process may have, after raising the soft limit
/// to the hard one where the system allows it (Linux often starts processes at 1024 with a
/// far higher hard limit). `None` where it cannot be read.
pub fn raise_open_files_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        match rlimit::increase_nofile_limit(u64::MAX) {
            Ok(limit) => Some(limit),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read or raise the open-files limit");
                rlimit::Resource::NOFILE.get().ok().map(|(soft, _)| soft)
            }
        }
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The connection cap when none is configured: most of the open-files limit, keeping room
/// for the SFU's ICE-TCP connections, the database and refusals.
pub fn default_max_connections(open_files: Option<u64>) -> usize {
    const WITHOUT_A_LIMIT: usize = 10_000;
    let reserve = crate::sfu::net::MAX_TCP_CONNECTIONS as u64 + MAX_REFUSING as u64 + 256;
    match open_files {
        Some(limit) => {
            let usable = limit.saturating_sub(reserve) * 3 / 4;
            usize::try_from(usable)
                .unwrap_or(usize::MAX)
                .clamp(64, 100_000)
        }
        None => WITHOUT_A_LIMIT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_stays_under_the_open_files_limit() {
        for limit in [1024u64, 4096, 20_000, 1_048_576] {
            let cap = default_max_connections(Some(limit)) as u64;
            assert!(cap >= 64);
            if limit > 4096 {
                assert!(
                    cap + crate::sfu::net::MAX_TCP_CONNECTIONS as u64 + MAX_REFUSING as u64
                        <= limit,
                    "{cap} for {limit}"
                );
            }
        }
        assert_eq!(default_max_connections(None), 10_000);
    }

    #[test]
    fn the_refusal_is_a_complete_http_response() {
        let response = String::from_utf8(refusal_response(Refusal::SourceFull)).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "));
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(length, body.len());
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "rate_limited");
    }
}
