//! Putting it together: storage and secrets, the router, the listener, graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::auth::Auth;
use crate::config::ServerConfig;
use crate::error::{ApiError, ServerError, StorageError};
use crate::metrics::{HttpLabels, Metrics};
use crate::rooms::Rooms;
use crate::storage::{
    load_or_create_secret, random_secret, Storage, ADMIN_KEY_FILE, JWT_SECRET_FILE,
};

/// What every handler shares.
#[derive(Debug)]
pub struct AppState {
    pub config: ServerConfig,
    pub storage: Storage,
    pub auth: Auth,
    pub rooms: Rooms,
    pub metrics: Arc<Metrics>,
    /// Flips to `true` when the server shuts down; every connection watches it.
    pub shutdown: watch::Receiver<bool>,
}

/// A server that is up and serving.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    admin_key: String,
    admin_key_generated: bool,
    stop: watch::Sender<bool>,
    rooms: Rooms,
    task: JoinHandle<()>,
    shutdown_timeout: std::time::Duration,
}

impl RunningServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://IP:PORT`, the base of the admin API and of `/v1/signal`.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn admin_key(&self) -> &str {
        &self.admin_key
    }

    /// True when no key was configured and one was generated (and stored) at this start.
    pub fn admin_key_generated(&self) -> bool {
        self.admin_key_generated
    }

    /// Stops accepting, tells every signaling connection `goodbye: shutdown`, closes them
    /// and waits (bounded) for the server to wind down. Stored data is already durable.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.rooms.shutdown();
        let mut task = self.task;
        if tokio::time::timeout(self.shutdown_timeout, &mut task)
            .await
            .is_err()
        {
            tracing::warn!("shutdown timed out; aborting remaining connections");
            task.abort();
        }
        tracing::info!("server stopped");
    }

    /// Serves until `signal` completes, then shuts down gracefully.
    pub async fn run_until(self, signal: impl std::future::Future<Output = ()>) {
        signal.await;
        self.shutdown().await;
    }
}

/// Opens the data dir, binds the listener and starts serving.
pub async fn start(config: ServerConfig) -> Result<RunningServer, ServerError> {
    let data_dir = config.data_dir.clone();
    let configured_key = config.admin_key.clone();
    let (storage, admin_key, generated, jwt_secret) = tokio::task::spawn_blocking(move || {
        let storage = Storage::open(&data_dir)?;
        let (admin_key, generated) = match configured_key {
            Some(key) => (key, false),
            None => load_or_create_secret(&data_dir, ADMIN_KEY_FILE, random_secret)?,
        };
        let (jwt_secret, _) = load_or_create_secret(&data_dir, JWT_SECRET_FILE, random_secret)?;
        Ok::<_, StorageError>((storage, admin_key, generated, jwt_secret))
    })
    .await
    .map_err(|e| ServerError::Config(format!("startup task failed: {e}")))??;
    if admin_key.trim().is_empty() {
        return Err(ServerError::Config("the admin key is empty".into()));
    }

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

    let metrics = Arc::new(Metrics::new());
    let rooms = Rooms::new(metrics.clone(), config.grace_ms());
    let (stop, shutdown) = watch::channel(false);
    let shutdown_timeout = config.shutdown_timeout;
    let max_body = config.max_body_bytes;
    let state = Arc::new(AppState {
        auth: Auth::new(admin_key.clone(), &jwt_secret, config.token_ttl),
        config,
        storage,
        rooms: rooms.clone(),
        metrics: metrics.clone(),
        shutdown: shutdown.clone(),
    });

    let app = Router::new()
        .merge(crate::rest::routes())
        .route("/v1/signal", get(crate::signal::handler))
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({"status":"ok"})) }),
        )
        .route("/metrics", get(render_metrics))
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state);

    let mut stopped = shutdown.clone();
    let task = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = stopped.wait_for(|s| *s).await;
        });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "server failed");
        }
    });
    tracing::info!(%addr, "listening");
    Ok(RunningServer {
        addr,
        admin_key,
        admin_key_generated: generated,
        stop,
        rooms,
        task,
        shutdown_timeout,
    })
}

async fn render_metrics(State(app): State<Arc<AppState>>) -> Response {
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
