//! Putting it together: storage and secrets, the router, the listener, graceful shutdown.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::auth::Auth;
use crate::config::ServerConfig;
use onstage_proto::{Fingerprint, InviteLink, LinkError, MeetingId};
use url::Url;

use crate::error::{ApiError, ServerError};
use crate::limits::{AdminBackoff, ConnectionLimits};
use crate::metrics::{HttpLabels, Metrics};
use crate::rooms::Rooms;
use crate::storage::{
    load_or_create_secret, random_secret, Storage, ADMIN_KEY_FILE, JWT_SECRET_FILE,
};
use crate::tls::ServerTls;

/// What every handler shares.
#[derive(Debug)]
pub struct AppState {
    pub config: ServerConfig,
    pub storage: Storage,
    pub auth: Auth,
    pub rooms: Rooms,
    pub metrics: Arc<Metrics>,
    /// Failed admin keys, per source.
    pub admin_backoff: AdminBackoff,
    /// The HTTP connection caps.
    pub limits: Arc<ConnectionLimits>,
    /// Flips to `true` when the server shuts down; every connection watches it.
    pub shutdown: watch::Receiver<bool>,
    /// Held (cloned) by every signaling connection; a graceful shutdown waits until every
    /// clone is gone.
    pub(crate) alive: mpsc::Sender<()>,
    /// What invite links name: the public URL and, for a self-signed certificate, its
    /// fingerprint.
    pub invites: Invites,
}

/// The server part of invite links.
#[derive(Debug, Clone)]
pub struct Invites {
    pub server: Url,
    pub fingerprint: Option<Fingerprint>,
}

impl Invites {
    /// `onstage://join?server=..&token=..[&fp=..]`.
    pub fn link(&self, token: &str) -> Result<InviteLink, LinkError> {
        InviteLink::new(self.server.clone(), token, self.fingerprint)
    }

    /// `onstage://join?server=..&invite=..[&fp=..]`, for a role invite token.
    pub fn role_link(&self, invite_token: &str) -> Result<InviteLink, LinkError> {
        InviteLink::role(self.server.clone(), invite_token, self.fingerprint)
    }
}

impl AppState {
    /// Has a shutdown begun?
    pub fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }
}

/// A server that is up and serving. Stop it with [`RunningServer::shutdown`], or hand a
/// [`ShutdownHandle`] to whoever decides and [`RunningServer::wait`]. Dropping it also
/// stops the server, without waiting for the connections to close.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    admin_key: String,
    admin_key_generated: bool,
    stop: Arc<watch::Sender<bool>>,
    rooms: Rooms,
    task: JoinHandle<()>,
    alive: mpsc::Receiver<()>,
    shutdown_timeout: std::time::Duration,
    sfu: Option<crate::sfu::Sfu>,
    tls: Option<ServerTls>,
    invites: Invites,
    limits: Arc<ConnectionLimits>,
    cluster: Option<onstage_cluster::Cluster>,
}

/// Asks a [`RunningServer`] to shut down gracefully from anywhere. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    stop: Arc<watch::Sender<bool>>,
}

impl ShutdownHandle {
    /// Starts the graceful shutdown; [`RunningServer::wait`] returns once it is done.
    pub fn shutdown(&self) {
        self.stop.send_replace(true);
    }
}

