//! The team gate: libp2p's private-network handshake (pnet, PSK v1), accepting several keys.
//!
//! Why not `libp2p::pnet`: it takes exactly one key. A team revokes a device by rotating
//! its key, and members that were offline during the rotation still hold only the old
//! one; they must still be able to reach the team to learn the news. So a member dials
//! with its **current** key but accepts inbound connections under any key of a small set
//! (the current one and previous ones still in their grace period), see [`TeamKeys`].
//!
//! On the wire this is exactly libp2p-pnet 0.27 (and go-libp2p's pnet): each side writes
//! a random 24-byte nonce, reads the other's, then encrypts what it writes with
//! XSalsa20(key, own nonce) and decrypts what it reads with XSalsa20(key, remote nonce).
//! Stock pnet peers and ours interoperate whenever they share a key.
//!
//! Choosing the key: pnet itself never says which key a dialer used. But the first bytes
//! any libp2p dialer sends after pnet are multistream-select's header
//! ([`MULTISTREAM_HEADER`], 20 bytes), so the listener reads the dialer's nonce and those
//! 20 bytes (44 bytes in all, never more), decrypts them under each accepted key and
//! keeps the key that yields the header. None does: a device with another team key (or
//! none), refused with [`io::ErrorKind::PermissionDenied`]. The 20 decrypted bytes are
//! handed to the reader before anything else, and the read cipher continues after them.
//! The listener writes under the key it picked, so both directions use the dialer's key.

use std::{
    fmt, io,
    pin::Pin,
    task::{Context, Poll},
};

use futures::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ready};
use salsa20::{
    XSalsa20,
    cipher::{KeyIvInit as _, StreamCipher as _},
};

use crate::NetError;

/// Length of a team key (pnet's pre-shared key).
const KEY_LEN: usize = 32;

/// Length of the nonce each side sends first.
pub(crate) const NONCE_LEN: usize = 24;

/// multistream-select's header line as sent on the wire (a varint length of 19, then
/// `/multistream/1.0.0\n`): always the first thing a libp2p dialer writes after pnet.
const MULTISTREAM_HEADER: &[u8; 20] = b"\x13/multistream/1.0.0\n";

/// Most keys accepted besides the current one. Each costs the listener one trial
/// decryption of 20 bytes per inbound connection.
pub(crate) const MAX_ALSO_ACCEPT: usize = 8;

/// Most plaintext bytes one `poll_write` takes: the encrypted copy waiting for the
/// socket never grows beyond this, whatever the caller hands us.
const MAX_WRITE_CHUNK: usize = 16 * 1024;

/// A team key: pnet's 32-byte pre-shared key.
pub(crate) type TeamKey = [u8; KEY_LEN];

/// The keys of a keyed transport: outbound connections use `current`; inbound ones are
/// accepted under `current` or any of `also_accept`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct TeamKeys {
    current: TeamKey,
    /// Without `current` and without duplicates; at most [`MAX_ALSO_ACCEPT`].
    also_accept: Vec<TeamKey>,
}

impl TeamKeys {
    /// Rejects more than [`MAX_ALSO_ACCEPT`] extra keys; drops duplicates and the
    /// current key from `also_accept`.
    pub(crate) fn new(current: TeamKey, also_accept: Vec<TeamKey>) -> Result<Self, NetError> {
        if also_accept.len() > MAX_ALSO_ACCEPT {
            return Err(NetError::InvalidConfig(format!(
                "at most {MAX_ALSO_ACCEPT} team keys may be accepted besides the current one, \
                 got {}",
                also_accept.len()
            )));
        }
        let mut extra = Vec::with_capacity(also_accept.len());
        for key in also_accept {
            if key != current && !extra.contains(&key) {
                extra.push(key);
            }
        }
        Ok(Self {
            current,
            also_accept: extra,
        })
    }

    /// The key this node dials with.
    pub(crate) fn current(&self) -> &TeamKey {
        &self.current
    }

    /// The keys accepted besides the current one.
    pub(crate) fn also_accept(&self) -> &[TeamKey] {
        &self.also_accept
    }

