//! What publisher and viewer share: one str0m [`Rtc`] in RTP mode with only H.264
//! (packetization-mode 1, 42e01f) and Opus, one UDP socket, and the task loop that moves
//! datagrams, timeouts and media between them.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::net::{DatagramRecv, Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::watch;

use crate::ProbeError;

/// H.264 constrained baseline 3.1, as openh264 and browsers negotiate it.
const H264_PROFILE_LEVEL_ID: u32 = 0x42e01f;
const H264_PT: u8 = 102;
const H264_RTX_PT: u8 = 103;
/// Largest datagram read.
const MAX_DATAGRAM: usize = 2048;
/// Datagrams read in one go before str0m's output is sent.
const READ_BATCH: usize = 32;

/// A session before it runs: the `Rtc`, its socket and the offer made.
pub(crate) struct Endpoint {
    pub rtc: Rtc,
    pub socket: UdpSocket,
    pub local: SocketAddr,
    pub mids: Vec<(Mid, MediaKind)>,
    pending: Option<SdpPendingOffer>,
}

impl Endpoint {
    /// Binds a socket on `bind_ip` and makes an offer with one media line per kind.
    pub async fn offer(
        bind_ip: IpAddr,
        lines: &[(MediaKind, Direction)],
    ) -> Result<(Endpoint, String), ProbeError> {
        let mut ep = Self::bind(bind_ip).await?;
        let mut api = ep.rtc.sdp_api();
        for (kind, dir) in lines {
            ep.mids
                .push((api.add_media(*kind, *dir, None, None, None), *kind));
        }
        let (offer, pending) = api
            .apply()
            .ok_or_else(|| ProbeError::Sdp("nothing to offer".into()))?;
        ep.pending = Some(pending);
        Ok((ep, offer.to_sdp_string()))
    }

    /// Binds a socket on `bind_ip` and answers the peer's `offer` (as an SFU that offers
    /// its subscriptions, Janus for one, wants). The offer's media lines are this
    /// endpoint's, in the direction the offer implies (a sendonly line is received).
    pub async fn answer(bind_ip: IpAddr, offer: &str) -> Result<(Endpoint, String), ProbeError> {
        let mut ep = Self::bind(bind_ip).await?;
        let parsed =
            SdpOffer::from_sdp_string(offer).map_err(|e| ProbeError::Sdp(e.to_string()))?;
        let answer = ep
            .rtc
            .sdp_api()
            .accept_offer(parsed)
            .map_err(|e| ProbeError::Sdp(e.to_string()))?;
        // The offer's audio and video lines, as str0m took them.
        for mid in offer_mids(offer) {
            if let Some(kind) = ep.rtc.media(mid).map(|m| m.kind()) {
                ep.mids.push((mid, kind));
            }
        }
        if ep.mids.is_empty() {
            return Err(ProbeError::Negotiation("the offer has no media".into()));
        }
        Ok((ep, answer.to_sdp_string()))
    }

    /// A session with only H.264 and Opus, its socket on `bind_ip` (a free port) and that
    /// socket as its one host candidate.
    async fn bind(bind_ip: IpAddr) -> Result<Endpoint, ProbeError> {
        let socket = UdpSocket::bind(SocketAddr::new(bind_ip, 0)).await?;
        let local = socket.local_addr()?;
        let mut config = Rtc::builder()
            .set_rtp_mode(true)
            .clear_codecs()
            .set_stats_interval(None);
        config.codec_config().add_h264(
            Pt::new_with_value(H264_PT),
            Some(Pt::new_with_value(H264_RTX_PT)),
            true,
            H264_PROFILE_LEVEL_ID,
        );
        let mut rtc = config.enable_opus(true, false).build(Instant::now());
        let candidate =
            Candidate::host(local, "udp").map_err(|e| ProbeError::Sdp(format!("{local}: {e}")))?;
        rtc.add_local_candidate(candidate);
        Ok(Endpoint {
            rtc,
            socket,
            local,
            mids: Vec::new(),
            pending: None,
        })
    }

