//! # onstage-room — the stage authority, as a plain state machine
//!
//! One [`Room`] per live meeting holds the roster, each participant's preset and stage
//! status, the request queue, and who publishes what. It is sans-IO in the way `str0m` is:
//! no sockets, no tasks, no clock of its own. The caller (the server) feeds it inputs —
//! [`Room::connect`], [`Room::disconnect`], [`Room::handle_call`], [`Room::handle_timeout`],
//! and [`Room::media_published`] when the SFU has accepted a publication — each with the
//! current time, and drains what it produced with [`Room::drain_events`],
//! [`Room::drain_media_events`] and [`Room::poll_timeout`]. The same inputs always give the
//! same outputs, which is what makes the property tests in `tests/` possible.
//!
//! Every rule of the stage lives here; nothing here knows how the events travel.
//!
//! ## Layout
//! - `room.rs`: [`Room`] — the roster, stage statuses, the request queue, grace periods,
//!   live publications (a publication lasts while its owner is ON_STAGE and connected)
//!   and each participant's broadcast budget ([`BroadcastBudget`]); the stage table (who
//!   may move from which status to which, by which call) is the match in its call
//!   handling.
//! - `presets.rs`: the built-in presets (`host`, `speaker`, `viewer`, `spectator`).
//! - `error.rs`: [`StageError`], each with its stable wire code.
//! - `tests/`: the stage table case by case, the budget, and property tests over random
//!   call sequences.

mod error;
mod presets;
mod room;

pub use error::StageError;
pub use presets::{builtin_preset, builtin_presets, is_builtin_preset, BUILTIN_PRESET_NAMES};
pub use room::{BroadcastBudget, Connected, Member, Room, RoomConfig, Seat, Sequenced};

pub use onstage_proto as proto;
