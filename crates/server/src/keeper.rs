//! Keeps each live room's stage in storage as it changes, so that a restarted server —
//! after a crash as much as after a clean stop — gives the stage back (statuses, the queue
//! with its request times, who was accepted; see [`onstage_room::Seat`]).
//!
//! One writer task per room, fed through a `watch` channel: the room hands over its
//! seats after every change and never waits; the writer saves the newest seats it has,
//! so a burst of changes costs one write per write time, not one per change, and writes
//! can neither pile up nor land out of order.

use onstage_proto::MeetingId;
use onstage_room::Seat;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::storage::Storage;

/// The writer of one room's seats.
#[derive(Debug)]
pub struct SeatKeeper {
    latest: watch::Sender<Vec<Seat>>,
    writer: JoinHandle<()>,
}

impl SeatKeeper {
    /// Starts the writer; `kept` is what storage holds now (nothing to write until it
    /// changes).
    pub fn start(storage: Storage, meeting: MeetingId, kept: Vec<Seat>) -> Self {
        let (latest, mut seen) = watch::channel(kept);
        let writer = tokio::spawn(async move {
            // Ends once the room has dropped its side and the newest seats are saved.
            while seen.changed().await.is_ok() {
                let seats = seen.borrow_and_update().clone();
                if let Err(e) = storage.save_seats(meeting.clone(), seats).await {
                    tracing::error!(meeting = %meeting, error = %e, "could not keep the stage in storage");
                }
            }
        });
        Self { latest, writer }
    }

    /// The room's seats now; written soon unless they are what was last handed over.
    pub fn keep(&self, seats: Vec<Seat>) {
        self.latest.send_if_modified(|kept| {
            if *kept == seats {
                return false;
            }
            *kept = seats;
            true
        });
    }

    /// Waits until the last seats handed over are saved.
    pub async fn finish(self) {
        drop(self.latest);
        if let Err(e) = self.writer.await {
            tracing::error!(error = %e, "the stage writer failed");
        }
    }
}
