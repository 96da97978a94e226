//! Persistence: meetings, custom presets and participants in SQLite, plus the secret files
//! (`admin_key`, `jwt_secret`) of the data dir.
//!
//! One `rusqlite::Connection` (WAL mode) sits behind a mutex; every call runs on tokio's
//! blocking pool through [`Storage::run`], gated by a small semaphore so a burst of joins
//! cannot fan out into hundreds of blocking threads that would only queue on the mutex.
//! The schema is versioned with `rusqlite_migration`; add migrations, never edit old ones.
//! Built-in presets are not stored: they come from [`onstage_room::builtin_preset`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use onstage_proto::{MeetingId, PeerId, Preset, StageAccess, StageStatus, UnixMillis, UserId};
use onstage_room::Seat;
use rusqlite::{params, Connection, OptionalExtension};
use rusqlite_migration::{Migrations, M};
use tokio::sync::Semaphore;

use crate::error::StorageError;

/// The database file inside the data dir.
pub const DB_FILE: &str = "onstage.db";
/// The admin key file inside the data dir.
pub const ADMIN_KEY_FILE: &str = "admin_key";
/// The JWT signing secret file inside the data dir.
pub const JWT_SECRET_FILE: &str = "jwt_secret";

/// How many storage calls may wait on the blocking pool at once.
const MAX_CONCURRENT_CALLS: usize = 4;

const MIGRATIONS: &[M<'static>] = &[
    M::up(
        "CREATE TABLE meetings (
        id TEXT PRIMARY KEY NOT NULL,
        title TEXT NOT NULL,
        max_on_stage INTEGER NOT NULL,
        created_at INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE presets (
        name TEXT PRIMARY KEY NOT NULL,
        stage_enabled INTEGER NOT NULL,
        stage_access TEXT NOT NULL,
        accept_stage_requests INTEGER NOT NULL,
        kick_participant INTEGER NOT NULL,
        can_produce_audio INTEGER NOT NULL,
        can_produce_video INTEGER NOT NULL,
        created_at INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE participants (
        meeting_id TEXT NOT NULL REFERENCES meetings(id) ON DELETE CASCADE,
        user_id TEXT NOT NULL,
        name TEXT NOT NULL,
        preset_name TEXT NOT NULL,
        custom_participant_id TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (meeting_id, user_id)
    ) STRICT;
    CREATE INDEX participants_by_preset ON participants(preset_name);",
    ),
    // Token generations. Every token issued carries the participant's generation, and only
    // the current one opens a session, so re-issuing revokes the token before. The numbers
    // come from one server-wide counter rather than per participant: a participant removed
    // and added again under the same custom id starts above every token it ever had, so
    // none of them comes back to life. Existing participants get 0, the generation of the
    // tokens issued before generations existed (they carry none), which keep working.
    M::up(
        "ALTER TABLE participants ADD COLUMN token_generation INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE token_generation_counter (
        id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
        last INTEGER NOT NULL
    ) STRICT;
    INSERT INTO token_generation_counter (id, last) VALUES (1, 0);",
    ),
    // The live stage of each meeting (see `onstage_room::Seat`): every participant not
    // OFF_STAGE, kept as it changes, so a restarted server gives the stage back. `preset`
    // is the participant's preset as JSON, as it was when it was seated (an admin's later
    // change of the preset does not reach a seated participant either).
    M::up(
        "CREATE TABLE stage_seats (
        meeting_id TEXT NOT NULL REFERENCES meetings(id) ON DELETE CASCADE,
        user_id TEXT NOT NULL,
        position INTEGER NOT NULL,
        peer_id TEXT NOT NULL,
        name TEXT NOT NULL,
        preset TEXT NOT NULL,
        status TEXT NOT NULL,
        requested_at INTEGER,
        PRIMARY KEY (meeting_id, user_id)
    ) STRICT;",
    ),
    // Role invites: one link per meeting and preset that anyone may join with under a name
    // of their own (each join makes a participant). A revoked invite keeps its row, so a
    // join with it is told `token_revoked` rather than that it never existed.
    M::up(
        "CREATE TABLE invites (
        id TEXT PRIMARY KEY NOT NULL,
        meeting_id TEXT NOT NULL REFERENCES meetings(id) ON DELETE CASCADE,
        preset_name TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        revoked_at INTEGER
    ) STRICT;
    CREATE INDEX invites_by_meeting ON invites(meeting_id);
    CREATE INDEX invites_by_preset ON invites(preset_name);",
    ),
];

/// A meeting as stored: exactly what the admin API answers, so the wire type serves.
pub type MeetingRecord = onstage_proto::rest::Meeting;

/// A participant of a meeting as stored; the admin API lists it as a
/// [`onstage_proto::rest::Participant`] (no meeting, no token generation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantRecord {
    /// The participant's user id.
    pub id: UserId,
    pub meeting_id: MeetingId,
    pub name: String,
    pub preset_name: String,
    pub custom_participant_id: Option<String>,
    /// The generation of the participant's current token; older tokens are refused.
    pub token_generation: u64,
}

impl From<ParticipantRecord> for onstage_proto::rest::Participant {
    fn from(p: ParticipantRecord) -> Self {
        Self {
            id: p.id,
            name: p.name,
            preset_name: p.preset_name,
            custom_participant_id: p.custom_participant_id,
        }
    }
}

/// The outcome of [`Storage::add_participant`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddParticipant {
    Added(ParticipantRecord),
    /// The custom id was already in the meeting: updated, with a new token generation (the
    /// tokens issued before are revoked).
    Reissued(ParticipantRecord),
    NoMeeting,
    NoPreset,
}

/// The outcome of [`Storage::remove_participant`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoveParticipant {
    /// Removed; what it was.
    Removed(ParticipantRecord),
    NoMeeting,
    NoParticipant,
}