impl RunningServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://IP:PORT` (`https://` with TLS), the base of the admin API and of
    /// `/v1/signal`. A wildcard listen address (`0.0.0.0`, `::`) is given as loopback, which
    /// is reachable from this machine.
    pub fn http_url(&self) -> String {
        local_url(self.addr, self.tls.is_some())
    }

    /// The base URL invite links name ([`ServerConfig::public_url`], or [`Self::http_url`]).
    pub fn public_url(&self) -> &Url {
        &self.invites.server
    }

    /// Whether the server speaks TLS.
    pub fn tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The fingerprint clients pin: `Some` only for a self-signed certificate.
    pub fn fingerprint(&self) -> Option<Fingerprint> {
        self.invites.fingerprint
    }

    /// The invite link for a participant token.
    pub fn invite_link(&self, token: &str) -> Result<InviteLink, LinkError> {
        self.invites.link(token)
    }

    /// The SFU's UDP address, when media is on.
    pub fn media_addr(&self) -> Option<SocketAddr> {
        self.sfu.as_ref().map(|s| s.local_addr())
    }

    /// The HTTP connection caps and how many connections are open now.
    pub fn connection_limits(&self) -> &ConnectionLimits {
        &self.limits
    }

    /// The SFU handle (for its counters), when media is on.
    pub fn sfu(&self) -> Option<&crate::sfu::Sfu> {
        self.sfu.as_ref()
    }

    pub fn admin_key(&self) -> &str {
        &self.admin_key
    }

    /// True when no key was configured and one was generated (and stored) at this start.
    pub fn admin_key_generated(&self) -> bool {
        self.admin_key_generated
    }

    /// This node's cluster membership, when it is a member (`ServerConfig::cluster`).
    pub fn cluster(&self) -> Option<&onstage_cluster::Cluster> {
        self.cluster.as_ref()
    }

    /// A handle that triggers the graceful shutdown from elsewhere (see [`Self::wait`]).
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            stop: self.stop.clone(),
        }
    }

    /// Stops accepting, tells every signaling connection `goodbye: shutdown`, closes them
    /// and waits (bounded by `shutdown_timeout`) until every connection has ended. Stored
    /// data is already durable.
    pub async fn shutdown(self) {
        self.finish(false).await;
    }

    async fn finish(self, http_done: bool) {
        self.stop.send_replace(true);
        let deadline = tokio::time::Instant::now() + self.shutdown_timeout;
        if tokio::time::timeout_at(deadline, self.rooms.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("shutdown timed out telling the rooms");
        }
        let mut task = self.task;
        if !http_done && tokio::time::timeout_at(deadline, &mut task).await.is_err() {
            tracing::warn!("shutdown timed out; aborting the HTTP server");
            task.abort();
        }
        if let Some(sfu) = &self.sfu {
            if tokio::time::timeout_at(deadline, sfu.shutdown())
                .await
                .is_err()
            {
                tracing::warn!("shutdown timed out closing media sessions");
            }
        }
        // Every connection holds a sender; `None` means the last one has ended.
        let mut alive = self.alive;
        if tokio::time::timeout_at(deadline, alive.recv())
            .await
            .is_err()
        {
            tracing::warn!("shutdown timed out with signaling connections still open");
        }
        // The rooms gave their homes up as they ended; leaving releases anything left and
        // takes the node out of the registry, so nobody waits for its TTLs.
        if let Some(cluster) = &self.cluster {
            let leave = tokio::time::timeout(std::time::Duration::from_secs(2), cluster.leave());
            match leave.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, code = e.code(), "leaving the cluster failed; the registration runs out by its TTL")
                }
                Err(_) => tracing::warn!(
                    "leaving the cluster timed out; the registration runs out by its TTL"
                ),
            }
        }
        tracing::info!("server stopped");
    }

    /// Serves until a [`ShutdownHandle`] asks to stop, then shuts down gracefully. Also
    /// returns (after closing what is left) if the HTTP server fails on its own.
    pub async fn wait(mut self) {
        let mut asked = self.stop.subscribe();
        let http_done = tokio::select! {
            _ = asked.wait_for(|stop| *stop) => false,
            _ = &mut self.task => {
                tracing::error!("the HTTP server ended on its own");
                true
            }
        };
        self.finish(http_done).await;
    }

    /// Serves until `signal` completes (e.g. [`shutdown_signal`]) or a [`ShutdownHandle`]
    /// asks to stop, then shuts down gracefully.
    pub async fn run_until(self, signal: impl std::future::Future<Output = ()>) {
        let handle = self.shutdown_handle();
        let trigger = async move {
            signal.await;
            handle.shutdown();
            // `wait` below does the shutdown and ends the select.
            std::future::pending::<()>().await
        };
        tokio::select! {
            () = trigger => {}
            () = self.wait() => {}
        }
    }
}

/// Completes on Ctrl-C (SIGINT) or, on Unix, SIGTERM: what `onstage serve` stops on.
/// `server.run_until(onstage_server::shutdown_signal()).await`
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

