//! The handshake and the stream over an in-memory connection that splits every read and
//! write at random and is sometimes busy; interop with libp2p's own pnet.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    task::Waker,
};

use futures::{AsyncReadExt as _, AsyncWriteExt as _, executor::block_on, future};
use libp2p::pnet::{PnetConfig, PreSharedKey};
use proptest::prelude::*;
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;

use super::*;

#[derive(Default)]
struct Channel {
    bytes: VecDeque<u8>,
    closed: bool,
    reader: Option<Waker>,
}

/// One end of an in-memory connection: each read and write moves 1–13 bytes, and a
/// quarter of the calls find the connection busy (`Pending`, woken at once).
struct ChunkyEnd {
    inbox: Arc<Mutex<Channel>>,
    outbox: Arc<Mutex<Channel>>,
    rng: ChaCha8Rng,
}

fn chunky_pipe(seed: u64) -> (ChunkyEnd, ChunkyEnd) {
    let there = Arc::new(Mutex::new(Channel::default()));
    let back = Arc::new(Mutex::new(Channel::default()));
    (
        ChunkyEnd {
            inbox: back.clone(),
            outbox: there.clone(),
            rng: ChaCha8Rng::seed_from_u64(seed),
        },
        ChunkyEnd {
            inbox: there,
            outbox: back,
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x5eed),
        },
    )
}

impl ChunkyEnd {
    fn busy(&mut self, cx: &mut Context<'_>) -> bool {
        let busy = self.rng.random_bool(0.25);
        if busy {
            cx.waker().wake_by_ref();
        }
        busy
    }
}