/// The outcome of [`Storage::set_participant_preset`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetPreset {
    /// The participant has this preset now.
    Set(Preset),
    NoParticipant,
    NoPreset,
}

/// The outcome of [`Storage::delete_preset`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeletePreset {
    Deleted(Preset),
    NotFound,
    /// Participants still use it; it stays.
    InUse(u64),
}

/// A role invite as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteRecord {
    pub id: String,
    pub meeting_id: MeetingId,
    pub preset_name: String,
    pub created_at: UnixMillis,
    pub revoked_at: Option<UnixMillis>,
}

/// The outcome of [`Storage::create_invite`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateInvite {
    Created(InviteRecord),
    NoMeeting,
    NoPreset,
}

/// The outcome of [`Storage::revoke_invite`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeInvite {
    /// Revoked now, or already before (then `revoked_at` is when it first was).
    Revoked(InviteRecord),
    NoMeeting,
    NoInvite,
}

/// The outcome of [`Storage::join_invite`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinInvite {
    /// Only looked (no name given): the invite lets people in.
    Valid,
    /// A new participant of the invite's preset, ready to be seated.
    Joined(MemberRecord),
    /// No such invite (or its meeting was deleted with it).
    NoInvite,
    Revoked,
    /// The invite's preset no longer resolves.
    NoPreset(String),
    /// The meeting already holds as many participants as it may (`max_participants`).
    Full,
}

/// What the signaling handler needs to seat a participant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    pub meeting: MeetingRecord,
    pub participant: ParticipantRecord,
    /// The participant's preset, `None` if it no longer resolves.
    pub preset: Option<Preset>,
}

/// The store. Cheap to clone.
#[derive(Clone)]
pub struct Storage {
    conn: Arc<Mutex<Connection>>,
    gate: Arc<Semaphore>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage").finish_non_exhaustive()
    }
}