    /// Every accepted key, the current one first.
    fn accepted(&self) -> impl Iterator<Item = &TeamKey> {
        std::iter::once(&self.current).chain(&self.also_accept)
    }
}

impl fmt::Debug for TeamKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keys are secrets: never in logs.
        f.debug_struct("TeamKeys")
            .field("also_accept", &self.also_accept.len())
            .finish_non_exhaustive()
    }
}

/// Which side of the connection we are, as multistream-select sees it: the dialer
/// speaks first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// Dials with the current key.
    Dialer,
    /// Accepts any key of the set.
    Listener,
}

/// A fresh nonce from the operating system's randomness.
pub(crate) fn random_nonce() -> io::Result<[u8; NONCE_LEN]> {
    use rand::TryRngCore as _;
    let mut nonce = [0; NONCE_LEN];
    rand::rngs::OsRng
        .try_fill_bytes(&mut nonce)
        .map_err(io::Error::other)?;
    Ok(nonce)
}

/// Runs the private-network handshake on `socket` with our nonce `local_nonce` (fresh
/// for every connection, see [`random_nonce`]). Reads at most 44 bytes before deciding;
/// the caller bounds the time (the transport's handshake timeout).
pub(crate) async fn handshake<S>(
    mut socket: S,
    side: Side,
    keys: &TeamKeys,
    local_nonce: [u8; NONCE_LEN],
) -> io::Result<PnetStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    socket
        .write_all(&local_nonce)
        .await
        .map_err(|e| handshake_error(e, "sending our nonce"))?;
    socket
        .flush()
        .await
        .map_err(|e| handshake_error(e, "sending our nonce"))?;
    let mut remote_nonce = [0; NONCE_LEN];
    socket
        .read_exact(&mut remote_nonce)
        .await
        .map_err(|e| handshake_error(e, "reading the remote nonce"))?;
    let (key, read_cipher, read_ahead) = match side {
        Side::Dialer => (
            *keys.current(),
            cipher(keys.current(), &remote_nonce),
            ReadAhead::default(),
        ),
        Side::Listener => {
            let mut first = [0; MULTISTREAM_HEADER.len()];
            socket
                .read_exact(&mut first)
                .await
                .map_err(|e| handshake_error(e, "reading the dialer's first bytes"))?;
            let (key, read_cipher) = pick_key(keys, &remote_nonce, &mut first)?;
            (key, read_cipher, ReadAhead::new(first))
        }
    };
    Ok(PnetStream {
        socket,
        read_cipher,
        write_cipher: cipher(&key, &local_nonce),
        read_ahead,
        write_buf: Vec::new(),
        write_pos: 0,
    })
}

/// Finds the accepted key under which `first` (the dialer's first ciphertext bytes)
/// decrypts to the multistream header; leaves the plaintext in `first` and returns the
/// key with its read cipher positioned after those bytes.
fn pick_key(
    keys: &TeamKeys,
    remote_nonce: &[u8; NONCE_LEN],
    first: &mut [u8; MULTISTREAM_HEADER.len()],
) -> io::Result<(TeamKey, XSalsa20)> {
    for (index, key) in keys.accepted().enumerate() {
        let mut read_cipher = cipher(key, remote_nonce);
        let mut plain = *first;
        apply_keystream(&mut read_cipher, &mut plain)?;
        if &plain == MULTISTREAM_HEADER {
            if index > 0 {
                tracing::debug!(
                    grace_key = index,
                    "inbound connection under a previous team key"
                );
            }
            *first = plain;
            return Ok((*key, read_cipher));
        }
    }
    Err(io::Error::new(
        io::ErrorKind::PermissionDenied,
        "pnet: the dialer's first bytes decrypt under none of our team keys \
         (a device with another team key, or none)",
    ))
}

fn cipher(key: &TeamKey, nonce: &[u8; NONCE_LEN]) -> XSalsa20 {
    XSalsa20::new(&(*key).into(), &(*nonce).into())
}

