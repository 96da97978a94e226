//! The Onstage desktop app: a thin Tauri shell over the SDK (`onstage-client`), with an
//! embedded server for hosting. The UI (`ui/`, built into `ui/dist` and embedded at compile
//! time) talks to it through the commands and events of docs/APP.md.

// No console window on Windows release builds; logs go to stderr elsewhere.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

mod commands;
mod config;
mod device_check;
mod error;
mod events;
mod hosting;
mod links;
mod state;
mod video;

use std::sync::Mutex;

use tauri::Manager;
use tracing_subscriber::EnvFilter;

use crate::config::{AppConfig, Startup};
use crate::state::{AppState, DeviceChoice};
use crate::video::Pictures;

/// WebKitGTK composites the page with OpenGL. Without a GPU (virtual machines, remote
/// desktops, Xvfb) that GL is Mesa's software rasterizer, and every canvas update then
/// costs the web process about a core per 30 fps tile; painting without compositing costs
/// it ~8 % for one tile and ~16 % for four (BENCHMARKS.md "Desktop app: pictures from the
/// shell to the webview").
/// Our page is a few canvases and plain widgets, which compositing does not speed up, so
/// it is off unless asked for: `ONSTAGE_WEBKIT_COMPOSITING=1` keeps WebKit's default, and
/// an explicit `WEBKIT_DISABLE_COMPOSITING_MODE` is respected.
fn choose_webkit_compositing() {
    #[cfg(target_os = "linux")]
    {
        let keep = std::env::var_os("ONSTAGE_WEBKIT_COMPOSITING").is_some_and(|v| v == "1");
        if !keep && std::env::var_os("WEBKIT_DISABLE_COMPOSITING_MODE").is_none() {
            // Before any other thread exists: WebKit reads it when the first web view
            // starts.
            std::env::set_var("WEBKIT_DISABLE_COMPOSITING_MODE", "1");
        }
    }
}

fn main() {
    choose_webkit_compositing();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();

    let (config, arg_error) = AppConfig::from_env();
    // Not fatal: the join screen shows it and lets the user enter what was wrong.
    let arg_error = arg_error.map(|e| {
        tracing::error!("{e}");
        error::AppError::new(
            error::CommandError::new(e.code, e.message),
            error::Context::Start,
        )
    });
    let pictures = Pictures::new(config.pictures);
    let picture_socket = match tauri::async_runtime::block_on(pictures.serve()) {
        Ok(url) => Some(url),
        Err(e) => {
            tracing::error!("{e}; the app runs without video");
            None
        }
    };
    let startup = config.startup.clone();
    let state = AppState {
        config,
        live: tokio::sync::Mutex::new(None),
        pictures,
        picture_socket,
        devices: Mutex::new(DeviceChoice::default()),
        idle_preview: Mutex::new(None),
        last_error: Mutex::new(arg_error),
        serving: Mutex::new(None),
        joining: Mutex::new(None),
    };

    let result = tauri::Builder::default()
        // First: a second start of the app (a clicked invite link on Linux and Windows)
        // hands its arguments to this one and exits.
        .plugin(tauri_plugin_single_instance::init(|app, argv, _cwd| {
            let handle = app.clone();
            let links = links::links_in(&argv);
            tauri::async_runtime::spawn(async move {
                let state = handle.state::<AppState>();
                if links.is_empty() {
                    // Started again without a link: just come to the front.
                    if let Some(window) = handle.get_webview_window("main") {
                        let _ = window.unminimize();
                        let _ = window.set_focus();
                    }
                }
                for link in links {
                    commands::open_link(&handle, &state, &link).await;
                }
            });
        }))
        .plugin(tauri_plugin_deep_link::init())
        .manage(state)
        .invoke_handler(tauri::generate_handler![
            commands::app_info,
            commands::join_progress,
            commands::start_embedded,
            commands::join,
            commands::create_invite,
            commands::create_role_link,
            commands::revoke_role_link,
            commands::invite_addresses,
            commands::leave_meeting,
            commands::rejoin_meeting,
            commands::end_meeting,
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
            commands::remove_participant,
            commands::mute_participant,
            commands::set_preset,
            commands::set_tiles,
            commands::video_socket,
            commands::picture_stats,
        ])
        .setup(move |app| {
            links::register(app.handle());
            let handle = app.handle().clone();
            // Join (or host) in the background: the window shows at once and the UI,
            // asking `app_info`/`session`, sees the meeting when it is there.
            tauri::async_runtime::spawn(async move {
                let state = handle.state::<AppState>();
                let outcome = match &startup {
                    Startup::Idle => return,
                    Startup::Host { name } => commands::host(&handle, &state, name, false).await,
                    Startup::Join {
                        server_url,
                        token,
                        fingerprint,
                        name,
                        guest,
                    } => match commands::guest_name(*guest, name.as_deref()) {
                        Ok(guest) => {
                            commands::join_server(
                                &handle,
                                &state,
                                server_url,
                                token,
                                *fingerprint,
                                guest.as_deref(),
                            )
                            .await
                        }
                        // A role link without --name: the join form asks for one.
                        Err(e) => {
                            let link = server_url.parse().ok().and_then(|server| {
                                onstage_client::InviteLink::role(server, token, *fingerprint).ok()
                            });
                            return commands::report_with_link(
                                &handle,
                                &state,
                                error::Context::Start,
                                e,
                                link.map(|l| l.to_string()),
                            );
                        }
                    },
                };
                match outcome {
                    Ok(session) => {
                        use tauri::Emitter;
                        let _ = handle.emit("session", &session);
                    }
                    Err(e) => commands::report(&handle, &state, error::Context::Start, e),
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