impl Storage {
    /// Opens (creating if needed) the database in `data_dir` and brings its schema up to
    /// date. Blocking: call it from a blocking context.
    pub fn open(data_dir: &Path) -> Result<Self, StorageError> {
        ensure_dir(data_dir)?;
        let mut conn = Connection::open(data_dir.join(DB_FILE))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Migrations::from_slice(MIGRATIONS).to_latest(&mut conn)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            gate: Arc::new(Semaphore::new(MAX_CONCURRENT_CALLS)),
        })
    }

    /// Runs `f` with the connection on the blocking pool.
    pub async fn run<T, F>(&self, f: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StorageError> + Send + 'static,
    {
        let _permit = self
            .gate
            .acquire()
            .await
            .map_err(|e| StorageError::Worker(e.to_string()))?;
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock cannot leave a transaction half applied
            // (rusqlite rolls back on drop), so a poisoned lock is still usable.
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| StorageError::Worker(e.to_string()))?
    }

    pub async fn create_meeting(&self, meeting: MeetingRecord) -> Result<(), StorageError> {
        self.run(move |c| {
            c.execute(
                "INSERT INTO meetings (id, title, max_on_stage, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![
                    meeting.id.as_str(),
                    meeting.title,
                    meeting.max_on_stage,
                    to_sql_time(meeting.created_at)
                ],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn list_meetings(&self) -> Result<Vec<MeetingRecord>, StorageError> {
        self.run(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, title, max_on_stage, created_at FROM meetings
                 ORDER BY created_at, rowid",
            )?;
            let rows = stmt.query_map([], meeting_from_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    pub async fn get_meeting(&self, id: MeetingId) -> Result<Option<MeetingRecord>, StorageError> {
        self.run(move |c| get_meeting(c, &id)).await
    }

    /// Adds a participant, or with a `custom_participant_id` already in the meeting, updates
    /// its name and preset. The preset must exist (built-in or custom).
    pub async fn add_participant(
        &self,
        meeting_id: MeetingId,
        name: String,
        preset_name: String,
        custom_participant_id: Option<String>,
        now: UnixMillis,
    ) -> Result<AddParticipant, StorageError> {
        self.run(move |c| {
            let tx = c.transaction()?;
            if get_meeting(&tx, &meeting_id)?.is_none() {
                return Ok(AddParticipant::NoMeeting);
            }
            if resolve_preset(&tx, &preset_name)?.is_none() {
                return Ok(AddParticipant::NoPreset);
            }
            let user_id = match &custom_participant_id {
                Some(custom) => UserId::new(custom.clone()),
                None => UserId::new(uuid::Uuid::new_v4().to_string()),
            };
            // Every issue, first or again, takes a fresh generation: the token minted now
            // is the only one that works afterwards.
            let generation = next_token_generation(&tx)?;
            let existed = get_participant(&tx, &meeting_id, &user_id)?.is_some();
            tx.execute(
                "INSERT INTO participants
                   (meeting_id, user_id, name, preset_name, custom_participant_id,
                    created_at, updated_at, token_generation)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7)
                 ON CONFLICT (meeting_id, user_id) DO UPDATE SET
                   name = excluded.name,
                   preset_name = excluded.preset_name,
                   updated_at = excluded.updated_at,
                   token_generation = excluded.token_generation",
                params![
                    meeting_id.as_str(),
                    user_id.as_str(),
                    name,
                    preset_name,
                    custom_participant_id,
                    to_sql_time(now),
                    to_sql_generation(generation)
                ],
            )?;
            tx.commit()?;
            let record = ParticipantRecord {
                id: user_id,
                meeting_id,
                name,
                preset_name,
                custom_participant_id,
                token_generation: generation,
            };
            Ok(if existed {
                AddParticipant::Reissued(record)
            } else {
                AddParticipant::Added(record)
            })
        })
        .await
    }

    /// The participants of a meeting in the order they were added; `None` if the meeting
    /// does not exist.
    pub async fn list_participants(
        &self,
        meeting_id: MeetingId,
    ) -> Result<Option<Vec<ParticipantRecord>>, StorageError> {
        self.run(move |c| {
            if get_meeting(c, &meeting_id)?.is_none() {
                return Ok(None);
            }
            let mut stmt = c.prepare_cached(
                "SELECT meeting_id, user_id, name, preset_name, custom_participant_id,
                   token_generation
                 FROM participants WHERE meeting_id = ?1 ORDER BY created_at, rowid",
            )?;
            let rows = stmt.query_map([meeting_id.as_str()], participant_from_row)?;
            Ok(Some(rows.collect::<Result<Vec<_>, _>>()?))
        })
        .await
    }

    /// Removes a participant from a meeting. Its tokens are refused from then on, even if it
    /// is added again under the same custom id (that issue takes a newer generation).
    pub async fn remove_participant(
        &self,
        meeting_id: MeetingId,
        user_id: UserId,
    ) -> Result<RemoveParticipant, StorageError> {
        self.run(move |c| {
            let tx = c.transaction()?;
            if get_meeting(&tx, &meeting_id)?.is_none() {
                return Ok(RemoveParticipant::NoMeeting);
            }
            let Some(participant) = get_participant(&tx, &meeting_id, &user_id)? else {
                return Ok(RemoveParticipant::NoParticipant);
            };
            tx.execute(
                "DELETE FROM participants WHERE meeting_id = ?1 AND user_id = ?2",
                [meeting_id.as_str(), user_id.as_str()],
            )?;
            // Removed while its room was not running: it must not come back with the stage.
            tx.execute(
                "DELETE FROM stage_seats WHERE meeting_id = ?1 AND user_id = ?2",
                [meeting_id.as_str(), user_id.as_str()],
            )?;
            tx.commit()?;
            Ok(RemoveParticipant::Removed(participant))
        })
        .await
    }

    /// Gives a participant the preset named `preset` (built-in or custom), for this session
    /// and the next ones.
    pub async fn set_participant_preset(
        &self,
        meeting_id: MeetingId,
        user_id: UserId,
        preset: String,
    ) -> Result<SetPreset, StorageError> {
        self.run(move |c| {
            let tx = c.transaction()?;
            let Some(found) = resolve_preset(&tx, &preset)? else {
                return Ok(SetPreset::NoPreset);
            };
            let n = tx.execute(
                "UPDATE participants SET preset_name = ?3 WHERE meeting_id = ?1 AND user_id = ?2",
                [meeting_id.as_str(), user_id.as_str(), found.name.as_str()],
            )?;
            if n == 0 {
                return Ok(SetPreset::NoParticipant);
            }
            tx.commit()?;
            Ok(SetPreset::Set(found))
        })
        .await
    }

    /// Deletes a meeting and all its participants; `None` if there is no such meeting.
    pub async fn delete_meeting(
        &self,
        meeting_id: MeetingId,
    ) -> Result<Option<MeetingRecord>, StorageError> {
        self.run(move |c| {
            let tx = c.transaction()?;
            let Some(meeting) = get_meeting(&tx, &meeting_id)? else {
                return Ok(None);
            };
            // Explicit rather than left to ON DELETE CASCADE: that needs the foreign_keys
            // pragma, and a deleted meeting must never leave participants (tokens) behind.
            for table in ["participants", "stage_seats", "invites"] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE meeting_id = ?1"),
                    [meeting_id.as_str()],
                )?;
            }
            tx.execute("DELETE FROM meetings WHERE id = ?1", [meeting_id.as_str()])?;
            tx.commit()?;
            Ok(Some(meeting))
        })
        .await
    }

    /// Keeps a meeting's live stage: replaces what was kept with `seats` (in their order).
    pub async fn save_seats(
        &self,
        meeting_id: MeetingId,
        seats: Vec<Seat>,
    ) -> Result<(), StorageError> {
        self.run(move |c| {
            let tx = c.transaction()?;
            tx.execute(
                "DELETE FROM stage_seats WHERE meeting_id = ?1",
                [meeting_id.as_str()],
            )?;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO stage_seats
                     (meeting_id, user_id, position, peer_id, name, preset, status, requested_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?;
                for (position, seat) in seats.iter().enumerate() {
                    let preset = serde_json::to_string(&seat.preset)
                        .map_err(|e| StorageError::Corrupt(format!("preset: {e}")))?;
                    insert.execute(params![
                        meeting_id.as_str(),
                        seat.user_id.as_str(),
                        position as i64,
                        seat.peer_id.as_str(),
                        seat.name,
                        preset,
                        seat.status.as_str(),
                        seat.requested_at.map(|t| t as i64),
                    ])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// A meeting's kept stage, in order (empty when nothing was kept). A row that cannot
    /// be read is left out with a warning: one damaged seat must not keep a meeting shut.
    pub async fn load_seats(&self, meeting_id: MeetingId) -> Result<Vec<Seat>, StorageError> {
        self.run(move |c| {
            let mut select = c.prepare_cached(
                "SELECT user_id, peer_id, name, preset, status, requested_at FROM stage_seats
                 WHERE meeting_id = ?1 ORDER BY position",
            )?;
            let rows = select.query_map([meeting_id.as_str()], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, String>(4)?,
                    row.get::<_, Option<i64>>(5)?,
                ))
            })?;
            let mut seats = Vec::new();
            for row in rows {
                let (user_id, peer_id, name, preset, status, requested_at) = row?;
                let preset = serde_json::from_str::<Preset>(&preset);
                let status = serde_json::from_value::<StageStatus>(serde_json::Value::String(
                    status.clone(),
                ));
                match (preset, status) {
                    (Ok(preset), Ok(status)) => seats.push(Seat {
                        user_id: UserId::new(user_id),
                        peer_id: PeerId::new(peer_id),
                        name,
                        preset,
                        status,
                        requested_at: requested_at.and_then(|t| u64::try_from(t).ok()),
                    }),
                    (preset, status) => tracing::warn!(
                        meeting = %meeting_id, user = %user_id,
                        preset_ok = preset.is_ok(), status_ok = status.is_ok(),
                        "a kept stage seat cannot be read; leaving it out"
                    ),
                }
            }
            Ok(seats)
        })
        .await
    }

    /// Everything needed to seat a participant, in one storage call; `None` when the
    /// meeting or the participant does not exist.
    pub async fn load_member(
        &self,
        meeting_id: MeetingId,
        user_id: UserId,
    ) -> Result<Option<MemberRecord>, StorageError> {
        self.run(move |c| {
            let Some(meeting) = get_meeting(c, &meeting_id)? else {
                return Ok(None);
            };
            let Some(participant) = get_participant(c, &meeting_id, &user_id)? else {
                return Ok(None);
            };
            let preset = resolve_preset(c, &participant.preset_name)?;
            Ok(Some(MemberRecord {
                meeting,
                participant,
                preset,
            }))
        })
        .await
    }

    /// A new role invite of a meeting for a preset that exists (built-in or custom).
    pub async fn create_invite(
        &self,
        meeting_id: MeetingId,
        preset_name: String,
        now: UnixMillis,
    ) -> Result<CreateInvite, StorageError> {
        self.run(move |c| {
            let tx = c.transaction()?;
            if get_meeting(&tx, &meeting_id)?.is_none() {
                return Ok(CreateInvite::NoMeeting);
            }
            if resolve_preset(&tx, &preset_name)?.is_none() {
                return Ok(CreateInvite::NoPreset);
            }
            let invite = InviteRecord {
                id: uuid::Uuid::new_v4().to_string(),
                meeting_id,
                preset_name,
                created_at: now,
                revoked_at: None,
            };
            tx.execute(
                "INSERT INTO invites (id, meeting_id, preset_name, created_at, revoked_at)
                 VALUES (?1, ?2, ?3, ?4, NULL)",
                params![
                    invite.id,
                    invite.meeting_id.as_str(),
                    invite.preset_name,
                    to_sql_time(now)
                ],
            )?;
            tx.commit()?;
            Ok(CreateInvite::Created(invite))
        })
        .await
    }

    /// A meeting's invites, revoked ones included, oldest first; `None` if the meeting
    /// does not exist.
    pub async fn list_invites(
        &self,
        meeting_id: MeetingId,
    ) -> Result<Option<Vec<InviteRecord>>, StorageError> {
        self.run(move |c| {
            if get_meeting(c, &meeting_id)?.is_none() {
                return Ok(None);
            }
            let mut stmt = c.prepare_cached(&format!(
                "{INVITE_SELECT} WHERE meeting_id = ?1 ORDER BY created_at, rowid"
            ))?;
            let rows = stmt.query_map([meeting_id.as_str()], invite_from_row)?;
            Ok(Some(rows.collect::<Result<Vec<_>, _>>()?))
        })
        .await
    }

    /// Revokes an invite: nobody new joins with it. Whoever joined stays.
    pub async fn revoke_invite(
        &self,
        meeting_id: MeetingId,
        invite_id: String,
        now: UnixMillis,
    ) -> Result<RevokeInvite, StorageError> {
        self.run(move |c| {
            let tx = c.transaction()?;
            if get_meeting(&tx, &meeting_id)?.is_none() {
                return Ok(RevokeInvite::NoMeeting);
            }
            let Some(mut invite) =
                get_invite(&tx, &invite_id)?.filter(|i| i.meeting_id == meeting_id)
            else {
                return Ok(RevokeInvite::NoInvite);
            };
            if invite.revoked_at.is_none() {
                tx.execute(
                    "UPDATE invites SET revoked_at = ?2 WHERE id = ?1",
                    params![invite_id, to_sql_time(now)],
                )?;
                invite.revoked_at = Some(now);
            }
            tx.commit()?;
            Ok(RevokeInvite::Revoked(invite))
        })
        .await
    }

    /// A join with an invite of `meeting_id`: makes a participant named `name` with the
    /// invite's preset and a fresh token generation, all in one transaction, unless the
    /// invite is gone or revoked. Without a name it only looks ([`JoinInvite::Valid`]).
    pub async fn join_invite(
        &self,
        meeting_id: MeetingId,
        invite_id: String,
        name: Option<String>,
        max_participants: usize,
        now: UnixMillis,
    ) -> Result<JoinInvite, StorageError> {
        self.run(move |c| {
            let tx = c.transaction()?;
            let Some(meeting) = get_meeting(&tx, &meeting_id)? else {
                return Ok(JoinInvite::NoInvite);
            };
            let Some(invite) = get_invite(&tx, &invite_id)?.filter(|i| i.meeting_id == meeting_id)
            else {
                return Ok(JoinInvite::NoInvite);
            };
            if invite.revoked_at.is_some() {
                return Ok(JoinInvite::Revoked);
            }
            let Some(preset) = resolve_preset(&tx, &invite.preset_name)? else {
                return Ok(JoinInvite::NoPreset(invite.preset_name));
            };
            let held: i64 = tx.query_row(
                "SELECT COUNT(*) FROM participants WHERE meeting_id = ?1",
                params![meeting_id.as_str()],
                |row| row.get(0),
            )?;
            if usize::try_from(held).unwrap_or(usize::MAX) >= max_participants {
                return Ok(JoinInvite::Full);
            }
            let Some(name) = name else {
                return Ok(JoinInvite::Valid);
            };
            let user_id = UserId::new(uuid::Uuid::new_v4().to_string());
            let generation = next_token_generation(&tx)?;
            tx.execute(
                "INSERT INTO participants
                   (meeting_id, user_id, name, preset_name, custom_participant_id,
                    created_at, updated_at, token_generation)
                 VALUES (?1, ?2, ?3, ?4, NULL, ?5, ?5, ?6)",
                params![
                    meeting_id.as_str(),
                    user_id.as_str(),
                    name,
                    invite.preset_name,
                    to_sql_time(now),
                    to_sql_generation(generation)
                ],
            )?;
            tx.commit()?;
            Ok(JoinInvite::Joined(MemberRecord {
                meeting,
                participant: ParticipantRecord {
                    id: user_id,
                    meeting_id,
                    name,
                    preset_name: invite.preset_name,
                    custom_participant_id: None,
                    token_generation: generation,
                },
                preset: Some(preset),
            }))
        })
        .await
    }

    /// Custom presets, by name.
    pub async fn list_presets(&self) -> Result<Vec<Preset>, StorageError> {
        self.run(|c| {
            let mut stmt = c.prepare_cached(&format!("{PRESET_SELECT} ORDER BY name"))?;
            let rows = stmt.query_map([], preset_from_row)?;
            rows.map(|r| r?.into_preset())
                .collect::<Result<Vec<_>, StorageError>>()
        })
        .await
    }

    /// A custom preset by name.
    pub async fn get_preset(&self, name: String) -> Result<Option<Preset>, StorageError> {
        self.run(move |c| get_custom_preset(c, &name)).await
    }

    /// Stores a new custom preset; `false` if one with that name exists (nothing changes).
    pub async fn insert_preset(
        &self,
        preset: Preset,
        now: UnixMillis,
    ) -> Result<bool, StorageError> {
        self.run(move |c| {
            let n = c.execute(
                "INSERT INTO presets (name, stage_enabled, stage_access, accept_stage_requests,
                   kick_participant, can_produce_audio, can_produce_video, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (name) DO NOTHING",
                params![
                    preset.name,
                    preset.stage_enabled,
                    access_to_str(preset.stage_access),
                    preset.accept_stage_requests,
                    preset.kick_participant,
                    preset.can_produce_audio,
                    preset.can_produce_video,
                    to_sql_time(now)
                ],
            )?;
            Ok(n == 1)
        })
        .await
    }

    /// Replaces a custom preset's fields; `false` if there is no such preset.
    pub async fn update_preset(&self, preset: Preset) -> Result<bool, StorageError> {
        self.run(move |c| {
            let n = c.execute(
                "UPDATE presets SET stage_enabled = ?2, stage_access = ?3,
                   accept_stage_requests = ?4, kick_participant = ?5,
                   can_produce_audio = ?6, can_produce_video = ?7
                 WHERE name = ?1",
                params![
                    preset.name,
                    preset.stage_enabled,
                    access_to_str(preset.stage_access),
                    preset.accept_stage_requests,
                    preset.kick_participant,
                    preset.can_produce_audio,
                    preset.can_produce_video
                ],
            )?;
            Ok(n == 1)
        })
        .await
    }

    /// Deletes a custom preset unless participants or invites that are not revoked still
    /// use it (a guest of such an invite would have no preset to join with).
    pub async fn delete_preset(&self, name: String) -> Result<DeletePreset, StorageError> {
        self.run(move |c| {
            let tx = c.transaction()?;
            let Some(preset) = get_custom_preset(&tx, &name)? else {
                return Ok(DeletePreset::NotFound);
            };
            let users: i64 = tx.query_row(
                "SELECT COUNT(*) FROM participants WHERE preset_name = ?1",
                [&name],
                |r| r.get(0),
            )?;
            let invites: i64 = tx.query_row(
                "SELECT COUNT(*) FROM invites WHERE preset_name = ?1 AND revoked_at IS NULL",
                [&name],
                |r| r.get(0),
            )?;
            if users + invites > 0 {
                return Ok(DeletePreset::InUse(
                    u64::try_from(users + invites).unwrap_or(0),
                ));
            }
            tx.execute("DELETE FROM presets WHERE name = ?1", [&name])?;
            tx.commit()?;
            Ok(DeletePreset::Deleted(preset))
        })
        .await
    }
}

const PRESET_SELECT: &str = "SELECT name, stage_enabled, stage_access, accept_stage_requests,
    kick_participant, can_produce_audio, can_produce_video FROM presets";

/// A preset row before its `stage_access` text is checked.
struct PresetRow {
    preset: Preset,
    access: String,
}

impl PresetRow {
    fn into_preset(self) -> Result<Preset, StorageError> {
        let mut preset = self.preset;
        preset.stage_access = access_from_str(&self.access).ok_or_else(|| {
            StorageError::Corrupt(format!(
                "preset {:?} has stage_access {:?}",
                preset.name, self.access
            ))
        })?;
        Ok(preset)
    }
}

fn preset_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PresetRow> {
    Ok(PresetRow {
        preset: Preset {
            name: r.get(0)?,
            stage_enabled: r.get(1)?,
            stage_access: StageAccess::NotAllowed,
            accept_stage_requests: r.get(3)?,
            kick_participant: r.get(4)?,
            can_produce_audio: r.get(5)?,
            can_produce_video: r.get(6)?,
        },
        access: r.get(2)?,
    })
}

fn get_custom_preset(c: &Connection, name: &str) -> Result<Option<Preset>, StorageError> {
    c.prepare_cached(&format!("{PRESET_SELECT} WHERE name = ?1"))?
        .query_row([name], preset_from_row)
        .optional()?
        .map(PresetRow::into_preset)
        .transpose()
}

/// A preset by name: built-in first, then custom.
fn resolve_preset(c: &Connection, name: &str) -> Result<Option<Preset>, StorageError> {
    if let Some(p) = onstage_room::builtin_preset(name) {
        return Ok(Some(p));
    }
    get_custom_preset(c, name)
}

fn get_meeting(c: &Connection, id: &MeetingId) -> Result<Option<MeetingRecord>, StorageError> {
    Ok(
        c.prepare_cached("SELECT id, title, max_on_stage, created_at FROM meetings WHERE id = ?1")?
            .query_row([id.as_str()], meeting_from_row)
            .optional()?,
    )
}

fn get_participant(
    c: &Connection,
    meeting_id: &MeetingId,
    user_id: &UserId,
) -> Result<Option<ParticipantRecord>, StorageError> {
    Ok(c.prepare_cached(
        "SELECT meeting_id, user_id, name, preset_name, custom_participant_id,
               token_generation
             FROM participants WHERE meeting_id = ?1 AND user_id = ?2",
    )?
    .query_row(
        [meeting_id.as_str(), user_id.as_str()],
        participant_from_row,
    )
    .optional()?)
}

const INVITE_SELECT: &str =
    "SELECT id, meeting_id, preset_name, created_at, revoked_at FROM invites";

fn get_invite(c: &Connection, id: &str) -> Result<Option<InviteRecord>, StorageError> {
    Ok(c.prepare_cached(&format!("{INVITE_SELECT} WHERE id = ?1"))?
        .query_row([id], invite_from_row)
        .optional()?)
}

fn invite_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<InviteRecord> {
    Ok(InviteRecord {
        id: r.get(0)?,
        meeting_id: MeetingId::new(r.get::<_, String>(1)?),
        preset_name: r.get(2)?,
        created_at: from_sql_time(r.get(3)?),
        revoked_at: r.get::<_, Option<i64>>(4)?.map(from_sql_time),
    })
}

fn meeting_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MeetingRecord> {
    Ok(MeetingRecord {
        id: MeetingId::new(r.get::<_, String>(0)?),
        title: r.get(1)?,
        max_on_stage: r.get(2)?,
        created_at: from_sql_time(r.get(3)?),
    })
}

fn participant_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ParticipantRecord> {
    Ok(ParticipantRecord {
        meeting_id: MeetingId::new(r.get::<_, String>(0)?),
        id: UserId::new(r.get::<_, String>(1)?),
        name: r.get(2)?,
        preset_name: r.get(3)?,
        custom_participant_id: r.get(4)?,
        token_generation: u64::try_from(r.get::<_, i64>(5)?).unwrap_or(0),
    })
}

/// Takes the next number of the server-wide token generation counter (inside the caller's
/// transaction).
fn next_token_generation(c: &Connection) -> Result<u64, StorageError> {
    c.execute(
        "UPDATE token_generation_counter SET last = last + 1 WHERE id = 1",
        [],
    )?;
    let last: i64 = c.query_row(
        "SELECT last FROM token_generation_counter WHERE id = 1",
        [],
        |r| r.get(0),
    )?;
    u64::try_from(last)
        .map_err(|_| StorageError::Corrupt(format!("token generation counter is {last}")))
}

fn to_sql_generation(g: u64) -> i64 {
    i64::try_from(g).unwrap_or(i64::MAX)
}

fn to_sql_time(t: UnixMillis) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

fn from_sql_time(t: i64) -> UnixMillis {
    u64::try_from(t).unwrap_or(0)
}

fn access_to_str(a: StageAccess) -> &'static str {
    match a {
        StageAccess::Allowed => "ALLOWED",
        StageAccess::CanRequest => "CAN_REQUEST",
        StageAccess::NotAllowed => "NOT_ALLOWED",
    }
}

fn access_from_str(s: &str) -> Option<StageAccess> {
    Some(match s {
        "ALLOWED" => StageAccess::Allowed,
        "CAN_REQUEST" => StageAccess::CanRequest,
        "NOT_ALLOWED" => StageAccess::NotAllowed,
        _ => return None,
    })
}

fn ensure_dir(dir: &Path) -> Result<(), StorageError> {
    std::fs::create_dir_all(dir).map_err(|source| StorageError::Io {
        what: format!("creating data dir {}", dir.display()),
        source,
    })
}

/// Reads a secret file of the data dir (surrounding whitespace trimmed), or when it is
/// missing or empty creates it with `generate()`, readable by the owner only (0600).
/// Returns the secret and whether it was created now. Blocking.
pub fn load_or_create_secret(
    data_dir: &Path,
    file: &str,
    generate: impl FnOnce() -> String,
) -> Result<(String, bool), StorageError> {
    ensure_dir(data_dir)?;
    let path: PathBuf = data_dir.join(file);
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok((text.trim().to_owned(), false)),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(StorageError::Io {
                what: format!("reading {}", path.display()),
                source,
            })
        }
    }
    let secret = generate();
    write_private(&path, &secret).map_err(|source| StorageError::Io {
        what: format!("writing {}", path.display()),
        source,
    })?;
    Ok((secret, true))
}