/// XORs the keystream into `buf`. Errors instead of panicking when the keystream is
/// exhausted (after 2^70 bytes: never in practice).
fn apply_keystream(cipher: &mut XSalsa20, buf: &mut [u8]) -> io::Result<()> {
    cipher
        .try_apply_keystream(buf)
        .map_err(|_| io::Error::other("pnet: XSalsa20 keystream exhausted"))
}

fn handshake_error(error: io::Error, doing: &str) -> io::Error {
    io::Error::new(error.kind(), format!("pnet handshake, {doing}: {error}"))
}

/// Plaintext the listener decrypted while choosing the key, owed to the reader.
#[derive(Debug, Default)]
struct ReadAhead {
    bytes: [u8; MULTISTREAM_HEADER.len()],
    start: usize,
    end: usize,
}

impl ReadAhead {
    fn new(bytes: [u8; MULTISTREAM_HEADER.len()]) -> Self {
        Self {
            bytes,
            start: 0,
            end: bytes.len(),
        }
    }

    /// Copies what fits into `buf`; 0 when nothing is owed (or `buf` is empty).
    fn take_into(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.end - self.start);
        buf[..n].copy_from_slice(&self.bytes[self.start..self.start + n]);
        self.start += n;
        n
    }

    fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

/// A connection after the handshake: reads are decrypted, writes encrypted.
///
/// Writes are encrypted into a buffer of at most [`MAX_WRITE_CHUNK`] bytes that is
/// flushed completely before more is accepted: once a byte is encrypted the keystream
/// has moved on, so it must reach the socket exactly once, however the socket splits
/// its writes.
pub(crate) struct PnetStream<S> {
    socket: S,
    read_cipher: XSalsa20,
    write_cipher: XSalsa20,
    read_ahead: ReadAhead,
    /// Ciphertext not yet taken by the socket: `write_buf[write_pos..]`.
    write_buf: Vec<u8>,
    write_pos: usize,
}

impl<S> fmt::Debug for PnetStream<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PnetStream")
            .field("read_ahead", &(self.read_ahead.end - self.read_ahead.start))
            .field("unsent", &(self.write_buf.len() - self.write_pos))
            .finish_non_exhaustive()
    }
}

impl<S: AsyncWrite + Unpin> PnetStream<S> {
    /// Writes the buffered ciphertext to the socket; `Ready(Ok)` once all of it went.
    fn poll_send_buffered(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.write_pos < self.write_buf.len() {
            match ready!(
                Pin::new(&mut self.socket).poll_write(cx, &self.write_buf[self.write_pos..])
            ) {
                Ok(0) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "pnet: the socket took none of the buffered bytes",
                    )));
                }
                Ok(n) => self.write_pos = (self.write_pos + n).min(self.write_buf.len()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        self.write_buf.clear();
        self.write_pos = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for PnetStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !this.read_ahead.is_empty() {
            return Poll::Ready(Ok(this.read_ahead.take_into(buf)));
        }
        let n = ready!(Pin::new(&mut this.socket).poll_read(cx, buf))?;
        let Some(read) = buf.get_mut(..n) else {
            return Poll::Ready(Err(io::Error::other(
                "pnet: the socket reported more bytes than it was given room for",
            )));
        };
        apply_keystream(&mut this.read_cipher, read)?;
        Poll::Ready(Ok(n))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for PnetStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(this.poll_send_buffered(cx))?;
        // The buffer is empty here: everything encrypted before has reached the socket.
        let n = buf.len().min(MAX_WRITE_CHUNK);
        this.write_buf.extend_from_slice(&buf[..n]);
        if let Err(e) = apply_keystream(&mut this.write_cipher, &mut this.write_buf[..]) {
            // Never let plaintext reach the socket.
            this.write_buf.clear();
            return Poll::Ready(Err(e));
        }
        // Start sending at once; if the socket is busy the bytes wait in the buffer and
        // the next write, flush or close sends them first.
        if let Poll::Ready(Err(e)) = this.poll_send_buffered(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send_buffered(cx))?;
        Pin::new(&mut this.socket).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send_buffered(cx))?;
        Pin::new(&mut this.socket).poll_close(cx)
    }
}

#[cfg(test)]
mod tests;
