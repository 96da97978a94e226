//! The files a browser fetches from the server: the web Stage SDK as one ES module,
//! `GET /sdk/onstage-web.js` (what a web page imports to join a meeting; see
//! `web-sdk/README.md`). Built from `web-sdk/` by `npm run build` and embedded in the
//! binary at compile time (a debug build reads `web-sdk/dist` at run time instead).

use std::sync::Arc;

use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::error::ApiError;
use crate::server::AppState;

#[derive(rust_embed::Embed)]
#[folder = "../../web-sdk/dist/"]
#[allow_missing = true]
struct WebSdk;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/sdk/{file}", get(sdk_file))
}

/// One file of the SDK's build. Any page may import it (`Access-Control-Allow-Origin: *`):
/// it holds no secret, and the token a page joins with goes to the signaling socket.
async fn sdk_file(Path(file): Path<String>) -> Response {
    let Some(kind) = content_type(&file) else {
        return ApiError::not_found(format!("no SDK file {file:?}")).into_response();
    };
    match WebSdk::get(&file) {
        Some(found) => (
            [
                (header::CONTENT_TYPE, kind),
                (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
                // The same URL serves the next server version's SDK: check each time.
                (header::CACHE_CONTROL, "no-cache"),
            ],
            found.data,
        )
            .into_response(),
        None => ApiError::not_found(format!(
            "no SDK file {file:?} (this server was built without web-sdk/dist)"
        ))
        .into_response(),
    }
}

/// Only the build's own kinds of file, by a plain name (no folders, no dot files).
fn content_type(file: &str) -> Option<&'static str> {
    let plain = !file.starts_with('.')
        && file
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !plain {
        return None;
    }
    if file.ends_with(".js") {
        Some("text/javascript; charset=utf-8")
    } else if file.ends_with(".js.map") {
        Some("application/json")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::content_type;

    #[test]
    fn only_plain_script_names_are_served() {
        assert_eq!(
            content_type("onstage-web.js"),
            Some("text/javascript; charset=utf-8")
        );
        assert_eq!(content_type("onstage-web.js.map"), Some("application/json"));
        for bad in [
            "../secret.js",
            ".env.js",
            "a/b.js",
            "index.html",
            "x.js%00",
            "",
        ] {
            assert_eq!(content_type(bad), None, "{bad}");
        }
    }
}