impl AsyncRead for ChunkyEnd {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.busy(cx) {
            return Poll::Pending;
        }
        let mut inbox = this.inbox.lock().unwrap();
        if inbox.bytes.is_empty() {
            if inbox.closed {
                return Poll::Ready(Ok(0));
            }
            inbox.reader = Some(cx.waker().clone());
            return Poll::Pending;
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = this
            .rng
            .random_range(1..=buf.len().min(inbox.bytes.len()).min(13));
        for (slot, byte) in buf.iter_mut().zip(inbox.bytes.drain(..n)) {
            *slot = byte;
        }
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for ChunkyEnd {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.busy(cx) {
            return Poll::Pending;
        }
        let n = this.rng.random_range(1..=buf.len().min(13));
        let mut outbox = this.outbox.lock().unwrap();
        outbox.bytes.extend(&buf[..n]);
        if let Some(reader) = outbox.reader.take() {
            reader.wake();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut outbox = self.outbox.lock().unwrap();
        outbox.closed = true;
        if let Some(reader) = outbox.reader.take() {
            reader.wake();
        }
        Poll::Ready(Ok(()))
    }
}

fn key(byte: u8) -> TeamKey {
    [byte; KEY_LEN]
}

fn keys(current: u8, also_accept: &[u8]) -> TeamKeys {
    TeamKeys::new(key(current), also_accept.iter().map(|b| key(*b)).collect()).unwrap()
}

/// The multistream header every libp2p dialer sends first, then `payload`.
fn dialer_says(payload: &[u8]) -> Vec<u8> {
    [&MULTISTREAM_HEADER[..], payload].concat()
}

/// Reads exactly `len` bytes in randomly sized pieces (so the listener's read-ahead is
/// handed out in parts too).
async fn read_in_pieces(
    stream: &mut (impl AsyncRead + Unpin),
    len: usize,
    rng: &mut ChaCha8Rng,
) -> io::Result<Vec<u8>> {
    let mut got = Vec::with_capacity(len);
    while got.len() < len {
        let mut piece = vec![0; rng.random_range(1..=(len - got.len()).min(17))];
        let n = stream.read(&mut piece).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        got.extend_from_slice(&piece[..n]);
    }
    Ok(got)
}

/// Sends the multistream header every libp2p dialer sends first: the listener needs it
/// to finish its handshake.
async fn greet<S: AsyncWrite + Unpin>(mut dialer: S) -> io::Result<S> {
    dialer.write_all(MULTISTREAM_HEADER).await?;
    dialer.flush().await?;
    Ok(dialer)
}

/// With the dialer's header already sent, sends `to_listener` one way and `to_dialer`
/// the other, both at once; returns what the listener read (the header first) and what
/// the dialer read.
async fn converse(
    mut dialer: impl AsyncRead + AsyncWrite + Unpin,
    mut listener: impl AsyncRead + AsyncWrite + Unpin,
    to_listener: &[u8],
    to_dialer: &[u8],
    seed: u64,
) -> io::Result<(Vec<u8>, Vec<u8>)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut rng2 = ChaCha8Rng::seed_from_u64(!seed);
    let dialer_side = async {
        dialer.write_all(to_listener).await?;
        dialer.flush().await?;
        let got = read_in_pieces(&mut dialer, to_dialer.len(), &mut rng).await?;
        dialer.close().await?;
        Ok::<_, io::Error>(got)
    };
    let listener_side = async {
        listener.write_all(to_dialer).await?;
        listener.flush().await?;
        let len = MULTISTREAM_HEADER.len() + to_listener.len();
        read_in_pieces(&mut listener, len, &mut rng2).await
    };
    let (heard_by_dialer, heard_by_listener) = future::try_join(dialer_side, listener_side).await?;
    Ok((heard_by_listener, heard_by_dialer))
}

async fn ours_to_ours(
    dialer_keys: &TeamKeys,
    listener_keys: &TeamKeys,
    seed: u64,
) -> io::Result<(PnetStream<ChunkyEnd>, PnetStream<ChunkyEnd>)> {
    let (a, b) = chunky_pipe(seed);
    let dialer =
        async { greet(handshake(a, Side::Dialer, dialer_keys, [1; NONCE_LEN]).await?).await };
    let listener = handshake(b, Side::Listener, listener_keys, [2; NONCE_LEN]);
    future::try_join(dialer, listener).await
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the split of reads and writes and whichever accepted key the dialer
    /// uses, bytes arrive intact both ways, the header the listener peeked at first.
    #[test]
    fn bytes_round_trip_under_every_accepted_key(
        seed in any::<u64>(),
        dialer_key in prop::sample::select(vec![1u8, 2, 3]),
        to_listener in prop::collection::vec(any::<u8>(), 0..3000),
        to_dialer in prop::collection::vec(any::<u8>(), 0..3000),
    ) {
        let listener_keys = keys(2, &[1, 3]);
        let (dialer, listener) = block_on(async {
            let (a, b) = chunky_pipe(seed);
            future::try_join(
                async { greet(handshake(a, Side::Dialer, &keys(dialer_key, &[]), [7; NONCE_LEN]).await?).await },
                handshake(b, Side::Listener, &listener_keys, [8; NONCE_LEN]),
            )
            .await
        })
        .unwrap();
        let (heard_by_listener, heard_by_dialer) =
            block_on(converse(dialer, listener, &to_listener, &to_dialer, seed)).unwrap();
        prop_assert_eq!(heard_by_listener, dialer_says(&to_listener));
        prop_assert_eq!(heard_by_dialer, to_dialer);
    }

    /// A peer that sends anything but a nonce and our key's header gets an error (the
    /// connection ends), never a panic.
    #[test]
    fn garbage_or_a_short_handshake_is_an_error_not_a_panic(
        seed in any::<u64>(),
        garbage in prop::collection::vec(any::<u8>(), 0..100),
    ) {
        for side in [Side::Dialer, Side::Listener] {
            let (ours, mut theirs) = chunky_pipe(seed);
            let result = block_on(async {
                theirs.write_all(&garbage).await.unwrap();
                theirs.close().await.unwrap();
                let mut stream = handshake(ours, side, &keys(1, &[2]), [3; NONCE_LEN]).await?;
                // A dialer cannot tell garbage from a nonce; what follows decrypts to
                // noise and then the connection ends.
                let mut rest = Vec::new();
                stream.read_to_end(&mut rest).await?;
                Ok::<_, io::Error>(rest.len())
            });
            match side {
                Side::Listener => {
                    let error = result.unwrap_err();
                    let expected = if garbage.len() < NONCE_LEN + MULTISTREAM_HEADER.len() {
                        io::ErrorKind::UnexpectedEof
                    } else {
                        io::ErrorKind::PermissionDenied
                    };
                    prop_assert_eq!(error.kind(), expected);
                }
                Side::Dialer if garbage.len() < NONCE_LEN => {
                    prop_assert_eq!(result.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
                }
                Side::Dialer => prop_assert_eq!(result.unwrap(), garbage.len() - NONCE_LEN),
            }
        }
    }
}

#[test]
fn a_dialer_with_another_key_is_refused_with_a_clear_error() {
    let refused = block_on(ours_to_ours(&keys(3, &[]), &keys(2, &[1]), 11)).unwrap_err();
    assert_eq!(refused.kind(), io::ErrorKind::PermissionDenied);
    assert!(
        refused.to_string().contains("none of our team keys"),
        "{refused}"
    );
}

#[test]
fn the_listener_answers_under_the_key_the_dialer_used() {
    for dialer_key in [1, 2] {
        let (dialer, listener) =
            block_on(ours_to_ours(&keys(dialer_key, &[]), &keys(2, &[1]), 5)).unwrap();
        let (heard_by_listener, heard_by_dialer) =
            block_on(converse(dialer, listener, b"ping", b"pong", 5)).unwrap();
        assert_eq!(heard_by_listener, dialer_says(b"ping"));
        assert_eq!(heard_by_dialer, b"pong");
    }
}

/// Wire compatibility: libp2p's pnet on one side, ours on the other, both ways.
#[test]
fn interoperates_with_libp2p_pnet_both_ways() {
    let stock = |end| async move {
        PnetConfig::new(PreSharedKey::new(key(1)))
            .handshake(end)
            .await
            .map_err(io::Error::other)
    };
    for seed in 0..16 {
        // Stock dialer, our listener accepting the dialer's key as a grace key.
        let (a, b) = chunky_pipe(seed);
        let (dialer, listener) = block_on(future::try_join(
            async { greet(stock(a).await?).await },
            handshake(b, Side::Listener, &keys(2, &[1]), [4; NONCE_LEN]),
        ))
        .unwrap();
        let (heard_by_listener, heard_by_dialer) = block_on(converse(
            dialer,
            listener,
            b"from the dialer",
            b"from the listener",
            seed,
        ))
        .unwrap();
        assert_eq!(heard_by_listener, dialer_says(b"from the dialer"));
        assert_eq!(heard_by_dialer, b"from the listener");

        // Our dialer, stock listener.
        let (a, b) = chunky_pipe(seed);
        let (dialer, listener) = block_on(future::try_join(
            async {
                greet(handshake(a, Side::Dialer, &keys(1, &[2]), [5; NONCE_LEN]).await?).await
            },
            stock(b),
        ))
        .unwrap();
        let (heard_by_listener, heard_by_dialer) = block_on(converse(
            dialer,
            listener,
            b"from the dialer",
            b"from the listener",
            seed,
        ))
        .unwrap();
        assert_eq!(heard_by_listener, dialer_says(b"from the dialer"));
        assert_eq!(heard_by_dialer, b"from the listener");
    }
}

/// A socket that never takes a byte.
struct Stuck;

impl AsyncWrite for Stuck {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, _: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Pending
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Pending
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Pending
    }
}

#[test]
fn a_stuck_socket_holds_at_most_one_encrypted_chunk() {
    let mut stream = PnetStream {
        socket: Stuck,
        read_cipher: cipher(&key(1), &[0; NONCE_LEN]),
        write_cipher: cipher(&key(1), &[1; NONCE_LEN]),
        read_ahead: ReadAhead::default(),
        write_buf: Vec::new(),
        write_pos: 0,
    };
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    let big = vec![0xAB; 1024 * 1024];
    let first = Pin::new(&mut stream).poll_write(&mut cx, &big);
    assert!(
        matches!(first, Poll::Ready(Ok(MAX_WRITE_CHUNK))),
        "{first:?}"
    );
    assert!(Pin::new(&mut stream).poll_write(&mut cx, &big).is_pending());
    assert!(Pin::new(&mut stream).poll_flush(&mut cx).is_pending());
    assert_eq!(stream.write_buf.len(), MAX_WRITE_CHUNK);
    // What waits is ciphertext, never the caller's plaintext.
    assert_ne!(stream.write_buf, big[..MAX_WRITE_CHUNK]);
}

#[test]
fn the_accepted_set_is_bounded_and_deduplicated() {
    let too_many = (0..=MAX_ALSO_ACCEPT as u8).map(key).collect();
    assert!(matches!(
        TeamKeys::new(key(200), too_many),
        Err(NetError::InvalidConfig(_))
    ));
    let set = keys(1, &[2, 1, 2, 3]);
    assert_eq!(set.also_accept(), &[key(2), key(3)]);
    assert!(
        !format!("{set:?}").contains("1, 1"),
        "keys must not be printed"
    );
}