/// Writes a file only its owner may read (secrets, the self-signed certificate's key).
pub(crate) fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    f.write_all(content.as_bytes())?;
    f.sync_all()
}

/// A fresh random secret: 32 bytes from the thread's CSPRNG, hex encoded (64 chars).
pub fn random_secret() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> MeetingRecord {
        MeetingRecord {
            id: MeetingId::new(id),
            title: format!("t-{id}"),
            max_on_stage: 3,
            created_at: 1,
        }
    }

    #[tokio::test]
    async fn meetings_participants_and_presets_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Storage::open(dir.path()).expect("open");
        s.create_meeting(record("m1")).await.expect("create");
        assert_eq!(s.list_meetings().await.expect("list"), vec![record("m1")]);

        let custom = Preset {
            name: "mod".into(),
            stage_enabled: true,
            stage_access: StageAccess::CanRequest,
            accept_stage_requests: true,
            kick_participant: false,
            can_produce_audio: true,
            can_produce_video: false,
        };
        assert!(s.insert_preset(custom.clone(), 1).await.expect("insert"));
        assert!(!s
            .insert_preset(custom.clone(), 1)
            .await
            .expect("insert again"));
        assert_eq!(
            s.get_preset("mod".into()).await.expect("get"),
            Some(custom.clone())
        );

        let added = s
            .add_participant(
                MeetingId::new("m1"),
                "Ann".into(),
                "mod".into(),
                Some("ann".into()),
                2,
            )
            .await
            .expect("add");
        assert!(matches!(added, AddParticipant::Added(ref p) if p.id.as_str() == "ann"));
        let again = s
            .add_participant(
                MeetingId::new("m1"),
                "Anna".into(),
                "viewer".into(),
                Some("ann".into()),
                3,
            )
            .await
            .expect("re-add");
        let AddParticipant::Reissued(again) = again else {
            panic!("a custom id added again is a re-issue: {again:?}")
        };
        assert_eq!(again.name, "Anna");
        let AddParticipant::Added(first) = added else {
            panic!("{added:?}")
        };
        assert!(
            again.token_generation > first.token_generation,
            "a re-issue takes a newer generation"
        );
        let list = s
            .list_participants(MeetingId::new("m1"))
            .await
            .expect("list")
            .expect("some");
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].preset_name, "viewer");

        assert_eq!(
            s.add_participant(MeetingId::new("nope"), "x".into(), "host".into(), None, 4)
                .await
                .expect("add"),
            AddParticipant::NoMeeting
        );
        assert_eq!(
            s.add_participant(MeetingId::new("m1"), "x".into(), "ghost".into(), None, 4)
                .await
                .expect("add"),
            AddParticipant::NoPreset
        );

        let member = s
            .load_member(MeetingId::new("m1"), UserId::new("ann"))
            .await
            .expect("load")
            .expect("some");
        assert_eq!(member.preset.map(|p| p.name), Some("viewer".to_owned()));
        assert_eq!(
            s.delete_preset("mod".into()).await.expect("delete"),
            DeletePreset::Deleted(custom)
        );
        assert_eq!(
            s.delete_preset("mod".into()).await.expect("delete"),
            DeletePreset::NotFound
        );
    }

    #[tokio::test]
    async fn a_preset_given_to_a_participant_is_kept_and_must_exist() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Storage::open(dir.path()).expect("open");
        s.create_meeting(record("m1")).await.expect("create");
        s.add_participant(
            MeetingId::new("m1"),
            "Ann".into(),
            "viewer".into(),
            Some("ann".into()),
            1,
        )
        .await
        .expect("add");
        let set = |user: &str, preset: &str| {
            s.set_participant_preset(MeetingId::new("m1"), UserId::new(user), preset.into())
        };
        assert_eq!(set("ann", "nope").await.expect("set"), SetPreset::NoPreset);
        assert_eq!(
            set("bob", "host").await.expect("set"),
            SetPreset::NoParticipant
        );
        let host = onstage_room::builtin_preset("host").expect("built-in");
        assert_eq!(set("ann", "host").await.expect("set"), SetPreset::Set(host));
        // It holds for the next session, after a restart too.
        drop(s);
        let s = Storage::open(dir.path()).expect("reopen");
        let member = s
            .load_member(MeetingId::new("m1"), UserId::new("ann"))
            .await
            .expect("load")
            .expect("some");
        assert_eq!(member.participant.preset_name, "host");
        assert_eq!(member.preset.map(|p| p.name), Some("host".to_owned()));
    }

    #[tokio::test]
    async fn data_from_before_token_generations_survives_at_generation_zero() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            // A database as the first schema left it, with a participant in it.
            let mut conn = Connection::open(dir.path().join(DB_FILE)).expect("open");
            Migrations::from_slice(&MIGRATIONS[..1])
                .to_latest(&mut conn)
                .expect("first schema");
            conn.execute_batch(
                "INSERT INTO meetings VALUES ('m1', 'Old', 5, 1);
                 INSERT INTO participants VALUES ('m1', 'ann', 'Ann', 'host', 'ann', 1, 1);",
            )
            .expect("old data");
        }
        let s = Storage::open(dir.path()).expect("open and migrate");
        let member = s
            .load_member(MeetingId::new("m1"), UserId::new("ann"))
            .await
            .expect("load")
            .expect("kept");
        assert_eq!(member.meeting.title, "Old");
        assert_eq!(member.participant.name, "Ann");
        assert_eq!(
            member.participant.token_generation, 0,
            "the generation of the tokens issued before (they carry none)"
        );
        // Issuing again moves it on: the old tokens are revoked.
        let again = s
            .add_participant(
                MeetingId::new("m1"),
                "Ann".into(),
                "host".into(),
                Some("ann".into()),
                2,
            )
            .await
            .expect("re-issue");
        assert!(matches!(again, AddParticipant::Reissued(ref p) if p.token_generation > 0));
    }

    #[tokio::test]
    async fn removed_participants_and_deleted_meetings_are_gone_and_generations_never_repeat() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Storage::open(dir.path()).expect("open");
        s.create_meeting(record("m1")).await.expect("create");
        s.create_meeting(record("m2")).await.expect("create");
        let add = |meeting: &str| {
            s.add_participant(
                MeetingId::new(meeting),
                "Bob".into(),
                "viewer".into(),
                Some("bob".into()),
                1,
            )
        };
        let AddParticipant::Added(first) = add("m1").await.expect("add") else {
            panic!("added")
        };
        let removed = s
            .remove_participant(MeetingId::new("m1"), UserId::new("bob"))
            .await
            .expect("remove");
        assert_eq!(removed, RemoveParticipant::Removed(first.clone()));
        assert_eq!(
            s.remove_participant(MeetingId::new("m1"), UserId::new("bob"))
                .await
                .expect("remove again"),
            RemoveParticipant::NoParticipant
        );
        assert_eq!(
            s.remove_participant(MeetingId::new("nope"), UserId::new("bob"))
                .await
                .expect("remove"),
            RemoveParticipant::NoMeeting
        );
        assert!(s
            .load_member(MeetingId::new("m1"), UserId::new("bob"))
            .await
            .expect("load")
            .is_none());
        // Added again under the same id: a generation above every earlier one, so the
        // removed participant's tokens stay dead.
        let AddParticipant::Added(back) = add("m1").await.expect("add") else {
            panic!("added anew")
        };
        assert!(back.token_generation > first.token_generation);

        add("m2").await.expect("add");
        assert_eq!(
            s.delete_meeting(MeetingId::new("m1"))
                .await
                .expect("delete"),
            Some(record("m1"))
        );
        assert_eq!(
            s.delete_meeting(MeetingId::new("m1"))
                .await
                .expect("delete"),
            None
        );
        assert_eq!(
            s.get_meeting(MeetingId::new("m1")).await.expect("get"),
            None
        );
        assert_eq!(
            s.list_participants(MeetingId::new("m1"))
                .await
                .expect("list"),
            None
        );
        let left: i64 = s
            .run(|c| {
                Ok(c.query_row(
                    "SELECT COUNT(*) FROM participants WHERE meeting_id = 'm1'",
                    [],
                    |r| r.get(0),
                )?)
            })
            .await
            .expect("count");
        assert_eq!(left, 0, "no participant outlives its meeting");
        // The other meeting is untouched.
        assert_eq!(
            s.list_participants(MeetingId::new("m2"))
                .await
                .expect("list")
                .map(|l| l.len()),
            Some(1)
        );
    }

    #[tokio::test]
    async fn a_database_from_before_invites_keeps_its_data_and_gains_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            // A database as the schema before invites left it, with a meeting, a custom
            // preset, a participant and a kept stage seat in it.
            let mut conn = Connection::open(dir.path().join(DB_FILE)).expect("open");
            Migrations::from_slice(&MIGRATIONS[..3])
                .to_latest(&mut conn)
                .expect("the schema before invites");
            conn.execute_batch(
                "INSERT INTO meetings VALUES ('m1', 'Old', 5, 1);
                 INSERT INTO presets VALUES ('panel', 1, 'ALLOWED', 0, 0, 1, 1, 1);
                 INSERT INTO participants VALUES ('m1', 'ann', 'Ann', 'panel', 'ann', 1, 1, 7);
                 UPDATE token_generation_counter SET last = 7;",
            )
            .expect("old data");
            let preset = serde_json::to_string(&onstage_room::builtin_preset("speaker"))
                .expect("a preset as JSON");
            conn.execute(
                "INSERT INTO stage_seats VALUES ('m1', 'ann', 0, 'p1', 'Ann', ?1, 'ON_STAGE', NULL)",
                [preset],
            )
            .expect("a kept seat");
        }
        let s = Storage::open(dir.path()).expect("open and migrate");
        let member = s
            .load_member(MeetingId::new("m1"), UserId::new("ann"))
            .await
            .expect("load")
            .expect("kept");
        assert_eq!(
            (
                member.meeting.title.as_str(),
                member.participant.name.as_str()
            ),
            ("Old", "Ann")
        );
        assert_eq!(member.participant.token_generation, 7);
        assert_eq!(member.preset.map(|p| p.name), Some("panel".to_owned()));
        assert_eq!(
            s.load_seats(MeetingId::new("m1"))
                .await
                .expect("seats")
                .len(),
            1
        );
        assert_eq!(
            s.list_invites(MeetingId::new("m1")).await.expect("list"),
            Some(Vec::new())
        );

        let CreateInvite::Created(invite) = s
            .create_invite(MeetingId::new("m1"), "panel".into(), 5)
            .await
            .expect("create")
        else {
            panic!("an invite for a kept meeting and preset")
        };
        let JoinInvite::Joined(guest) = s
            .join_invite(
                MeetingId::new("m1"),
                invite.id.clone(),
                Some("Bo".into()),
                100,
                6,
            )
            .await
            .expect("join")
        else {
            panic!("a guest joins")
        };
        assert!(
            guest.participant.token_generation > 7,
            "the counter carries on from the old data"
        );
        assert_eq!(
            s.delete_preset("panel".into()).await.expect("delete"),
            DeletePreset::InUse(3),
            "two participants (Ann, and the guest) and an invite use it"
        );
        let RevokeInvite::Revoked(revoked) = s
            .revoke_invite(MeetingId::new("m1"), invite.id.clone(), 8)
            .await
            .expect("revoke")
        else {
            panic!("revoked")
        };
        assert_eq!(revoked.revoked_at, Some(8));
        assert_eq!(
            s.join_invite(
                MeetingId::new("m1"),
                invite.id.clone(),
                Some("Cy".into()),
                100,
                9
            )
            .await
            .expect("join"),
            JoinInvite::Revoked
        );
        // The meeting takes its invites with it.
        s.delete_meeting(MeetingId::new("m1"))
            .await
            .expect("delete");
        assert_eq!(
            s.join_invite(MeetingId::new("m1"), invite.id, None, 100, 10)
                .await
                .expect("look"),
            JoinInvite::NoInvite
        );
        let left: i64 = s
            .run(|c| Ok(c.query_row("SELECT COUNT(*) FROM invites", [], |r| r.get(0))?))
            .await
            .expect("count");
        assert_eq!(left, 0);
    }

    #[test]
    fn secrets_are_created_once_with_owner_only_permissions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, created) =
            load_or_create_secret(dir.path(), JWT_SECRET_FILE, random_secret).expect("create");
        assert!(created);
        assert_eq!(a.len(), 64);
        let (b, created) =
            load_or_create_secret(dir.path(), JWT_SECRET_FILE, random_secret).expect("load");
        assert!(!created);
        assert_eq!(a, b);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(JWT_SECRET_FILE))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