    /// Applies the server's answer.
    pub fn accept(&mut self, answer: &str) -> Result<(), ProbeError> {
        let answer =
            SdpAnswer::from_sdp_string(answer).map_err(|e| ProbeError::Sdp(e.to_string()))?;
        let pending = self
            .pending
            .take()
            .ok_or_else(|| ProbeError::Sdp("the answer came twice".into()))?;
        self.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| ProbeError::Sdp(e.to_string()))
    }

    /// The negotiated payload type for `kind` on its media line (H.264 with
    /// packetization-mode 1, or Opus).
    pub fn payload_type(&self, kind: MediaKind) -> Result<(Mid, Pt), ProbeError> {
        let mid = self
            .mids
            .iter()
            .find(|(_, k)| *k == kind)
            .map(|(m, _)| *m)
            .ok_or_else(|| ProbeError::Negotiation(format!("no {kind:?} line")))?;
        let remote = self
            .rtc
            .media(mid)
            .map(|m| m.remote_pts().to_vec())
            .unwrap_or_default();
        let codec = match kind {
            MediaKind::Video => Codec::H264,
            MediaKind::Audio => Codec::Opus,
        };
        let pt = self
            .rtc
            .codec_config()
            .params()
            .iter()
            .filter(|p| p.spec().codec == codec)
            .filter(|p| remote.is_empty() || remote.contains(&p.pt()))
            .find(|p| codec != Codec::H264 || p.spec().format.packetization_mode == Some(1))
            .map(|p| p.pt())
            .ok_or_else(|| ProbeError::Negotiation(format!("the answer has no {codec:?}")))?;
        Ok((mid, pt))
    }

    pub fn kinds(&self) -> HashMap<Mid, MediaKind> {
        self.mids.iter().copied().collect()
    }
}

/// The `a=mid:` of each media section of an SDP, in order.
fn offer_mids(sdp: &str) -> Vec<Mid> {
    sdp.lines()
        .filter_map(|l| l.trim_end().strip_prefix("a=mid:"))
        .map(Mid::from)
        .collect()
}

/// What a probe does with its session; the loop in [`run`] calls it.
pub(crate) trait Role: Send + 'static {
    /// An event from the session (`Connected`, `RtpPacket`, `KeyframeRequest`...).
    fn event(&mut self, rtc: &mut Rtc, event: Event, now: Instant);
    /// When [`Role::tick`] must run next, if ever.
    fn next_tick(&self) -> Option<Instant>;
    /// Time passed: write the media due by `now` (through `rtc` while `alive`), or push
    /// raw datagrams to send past str0m.
    fn tick(
        &mut self,
        rtc: &mut Rtc,
        alive: bool,
        now: Instant,
        raw: &mut Vec<(SocketAddr, Vec<u8>)>,
    );
    /// str0m sent this datagram.
    fn sent(&mut self, _destination: SocketAddr, _contents: &[u8]) {}
    /// The session ended (closed by the peer, failed, or ICE gave up).
    fn closed(&mut self, now: Instant);
    /// A datagram arrived on the socket after the session ended.
    fn received_after_close(&mut self, _data: &[u8], _now: Instant) {}
}

