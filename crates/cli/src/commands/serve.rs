//! `onstage serve`: the whole server in this process until Ctrl-C or SIGTERM.

use std::process::ExitCode;
use std::time::Duration;

use onstage_proto::Fingerprint;
use onstage_proto::{ErrorBody, ErrorCode};
use onstage_server::{ClusterSettings, ServerConfig, ServerError, TlsConfig};
use serde::Serialize;

use crate::cli::ServeArgs;
use crate::output;

/// The ready line, keys in the documented order:
/// `{"event":"listening","http":"http(s)://127.0.0.1:PORT","public_url":..,
/// "fingerprint":"sha256:..","admin_key":..,"node_id":..}` (fingerprint only for a
/// self-signed certificate, node_id only for a member of a cluster).
#[derive(Serialize)]
struct Listening<'a> {
    event: &'static str,
    http: &'a str,
    public_url: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    fingerprint: Option<Fingerprint>,
    #[serde(skip_serializing_if = "Option::is_none")]
    admin_key: Option<&'a str>,
    /// The node's id, when it joined a cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    node_id: Option<&'a str>,
}

pub async fn run(args: ServeArgs) -> ExitCode {
    let mut config = ServerConfig::new(args.listen, args.data);
    let from_env = std::env::var("ONSTAGE_ADMIN_KEY")
        .ok()
        .filter(|k| !k.trim().is_empty());
    config.admin_key = from_env.clone();
    if let Some(ms) = args.grace_ms {
        config.grace = Duration::from_millis(ms);
    }
    if let Some(secs) = args.token_ttl_secs {
        config.token_ttl = Duration::from_secs(secs);
    }
    if let Some(max) = args.max_on_stage {
        if max == 0 {
            output::print_error(
                None,
                &ErrorBody::new(ErrorCode::BadRequest, "--max-on-stage must be at least 1"),
            );
            return ExitCode::FAILURE;
        }
        config.default_max_on_stage = max;
    }
    if let Some(max) = args.max_participants {
        config.max_participants = max as usize;
    }
    if let Some(udp) = args.media_udp {
        config.media_udp = Some(udp);
    }
    config.media_advertise = args.media_ip.clone();
    config.media_tcp = !args.no_media_tcp;
    if let Some(secret) = &args.turn_secret {
        if secret.is_empty() {
            output::print_error(
                None,
                &ErrorBody::new(ErrorCode::BadRequest, "--turn-secret is empty"),
            );
            return ExitCode::FAILURE;
        }
        if let Some(bad) = args
            .turn_url
            .iter()
            .find(|u| !(u.starts_with("turn:") || u.starts_with("stun:")))
        {
            output::print_error(
                None,
                &ErrorBody::new(
                    ErrorCode::BadRequest,
                    format!("--turn-url {bad}: a TURN URL starts with turn: (UDP)"),
                ),
            );
            return ExitCode::FAILURE;
        }
        config.turn = Some(onstage_server::turn::TurnConfig {
            urls: args.turn_url.clone(),
            secret: secret.clone(),
            // Allocations are refreshed with the same credentials for the whole call.
            ttl: config.token_ttl,
        });
    }
    config.tls = match (args.tls_cert, args.tls_key, args.tls_self_signed) {
        (Some(cert), Some(key), _) => Some(TlsConfig::Files { cert, key }),
        (_, _, true) => Some(TlsConfig::SelfSigned),
        _ => None,
    };
    config.public_url = args.public_url;
    if let Some(max) = args.max_connections {
        config.max_connections = Some(max as usize);
    }
    if let Some(max) = args.max_connections_per_source {
        config.max_connections_per_source = max as usize;
    }
    config.limit_loopback = args.limit_loopback;
    if let Some(ms) = args.header_timeout_ms {
        config.http_header_timeout = Duration::from_millis(ms);
    }
    if let Some(burst) = args.broadcast_burst {
        config.broadcast_burst = burst;
    }
    if let Some(redis) = &args.redis {
        let node_id = args.node_id.clone().unwrap_or_default();
        let node_id = match onstage_cluster::NodeId::new(node_id) {
            Ok(id) => id,
            Err(e) => {
                output::print_error(
                    None,
                    &ErrorBody::new(ErrorCode::BadRequest, format!("--node-id: {e}")),
                );
                return ExitCode::FAILURE;
            }
        };
        let mut cluster = ClusterSettings::new(redis.clone(), node_id);
        if let Some(ms) = args.node_ttl_ms {
            cluster.node_ttl = Duration::from_millis(ms);
        }
        if let Some(ms) = args.lease_ttl_ms {
            cluster.lease_ttl = Duration::from_millis(ms);
        }
        config.cluster = Some(cluster);
    }
    let server = match onstage_server::start(config).await {
        Ok(server) => server,
        Err(e) => {
            // What the operator got wrong (a certificate file, the public URL) is
            // bad_request; the rest (storage, binding) internal.
            let code = match &e {
                ServerError::Tls(_) | ServerError::Config(_) => ErrorCode::BadRequest,
                // A Redis that does not answer is named as such; a bad --redis URL, a
                // node id another live node has, or TTLs that do not fit are the flags'.
                ServerError::Cluster(c) if c.code() == "redis_unavailable" => {
                    ErrorCode::Unreachable
                }
                ServerError::Cluster(_) => ErrorCode::BadRequest,
                _ => ErrorCode::Internal,
            };
            output::print_error(None, &ErrorBody::new(code, e.to_string()));
            return ExitCode::FAILURE;
        }
    };
    // The key is printed only when it did not come from the environment: generated now,
    // or kept in the data dir from an earlier start.
    output::print_line(&Listening {
        event: "listening",
        http: &server.http_url(),
        public_url: server.public_url().as_str().trim_end_matches('/'),
        fingerprint: server.fingerprint(),
        admin_key: from_env.is_none().then(|| server.admin_key()),
        node_id: server.cluster().map(|c| c.node_id().as_str()),
    });
    server.run_until(super::shutdown_signal()).await;
    ExitCode::SUCCESS
}