/// `http(s)://IP:PORT` for a bound address, loopback for a wildcard one.
fn local_url(addr: SocketAddr, tls: bool) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{}", SocketAddr::new(ip, addr.port()))
}

/// A configured public URL must be http or https (https with TLS) and name a host.
/// The IP a public URL names (resolved if it is a name), for a server behind a NAT that
/// forwards its ports: guests that reached the server there can reach the SFU there too.
fn public_ip(url: Option<&Url>) -> Vec<std::net::IpAddr> {
    let Some(url) = url else {
        return Vec::new();
    };
    match url.host() {
        Some(url::Host::Ipv4(ip)) => vec![ip.into()],
        Some(url::Host::Ipv6(ip)) => vec![ip.into()],
        Some(url::Host::Domain(name)) => {
            use std::net::ToSocketAddrs;
            // Best effort at start: a name that does not resolve here announces nothing.
            (name, 0)
                .to_socket_addrs()
                .map(|addrs| addrs.map(|a| a.ip()).take(2).collect())
                .unwrap_or_default()
        }
        None => Vec::new(),
    }
}

fn check_public_url(url: &Url, tls: bool) -> Result<(), ServerError> {
    match url.scheme() {
        "https" => {}
        "http" if tls => {
            return Err(ServerError::Config(format!(
                "the public URL {url} must be https:// when the server serves TLS"
            )))
        }
        "http" => {}
        other => {
            return Err(ServerError::Config(format!(
                "the public URL must be http:// or https://, not {other}://"
            )))
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ServerError::Config(format!(
            "the public URL {url} has no host"
        )));
    }
    Ok(())
}

/// The shortest admin key a server accepts from its configuration.
pub const MIN_ADMIN_KEY_CHARS: usize = 32;