/// Runs the session until `stop` says so (or its sender is dropped). On stop a live
/// session is closed properly (RTCP BYE, DTLS close_notify) before the task ends.
pub(crate) async fn run<R: Role>(
    mut ep: Endpoint,
    mut role: R,
    mut stop: watch::Receiver<bool>,
) -> R {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut alive = true;
    let mut raw = Vec::new();
    let far = Duration::from_secs(3600);
    loop {
        let now = Instant::now();
        if role.next_tick().is_some_and(|t| t <= now) {
            role.tick(&mut ep.rtc, alive, now, &mut raw);
            for (to, data) in raw.drain(..) {
                let _ = ep.socket.send_to(&data, to).await;
            }
        }
        let timeout = if alive {
            match drain(&mut ep, &mut role).await {
                Some(t) => t,
                None => {
                    alive = false;
                    role.closed(Instant::now());
                    Instant::now() + far
                }
            }
        } else {
            Instant::now() + far
        };
        let wake = role.next_tick().map_or(timeout, |t| t.min(timeout));
        tokio::select! {
            biased;
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    if alive {
                        let _ = ep.rtc.close();
                        drain(&mut ep, &mut role).await;
                    }
                    return role;
                }
            }
            got = ep.socket.recv_from(&mut buf) => {
                let Ok((n, from)) = got else { continue };
                // str0m holds one received packet at a time: poll it out after each input.
                let mut got = Some((n, from));
                for _ in 0..READ_BATCH {
                    let Some((n, from)) = got.take() else { break };
                    let now = Instant::now();
                    feed(&mut ep, &mut role, alive, now, from, &buf[..n]);
                    if alive && drain(&mut ep, &mut role).await.is_none() {
                        alive = false;
                        role.closed(Instant::now());
                    }
                    got = ep.socket.try_recv_from(&mut buf).ok();
                }
            }
            () = tokio::time::sleep_until(wake.into()) => {
                if alive && timeout <= Instant::now() {
                    let _ = ep.rtc.handle_input(Input::Timeout(Instant::now()));
                }
            }
        }
    }
}

fn feed<R: Role>(
    ep: &mut Endpoint,
    role: &mut R,
    alive: bool,
    now: Instant,
    from: SocketAddr,
    data: &[u8],
) {
    if !alive {
        role.received_after_close(data, now);
        return;
    }
    let Ok(contents) = DatagramRecv::try_from(data) else {
        return;
    };
    let input = Input::Receive(
        now,
        Receive {
            proto: Protocol::Udp,
            source: from,
            destination: ep.local,
            contents,
        },
    );
    if let Err(e) = ep.rtc.handle_input(input) {
        tracing::trace!(error = %e, "probe input refused");
    }
}

/// Polls the session until it wants time to pass: sends its datagrams, hands its events
/// to the role. `None` once the session has ended.
async fn drain<R: Role>(ep: &mut Endpoint, role: &mut R) -> Option<Instant> {
    loop {
        if !ep.rtc.is_alive() {
            return None;
        }
        match ep.rtc.poll_output() {
            Ok(Output::Transmit(t)) => {
                role.sent(t.destination, &t.contents);
                let _ = ep.socket.send_to(&t.contents, t.destination).await;
            }
            Ok(Output::Timeout(t)) => return Some(t),
            Ok(Output::Event(Event::IceConnectionStateChange(
                IceConnectionState::Disconnected,
            ))) => {
                ep.rtc.disconnect();
                return None;
            }
            Ok(Output::Event(e)) => role.event(&mut ep.rtc, e, Instant::now()),
            Err(e) => {
                tracing::debug!(error = %e, "probe session failed");
                ep.rtc.disconnect();
                return None;
            }
        }
    }
}

/// A session running in its own task ([`run`]), as publisher and viewer hold it: stop it,
/// or learn that the server ended it. Dropping it aborts the task.
pub(crate) struct Session {
    closed: watch::Receiver<bool>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Session {
    /// Runs `role` on `ep`; `closed` is set by the role when the server ends the session.
    pub(crate) fn spawn<R: Role>(ep: Endpoint, role: R, closed: watch::Receiver<bool>) -> Self {
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            run(ep, role, stop_rx).await;
        });
        Session {
            closed,
            stop,
            task: Some(task),
        }
    }

    /// Has the server ended the session?
    pub(crate) fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    /// Resolves when the server ends the session.
    pub(crate) async fn closed(&self) {
        let mut rx = self.closed.clone();
        let _ = rx.wait_for(|c| *c).await;
    }

    /// Closes the session (if still open) and waits for the task to end.
    pub(crate) async fn stop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The stats mutexes hold plain counters: a panic elsewhere leaves them usable.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Microseconds since the unix epoch, the clock stamps use.
pub(crate) fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}
