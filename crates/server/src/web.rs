//! The files a browser fetches from the server, each build embedded in the binary at
//! compile time (a debug build reads the folder at run time instead):
//! - `GET /sdk/onstage-web.js`: the web Stage SDK as one ES module, what a web page imports
//!   to join a meeting (see `web-sdk/README.md`). Built from `web-sdk/` by `npm run build`.
//! - `GET /join`: the Onstage app itself, for a guest who has nothing installed. It is the
//!   desktop app's UI built for the browser (`cd ui && npm run build:web`, `ui/dist-web`),
//!   on the browser's own WebRTC. An invite opens it as `/join#token=T` (or `#invite=T`):
//!   the token stays in the fragment, which no request line, proxy or log ever sees.

use std::sync::Arc;

use axum::extract::Path;
use axum::http::{header, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use onstage_proto::link::WEB_PAGE;
use rust_embed::Embed;

use crate::error::ApiError;
use crate::server::AppState;

#[derive(Embed)]
#[folder = "../../web-sdk/dist/"]
#[allow_missing = true]
struct WebSdk;

#[derive(Embed)]
#[folder = "../../ui/dist-web/"]
#[allow_missing = true]
struct WebApp;

pub fn routes() -> Router<Arc<AppState>> {
    let page = format!("/{WEB_PAGE}");
    Router::new()
        .route("/sdk/{file}", get(sdk_file))
        .route(&page, get(app_page))
        .route(&format!("{page}/"), get(app_page))
        .route(&format!("{page}/assets/{{file}}"), get(app_asset))
}

/// One file of the SDK's build. Any page may import it (`Access-Control-Allow-Origin: *`):
/// it holds no secret, and the token a page joins with goes to the signaling socket.
async fn sdk_file(Path(file): Path<String>) -> Response {
    serve::<WebSdk>(
        &file,
        "SDK file",
        "web-sdk/dist",
        &[
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
            // The same URL serves the next server version's SDK: check each time.
            (header::CACHE_CONTROL, "no-cache"),
        ],
    )
}

/// What the app's page may do, and nothing more: its own scripts and styles, the signaling
/// socket and REST of this server, received media (`blob:`/`mediastream:`), no framing by
/// other sites (a stage control panel is a clickjacking target), camera and microphone
/// for this origin only. Svelte sets `style` attributes, hence the inline styles.
const APP_HEADERS: &[(HeaderName, &str)] = &[
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data: blob:; media-src 'self' blob: mediastream:; \
         connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    // The page's address holds a token in its fragment; a referrer never carries a
    // fragment, but nothing else of the page needs to leave either.
    (header::REFERRER_POLICY, "no-referrer"),
];

/// `GET /join` (and `/join/`): the app's page. Its assets are named by content hash, the
/// page is not: it is checked again on every load.
async fn app_page() -> Response {
    let permissions = (
        HeaderName::from_static("permissions-policy"),
        "camera=(self), microphone=(self), display-capture=()",
    );
    let mut headers = APP_HEADERS.to_vec();
    headers.extend([(header::CACHE_CONTROL, "no-cache"), permissions]);
    serve::<WebApp>("index.html", "page", "ui/dist-web", &headers)
}

/// `GET /join/assets/{file}`: a script, style sheet or picture of the app's build. Vite
/// names each by its content's hash, so a name never changes meaning: cache it for good.
async fn app_asset(Path(file): Path<String>) -> Response {
    let mut headers = APP_HEADERS.to_vec();
    headers.push((header::CACHE_CONTROL, "public, max-age=31536000, immutable"));
    serve::<WebApp>(
        &format!("assets/{file}"),
        "app file",
        "ui/dist-web",
        &headers,
    )
}

/// One embedded file by its path in the build, with `headers`; anything that is not a
/// plain name of a kind the builds make, or not in this build, is a `not_found` naming
/// `what` (and, when the build is missing altogether, the folder it comes from).
fn serve<E: Embed>(
    path: &str,
    what: &str,
    build: &str,
    headers: &[(HeaderName, &'static str)],
) -> Response {
    let name = path.rsplit('/').next().unwrap_or(path);
    let Some(kind) = content_type(name) else {
        return ApiError::not_found(format!("no {what} {name:?}")).into_response();
    };
    let Some(found) = E::get(path) else {
        let built = E::iter().next().is_some();
        let why = if built {
            String::new()
        } else {
            format!(" (this server was built without {build})")
        };
        return ApiError::not_found(format!("no {what} {name:?}{why}")).into_response();
    };
    let mut response = found.data.into_response();
    let out = response.headers_mut();
    out.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    for (key, value) in headers {
        out.insert(key.clone(), HeaderValue::from_static(value));
    }
    response
}

/// Only the builds' own kinds of file, by a plain name (no folders, no dot files).
fn content_type(file: &str) -> Option<&'static str> {
    let plain = !file.starts_with('.')
        && file
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !plain {
        return None;
    }
    let (_, extension) = file.rsplit_once('.')?;
    Some(match extension {
        "js" => "text/javascript; charset=utf-8",
        "map" if file.ends_with(".js.map") => "application/json",
        "css" => "text/css; charset=utf-8",
        "html" => "text/html; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "woff2" => "font/woff2",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::content_type;

    #[test]
    fn only_plain_names_of_built_kinds_are_served() {
        assert_eq!(
            content_type("onstage-web.js"),
            Some("text/javascript; charset=utf-8")
        );
        assert_eq!(content_type("onstage-web.js.map"), Some("application/json"));
        assert_eq!(
            content_type("index-CYybnDza.css"),
            Some("text/css; charset=utf-8")
        );
        assert_eq!(content_type("index.html"), Some("text/html; charset=utf-8"));
        for bad in [
            "../secret.js",
            ".env.js",
            "a/b.js",
            "x.js%00",
            "data.map",
            "config.json",
            "noextension",
            "",
        ] {
            assert_eq!(content_type(bad), None, "{bad}");
        }
    }
}