/// Opens the data dir, loads the TLS certificate, binds the listener and starts serving.
pub async fn start(config: ServerConfig) -> Result<RunningServer, ServerError> {
    if let Some(url) = &config.public_url {
        check_public_url(url, config.tls.is_some())?;
    }
    // The admin key opens everything, to anyone who can reach the port: a short one can be
    // guessed. Checked before the data dir is touched. (A generated key has 64 characters.)
    if let Some(key) = &config.admin_key {
        if key.trim().chars().count() < MIN_ADMIN_KEY_CHARS {
            return Err(ServerError::Config(format!(
                "the admin key (ONSTAGE_ADMIN_KEY) must be at least {MIN_ADMIN_KEY_CHARS} \
                 characters (e.g. `openssl rand -hex 32`); unset it and the server makes one"
            )));
        }
    }
    // A bad cluster setting or a Redis that does not answer is found before the data dir
    // is touched too; the node joins once its URL is known, below.
    if let Some(settings) = &config.cluster {
        cluster_config(settings, "")?.check_timings()?;
        onstage_cluster::cluster::check_reachable(
            &settings.redis_url,
            std::time::Duration::from_secs(1),
        )
        .await?;
    }
    let data_dir = config.data_dir.clone();
    let configured_key = config.admin_key.clone();
    let tls_config = config.tls.clone();
    let (storage, admin_key, generated, jwt_secret, tls) = tokio::task::spawn_blocking(move || {
        // TLS first: a bad certificate path is a configuration error that should not
        // leave a fresh database behind.
        let tls = tls_config
            .map(|tls| crate::tls::load(&tls, &data_dir))
            .transpose()?;
        let storage = Storage::open(&data_dir)?;
        let (admin_key, generated) = match configured_key {
            Some(key) => (key, false),
            None => load_or_create_secret(&data_dir, ADMIN_KEY_FILE, random_secret)?,
        };
        let (jwt_secret, _) = load_or_create_secret(&data_dir, JWT_SECRET_FILE, random_secret)?;
        Ok::<_, ServerError>((storage, admin_key, generated, jwt_secret, tls))
    })
    .await
    .map_err(|e| ServerError::Config(format!("startup task failed: {e}")))??;
    if admin_key.trim().is_empty() {
        return Err(ServerError::Config("the admin key is empty".into()));
    }

    let open_files = crate::http::raise_open_files_limit();
    let max_connections = config
        .max_connections
        .unwrap_or_else(|| crate::http::default_max_connections(open_files));
    let limits = ConnectionLimits::new(
        max_connections,
        config.max_connections_per_source,
        config.limit_loopback,
    );
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: config.listen,
        source,
    })?;
    let server_url = match &config.public_url {
        Some(url) => url.clone(),
        None => Url::parse(&local_url(addr, tls.is_some()))
            .map_err(|e| ServerError::Config(format!("the listen address as a URL: {e}")))?,
    };
    let invites = Invites {
        server: server_url,
        fingerprint: tls
            .as_ref()
            .filter(|t| t.self_signed)
            .map(|t| t.fingerprint),
    };

    let cluster = match &config.cluster {
        Some(settings) => Some(join_cluster(settings, &invites.server, limits.clone()).await?),
        None => None,
    };

    let metrics = Arc::new(Metrics::new());
    let sfu = match config.media_udp {
        Some(bind) => Some(
            crate::sfu::Sfu::start(
                crate::sfu::MediaConfig {
                    bind,
                    advertise: config.media_advertise.clone(),
                    also_announce: public_ip(config.public_url.as_ref()),
                    tcp: config.media_tcp,
                },
                metrics.clone(),
            )
            .map_err(|source| ServerError::Bind { addr: bind, source })?,
        ),
        None => None,
    };
    let mut rooms =
        Rooms::new(metrics.clone(), config.grace_ms(), sfu.clone()).with_storage(storage.clone());
    let (stop, shutdown) = watch::channel(false);
    if let Some(cluster) = &cluster {
        rooms = rooms.with_cluster(cluster.clone());
        tokio::spawn(step_down_lost_homes(
            cluster.clone(),
            rooms.clone(),
            metrics.clone(),
            shutdown.clone(),
        ));
    }
    let stop = Arc::new(stop);
    let (alive, alive_rx) = mpsc::channel(1);
    let shutdown_timeout = config.shutdown_timeout;
    let max_body = config.max_body_bytes;
    let handshake_timeout = config.tls_handshake_timeout;
    let header_timeout = config.http_header_timeout;
    let request_timeout = config.http_request_timeout;
    let state = Arc::new(AppState {
        auth: Auth::new(admin_key.clone(), &jwt_secret, config.token_ttl),
        config,
        storage,
        rooms: rooms.clone(),
        metrics: metrics.clone(),
        admin_backoff: AdminBackoff::new(),
        limits: limits.clone(),
        shutdown: shutdown.clone(),
        alive,
        invites: invites.clone(),
    });

    let app = Router::new()
        .merge(
            crate::rest::routes().route_layer(middleware::from_fn_with_state(
                state.clone(),
                crate::rest::require_admin,
            )),
        )
        .merge(crate::web::routes())
        .route(
            "/v1/signal",
            get(crate::signal::handler).route_layer(middleware::map_response(any_origin)),
        )
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({"status":"ok"})) }),
        )
        .route("/metrics", get(render_metrics))
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                onstage_proto::ErrorCode::BadRequest,
                "method not allowed on this route",
            )
        })
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            request_deadline(request_timeout, req, next)
        }))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state);

    let door = crate::http::FrontDoor {
        app,
        limits: limits.clone(),
        tls: tls
            .as_ref()
            .map(|tls| tokio_rustls::TlsAcceptor::from(tls.config.clone())),
        handshake_timeout,
        header_timeout,
        metrics: metrics.clone(),
    };
    let task = tokio::spawn(door.serve(listener, shutdown.clone()));
    tracing::info!(%addr, tls = tls.is_some(), public_url = %invites.server, "listening");
    Ok(RunningServer {
        addr,
        admin_key,
        admin_key_generated: generated,
        stop,
        rooms,
        task,
        alive: alive_rx,
        shutdown_timeout,
        sfu,
        tls,
        invites,
        limits,
        cluster,
    })
}

