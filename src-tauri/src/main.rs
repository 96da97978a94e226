//! The Onstage desktop app: a thin Tauri shell over the SDK (`onstage-client`), with an
//! embedded server for hosting. The UI (`ui/`, built into `ui/dist` and embedded at compile
//! time) talks to it through the commands and events of docs/APP.md.

// No console window on Windows release builds; logs go to stderr elsewhere.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

mod commands;
mod config;
mod events;
mod preview;
mod state;
mod video;

use std::sync::Mutex;

use tauri::Manager;
use tracing_subscriber::EnvFilter;

use crate::config::{AppConfig, Startup};
use crate::state::{AppState, DeviceChoice};
use crate::video::Pictures;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();

    let (config, arg_error) = AppConfig::from_env();
    if let Some(e) = &arg_error {
        // Not fatal: the join screen lets the user enter what the arguments got wrong.
        tracing::error!("{e}");
    }
    let pictures = Pictures::new(config.pictures);
    let interceptor = pictures.clone();
    let startup = config.startup.clone();
    let state = AppState {
        config,
        live: tokio::sync::Mutex::new(None),
        pictures,
        devices: Mutex::new(DeviceChoice::default()),
        idle_preview: Mutex::new(None),
    };

    let result = tauri::Builder::default()
        .manage(state)
        .channel_interceptor(move |webview, callback, index, body| {
            interceptor.intercept(webview, callback.0, index, body)
        })
        .invoke_handler(tauri::generate_handler![
            commands::app_info,
            commands::start_embedded,
            commands::join,
            commands::create_invite,
            commands::leave_meeting,
            commands::session,
            commands::devices,
            commands::select_devices,
            commands::preview,
            commands::set_mic,
            commands::set_camera,
            commands::stage_request_access,
            commands::stage_cancel_request,
            commands::stage_join,
            commands::stage_leave,
            commands::stage_grant,
            commands::stage_deny,
            commands::stage_kick,
            commands::video_channel,
            commands::video_fetch,
            commands::picture_stats,
        ])
        .setup(move |app| {
            let handle = app.handle().clone();
            // Join (or host) in the background: the window shows at once and the UI,
            // asking `app_info`/`session`, sees the meeting when it is there.
            tauri::async_runtime::spawn(async move {
                let state = handle.state::<AppState>();
                let outcome = match &startup {
                    Startup::Idle => return,
                    Startup::Host { name } => commands::host(&handle, &state, name).await,
                    Startup::Join {
                        server_url, token, ..
                    } => commands::join_server(&handle, &state, server_url, token).await,
                };
                match outcome {
                    Ok(session) => {
                        use tauri::Emitter;
                        let _ = handle.emit("session", &session);
                    }
                    Err(e) => {
                        tracing::error!(code = %e.code, "joining at start: {}", e.message);
                    }
                }
            });
            Ok(())
        })
        .run(tauri::generate_context!());
    if let Err(e) = result {
        tracing::error!("the app failed: {e}");
        std::process::exit(1);
    }
}
