//! Closing a dead connection for real.
//!
//! libp2p closes a connection gracefully: the muxer sends its goodbye and flushes the
//! socket first. On a link that went dead with data still queued for the departed peer
//! (a device that walked out of Wi-Fi range while we were sending to it), that flush
//! waits for TCP to give up, which takes minutes, and until then the swarm still counts
//! the peer as connected: nobody redials it, and libp2p-stream may pick the dead
//! connection for a new sync stream.
//!
//! Every TCP connection's muxer is therefore wrapped in a [`SeverableMuxer`] registered
//! under its peer in a [`SeverSwitch`]. [`SeverSwitch::sever`] makes every muxer of the
//! peer fail on its next poll (and wakes it), so libp2p drops the connection at once,
//! without flushing: the queued bytes are lost, which is fine, because the sync layer
//! resends from its heads on the next session.

use std::{
    collections::HashMap,
    io,
    pin::Pin,
    sync::{
        Arc, Mutex, MutexGuard, Weak,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
};

use futures::task::AtomicWaker;
use libp2p::{
    PeerId,
    core::muxing::{StreamMuxer, StreamMuxerEvent},
};

/// One connection's switch.
#[derive(Debug, Default)]
struct Switch {
    severed: AtomicBool,
    waker: AtomicWaker,
}

impl Switch {
    fn trip(&self) {
        self.severed.store(true, Ordering::Release);
        self.waker.wake();
    }
}

/// The switches of every live connection, by peer. Cloned into the transport (which
/// registers each new connection) and kept by the event loop (which severs).
#[derive(Debug, Clone, Default)]
pub(crate) struct SeverSwitch {
    inner: Arc<Mutex<HashMap<PeerId, Vec<Weak<Switch>>>>>,
}

impl SeverSwitch {
    fn lock(&self) -> MutexGuard<'_, HashMap<PeerId, Vec<Weak<Switch>>>> {
        // Every update is a single call, so the map is consistent even after a panic.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wraps a new connection's muxer. The registry holds only weak references, pruned
    /// here, so it never outgrows the set of open connections.
    pub(crate) fn wrap<M>(&self, peer: PeerId, muxer: M) -> SeverableMuxer<M> {
        let switch = Arc::new(Switch::default());
        let mut map = self.lock();
        map.retain(|_, switches| {
            switches.retain(|s| s.strong_count() > 0);
            !switches.is_empty()
        });
        map.entry(peer).or_default().push(Arc::downgrade(&switch));
        SeverableMuxer {
            inner: muxer,
            switch,
        }
    }

    /// Makes every current connection to `peer` fail at once. Connections made later are
    /// not affected. Returns how many were severed.
    pub(crate) fn sever(&self, peer: &PeerId) -> usize {
        let switches = self.lock().remove(peer).unwrap_or_default();
        let mut severed = 0;
        for switch in switches.iter().filter_map(Weak::upgrade) {
            switch.trip();
            severed += 1;
        }
        severed
    }
}

/// A muxer that fails once its switch trips.
#[derive(Debug)]
pub(crate) struct SeverableMuxer<M> {
    inner: M,
    switch: Arc<Switch>,
}

impl<M> SeverableMuxer<M> {
    /// Registers the task's waker, then reports whether the switch tripped (in this
    /// order, so a trip between the two is never missed).
    fn severed(&self, cx: &Context<'_>) -> bool {
        self.switch.waker.register(cx.waker());
        self.switch.severed.load(Ordering::Acquire)
    }
}

fn severed_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "connection severed: the peer failed its liveness check",
    )
}

impl<M> StreamMuxer for SeverableMuxer<M>
where
    M: StreamMuxer + Unpin,
    M::Error: Into<io::Error>,
{
    type Substream = M::Substream;
    type Error = io::Error;

    fn poll_inbound(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        let this = self.get_mut();
        if this.severed(cx) {
            return Poll::Ready(Err(severed_error()));
        }
        Pin::new(&mut this.inner)
            .poll_inbound(cx)
            .map_err(Into::into)
    }

    fn poll_outbound(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        let this = self.get_mut();
        if this.severed(cx) {
            return Poll::Ready(Err(severed_error()));
        }
        Pin::new(&mut this.inner)
            .poll_outbound(cx)
            .map_err(Into::into)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let this = self.get_mut();
        // A graceful close that is stuck flushing to a dead peer ends here.
        if this.severed(cx) {
            return Poll::Ready(Err(severed_error()));
        }
        Pin::new(&mut this.inner).poll_close(cx).map_err(Into::into)
    }

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<StreamMuxerEvent, Self::Error>> {
        let this = self.get_mut();
        if this.severed(cx) {
            return Poll::Ready(Err(severed_error()));
        }
        Pin::new(&mut this.inner).poll(cx).map_err(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use std::task::Waker;

    use super::*;

    /// A muxer that never does anything, like one whose link went dead.
    struct Silent;

    impl StreamMuxer for Silent {
        type Substream = futures::io::Cursor<Vec<u8>>;
        type Error = io::Error;
        fn poll_inbound(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Result<Self::Substream, io::Error>> {
            Poll::Pending
        }
        fn poll_outbound(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Result<Self::Substream, io::Error>> {
            Poll::Pending
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
            Poll::Pending
        }
        fn poll(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Result<StreamMuxerEvent, io::Error>> {
            Poll::Pending
        }
    }

    #[test]
    fn severing_a_peer_fails_its_stuck_muxers_and_spares_others() {
        let switch = SeverSwitch::default();
        let (dead, alive) = (PeerId::random(), PeerId::random());
        let mut a = switch.wrap(dead, Silent);
        let mut b = switch.wrap(dead, Silent);
        let mut c = switch.wrap(alive, Silent);
        let mut cx = Context::from_waker(Waker::noop());
        assert!(Pin::new(&mut a).poll_close(&mut cx).is_pending());

        assert_eq!(switch.sever(&dead), 2);
        assert!(matches!(
            Pin::new(&mut a).poll_close(&mut cx),
            Poll::Ready(Err(_))
        ));
        assert!(matches!(
            Pin::new(&mut b).poll(&mut cx),
            Poll::Ready(Err(_))
        ));
        assert!(Pin::new(&mut c).poll(&mut cx).is_pending());

        // A connection made after the sever is a fresh one.
        let mut d = switch.wrap(dead, Silent);
        assert!(Pin::new(&mut d).poll(&mut cx).is_pending());
        drop((a, b, c, d));
        assert_eq!(switch.sever(&alive), 0, "dropped connections are forgotten");
    }
}
