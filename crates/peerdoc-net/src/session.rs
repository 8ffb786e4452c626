//! One peer's sync stream: a task that reads frames into the event channel and writes
//! the peer's bounded outbound queue to the stream.
//!
//! The task emits `PeerConnected`, then the peer's `Frame`s, then `PeerDisconnected` on
//! the same channel, so the caller always sees them in that order. Backpressure is per
//! peer: a slow caller stops this task reading (the remote's writes then block in yamux),
//! and a slow remote fills this peer's queue until `send_frame` reports
//! [`NetError::PeerQueueFull`].

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use futures::{AsyncReadExt as _, AsyncWriteExt as _, io::BufReader};
use libp2p::{Multiaddr, PeerId, Stream};
use tokio::sync::{mpsc, oneshot};

use crate::{
    Misbehaviour, NetError, NetEvent, SessionId, TransportKind,
    frame::{self, FrameError},
    rate::Budget,
};

/// Read buffer per stream; frames larger than this are read straight into their buffer.
const READ_BUFFER: usize = 64 * 1024;

/// Counters for one sync stream, shared between its task and `peers()`.
#[derive(Debug, Default)]
pub(crate) struct PeerStats {
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) frames_in: AtomicU64,
    pub(crate) frames_out: AtomicU64,
    /// Milliseconds since the unix epoch of the last received frame; 0 = never.
    last_frame_ms: AtomicU64,
}

impl PeerStats {
    fn record_in(&self, len: usize) {
        self.bytes_in.fetch_add(len as u64, Ordering::Relaxed);
        self.frames_in.fetch_add(1, Ordering::Relaxed);
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.last_frame_ms.store(now_ms, Ordering::Relaxed);
    }

    fn record_out(&self, len: usize) {
        self.bytes_out.fetch_add(len as u64, Ordering::Relaxed);
        self.frames_out.fetch_add(1, Ordering::Relaxed);
    }

    /// When the last frame arrived, if any did.
    pub(crate) fn last_frame(&self) -> Option<SystemTime> {
        match self.last_frame_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(UNIX_EPOCH + Duration::from_millis(ms)),
        }
    }
}

/// The sending side of one open sync stream.
#[derive(Debug, Clone)]
struct SessionSender {
    generation: u64,
    queue: mpsc::Sender<Bytes>,
}

/// Open sync streams by peer, shared by the event loop (which opens and closes them) and
/// every [`crate::NetHandle`] (which queues frames without a round trip through the loop,
/// so a caller busy sending can never deadlock against a loop busy delivering events).
#[derive(Debug, Clone, Default)]
pub(crate) struct SessionTable {
    inner: Arc<Mutex<HashMap<PeerId, SessionSender>>>,
}

impl SessionTable {
    fn lock(&self) -> MutexGuard<'_, HashMap<PeerId, SessionSender>> {
        // The map stays consistent even if a holder panicked: every update is one call.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn insert(&self, peer: PeerId, generation: u64, queue: mpsc::Sender<Bytes>) {
        self.lock()
            .insert(peer, SessionSender { generation, queue });
    }

    /// Removes the peer's entry if it still belongs to `generation`.
    pub(crate) fn remove_generation(&self, peer: &PeerId, generation: u64) {
        let mut map = self.lock();
        if map.get(peer).is_some_and(|s| s.generation == generation) {
            map.remove(peer);
        }
    }

    pub(crate) fn remove(&self, peer: &PeerId) {
        self.lock().remove(peer);
    }

    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    /// Queues a frame for `peer`'s stream `session` without waiting. A frame for any
    /// other session of the peer is refused: it belongs to a stream that has ended.
    pub(crate) fn try_send(
        &self,
        peer: PeerId,
        session: SessionId,
        frame: Bytes,
    ) -> Result<(), NetError> {
        let queue = match self.lock().get(&peer) {
            Some(s) if s.generation == session.0 => s.queue.clone(),
            Some(_) => return Err(NetError::StaleSession { peer, session }),
            None => return Err(NetError::PeerNotConnected { peer }),
        };
        queue.try_send(frame).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => NetError::PeerQueueFull { peer },
            mpsc::error::TrySendError::Closed(_) => NetError::PeerNotConnected { peer },
        })
    }
}

/// How a session ended.
#[derive(Debug)]
pub(crate) enum SessionEnd {
    /// The stream failed or the remote closed it.
    Closed(String),
    /// The remote broke the framing rules.
    Misbehaved(Misbehaviour),
    /// We closed it (replaced, banned, disconnected, shut down, or the caller went away).
    Stopped,
}

/// Sent to the event loop when a session task finishes.
#[derive(Debug)]
pub(crate) struct SessionEnded {
    pub(crate) peer: PeerId,
    pub(crate) generation: u64,
    pub(crate) end: SessionEnd,
}

/// Everything a session task needs.
pub(crate) struct Session {
    pub(crate) peer: PeerId,
    pub(crate) generation: u64,
    pub(crate) addr: Multiaddr,
    pub(crate) transport: TransportKind,
    pub(crate) stream: Stream,
    pub(crate) outbound: mpsc::Receiver<Bytes>,
    pub(crate) events: mpsc::Sender<NetEvent>,
    pub(crate) ended: mpsc::Sender<SessionEnded>,
    pub(crate) stats: Arc<PeerStats>,
    pub(crate) stop: oneshot::Receiver<()>,
    /// The session this one replaces; it must have emitted `PeerDisconnected` before this
    /// one emits `PeerConnected`.
    pub(crate) previous: Option<tokio::task::JoinHandle<()>>,
    pub(crate) max_frame_size: usize,
    /// The device's sync budget, if it has one (`rate.rs`).
    pub(crate) budget: Option<Arc<Budget>>,
}

