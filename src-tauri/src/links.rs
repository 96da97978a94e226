//! `onstage://join?...` links opened from outside the app.
//!
//! The app handles the `onstage` URL scheme (tauri-plugin-deep-link). On Linux and Windows
//! the system starts the app with the link as its argument: a first start reads it like any
//! argument (`config.rs`), and a start while the app already runs hands its arguments to
//! the running app (tauri-plugin-single-instance, over D-Bus on Linux) and exits, so the
//! link joins in the window already open. On macOS the link arrives as an event. Either way
//! [`crate::commands::open_link`] joins it or reports what is wrong (`app-error`).
//!
//! Linux has no installer step for this app, so the scheme is registered at every start:
//! a desktop entry in `$XDG_DATA_HOME/applications` (`onstage-app-handler.desktop`, `Exec`
//! this binary with `%u`) made the default for `x-scheme-handler/onstage` with `xdg-mime`.
//! Windows gets the per-user registry keys. Failing to register is logged, never fatal.

use tauri::{AppHandle, Manager, Runtime};
use tauri_plugin_deep_link::DeepLinkExt;

use crate::state::AppState;

/// The scheme of invite links.
pub const SCHEME: &str = "onstage";

/// Registers the scheme (Linux, Windows) and listens for links opened as events (macOS).
pub fn register<R: Runtime>(app: &AppHandle<R>) {
    #[cfg(any(target_os = "linux", windows))]
    match app.deep_link().register(SCHEME) {
        Ok(()) => tracing::info!("registered as the handler of {SCHEME}:// links"),
        Err(e) => tracing::warn!(error = %e, "cannot register as the handler of {SCHEME}:// links"),
    }
    let handle = app.clone();
    app.deep_link().on_open_url(move |event| {
        let handle = handle.clone();
        let links: Vec<String> = event.urls().into_iter().map(|u| u.to_string()).collect();
        tauri::async_runtime::spawn(async move {
            let state = handle.state::<AppState>();
            for link in links {
                crate::commands::open_link(&handle, &state, &link).await;
            }
        });
    });
}

/// The invite links among a second start's arguments (`argv[0]` is the program).
pub fn links_in(argv: &[String]) -> Vec<String> {
    argv.iter()
        .skip(1)
        .filter(|a| a.starts_with(&format!("{SCHEME}:")))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_among_arguments() {
        let argv: Vec<String> = [
            "/bin/onstage-app",
            "onstage://join?x",
            "--name",
            "onstage:y",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(links_in(&argv), vec!["onstage://join?x", "onstage:y"]);
        assert!(links_in(&["onstage://join?program-name".to_string()]).is_empty());
    }
}