/// The membership `settings` describe, registered under `public_url`.
fn cluster_config(
    settings: &crate::config::ClusterSettings,
    public_url: &str,
) -> Result<onstage_cluster::ClusterConfig, ServerError> {
    let lease = onstage_cluster::LeaseTiming::from_ttl(settings.lease_ttl)?;
    Ok(onstage_cluster::ClusterConfig::new(
        settings.redis_url.clone(),
        settings.node_id.clone(),
        public_url,
    )
    .with_node_ttl(settings.node_ttl)
    .with_lease(lease))
}

/// Joins the cluster as `settings` say, registered under the public URL, with the open
/// connections as part of the load.
async fn join_cluster(
    settings: &crate::config::ClusterSettings,
    public_url: &Url,
    limits: Arc<ConnectionLimits>,
) -> Result<onstage_cluster::Cluster, ServerError> {
    let config = cluster_config(settings, public_url.as_str().trim_end_matches('/'))?;
    let cluster = onstage_cluster::Cluster::join(config, move || limits.open() as u64).await?;
    Ok(cluster)
}

/// Ends the room of every meeting whose home lock this node lost, until the server stops
/// (then its handle goes, so a server dropped without a shutdown stops renewing too). An
/// event missed (the channel overflowed) is made up for by checking every live room
/// against the locks held; a room still waiting for its lock then starts over, which only
/// costs its connections a reconnect.
async fn step_down_lost_homes(
    cluster: onstage_cluster::Cluster,
    rooms: Rooms,
    metrics: Arc<Metrics>,
    mut stopping: watch::Receiver<bool>,
) {
    use onstage_cluster::ClusterEvent;
    use tokio::sync::broadcast::error::RecvError;
    let mut events = cluster.events();
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            _ = stopping.wait_for(|stop| *stop) => break,
        };
        match event {
            Ok(ClusterEvent::HomeLost { meeting, epoch, .. }) => {
                metrics.cluster_homes_lost.inc();
                // A newer lease of the same meeting (taken again since) is not the lost one.
                if cluster.home_epoch(&meeting).is_some_and(|now| now > epoch) {
                    continue;
                }
                rooms.step_down(&MeetingId::from(meeting)).await;
            }
            Ok(ClusterEvent::HomeRetaken { .. }) => {}
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(
                    missed,
                    "missed cluster events; checking every room's home lock"
                );
                for meeting in rooms.live_meetings() {
                    if cluster.home_epoch(meeting.as_str()).is_none() {
                        rooms.step_down(&meeting).await;
                    }
                }
            }
            Err(RecvError::Closed) => break,
        }
    }
}

async fn render_metrics(State(app): State<Arc<AppState>>) -> Response {
    let open = i64::try_from(app.limits.open()).unwrap_or(i64::MAX);
    app.metrics.http_connections.set(open);
    if let Some(cluster) = app.rooms.cluster() {
        let homes = i64::try_from(cluster.homes()).unwrap_or(i64::MAX);
        app.metrics.cluster_homes.set(homes);
    }
    (
        StatusCode::OK,
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.render(),
    )
        .into_response()
}

/// A request not answered within the timeout (a client dripping its body, say) gets 408
/// and its connection is closed.
async fn request_deadline(timeout: std::time::Duration, req: Request, next: Next) -> Response {
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => {
            let mut response = ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                onstage_proto::ErrorCode::BadRequest,
                format!("the request was not complete within {timeout:?}"),
            )
            .into_response();
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
            response
        }
    }
}

async fn count_requests(State(app): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let response = next.run(req).await;
    app.metrics
        .http_requests
        .get_or_create(&HttpLabels {
            method,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// `Access-Control-Allow-Origin: *` on `/v1/signal`'s answers. A browser tells a page
/// nothing of why a WebSocket handshake was refused; the web SDK then asks the same URL
/// with a plain request to read the refusal (`unauthorized`, `token_expired`,
/// `token_revoked`). A page of another origin may read that answer too: it holds the token
/// already, and a WebSocket is not bound by the same-origin rule anyway.
async fn any_origin(mut response: Response) -> Response {
    response.headers_mut().insert(
        axum::http::header::ACCESS_CONTROL_ALLOW_ORIGIN,
        axum::http::HeaderValue::from_static("*"),
    );
    response
}