impl Session {
    /// Runs the session to its end.
    pub(crate) async fn run(self) {
        let Session {
            peer,
            generation,
            addr,
            transport,
            stream,
            outbound,
            events,
            ended,
            stats,
            stop,
            previous,
            max_frame_size,
            budget,
        } = self;
        if let Some(previous) = previous {
            // A panic or cancellation of the old task still means it is gone.
            let _ = previous.await;
        }
        let session = SessionId(generation);
        let end = if events
            .send(NetEvent::PeerConnected {
                peer,
                session,
                addr,
                transport,
            })
            .await
            .is_err()
        {
            SessionEnd::Stopped
        } else {
            tracing::debug!(peer = %peer, generation, "sync stream open");
            let (read_half, write_half) = stream.split();
            let budget = budget.as_deref();
            let reading = read_frames(
                peer,
                session,
                read_half,
                &events,
                &stats,
                max_frame_size,
                budget,
            );
            let writing = write_frames(write_half, outbound, &stats, budget);
            let end = tokio::select! {
                end = reading => end,
                end = writing => end,
                _ = stop => SessionEnd::Stopped,
            };
            // Both halves are dropped here, which resets the stream.
            let _ = events
                .send(NetEvent::PeerDisconnected { peer, session })
                .await;
            end
        };
        tracing::debug!(peer = %peer, generation, end = ?end, "sync stream closed");
        let _ = ended
            .send(SessionEnded {
                peer,
                generation,
                end,
            })
            .await;
    }
}

async fn read_frames(
    peer: PeerId,
    session: SessionId,
    read_half: futures::io::ReadHalf<Stream>,
    events: &mpsc::Sender<NetEvent>,
    stats: &PeerStats,
    max_frame_size: usize,
    budget: Option<&Budget>,
) -> SessionEnd {
    let mut reader = BufReader::with_capacity(READ_BUFFER, read_half);
    loop {
        match frame::read_frame(&mut reader, max_frame_size).await {
            Ok(Some(payload)) => {
                stats.record_in(payload.len());
                // Not reading on until the budget allows holds the peer's next frames
                // back on its side.
                if let Some(budget) = budget {
                    budget.down.pass(payload.len()).await;
                }
                let event = NetEvent::Frame {
                    peer,
                    session,
                    bytes: Bytes::from(payload),
                };
                if events.send(event).await.is_err() {
                    return SessionEnd::Stopped;
                }
            }
            Ok(None) => return SessionEnd::Closed("remote closed the stream".to_owned()),
            Err(FrameError::Io(e)) => return SessionEnd::Closed(e.to_string()),
            Err(FrameError::MalformedPrefix) => {
                return SessionEnd::Misbehaved(Misbehaviour::MalformedLengthPrefix);
            }
            Err(FrameError::TooLarge { len, max }) => {
                return SessionEnd::Misbehaved(Misbehaviour::FrameTooLarge { len, max });
            }
        }
    }
}

async fn write_frames(
    mut write_half: futures::io::WriteHalf<Stream>,
    mut outbound: mpsc::Receiver<Bytes>,
    stats: &PeerStats,
    budget: Option<&Budget>,
) -> SessionEnd {
    loop {
        let Some(first) = outbound.recv().await else {
            let _ = write_half.close().await;
            return SessionEnd::Stopped;
        };
        let mut next = Some(first);
        // Write whatever else is already queued before flushing once; the queue is
        // bounded, so this loop is too.
        while let Some(frame) = next {
            if let Some(budget) = budget {
                budget.up.pass(frame.len()).await;
            }
            if let Err(e) = frame::write_frame(&mut write_half, &frame).await {
                return SessionEnd::Closed(e.to_string());
            }
            stats.record_out(frame.len());
            next = outbound.try_recv().ok();
        }
        if let Err(e) = write_half.flush().await {
            return SessionEnd::Closed(e.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_only_reach_the_session_they_name() {
        let table = SessionTable::default();
        let peer = PeerId::random();
        let (old_tx, _old_rx) = mpsc::channel(4);
        table.insert(peer, 1, old_tx);
        // The stream is replaced before the caller heard that the old one ended.
        let (new_tx, mut new_rx) = mpsc::channel(4);
        table.insert(peer, 2, new_tx);

        let stale = table.try_send(peer, SessionId(1), Bytes::from_static(b"old"));
        assert!(matches!(
            stale,
            Err(NetError::StaleSession { session, .. }) if session == SessionId(1)
        ));
        table
            .try_send(peer, SessionId(2), Bytes::from_static(b"new"))
            .unwrap();
        assert_eq!(&new_rx.try_recv().unwrap()[..], b"new");
        assert!(
            new_rx.try_recv().is_err(),
            "the stale frame never reached the new stream"
        );

        table.remove_generation(&peer, 2);
        assert!(matches!(
            table.try_send(peer, SessionId(2), Bytes::from_static(b"late")),
            Err(NetError::PeerNotConnected { .. })
        ));
    }
}
