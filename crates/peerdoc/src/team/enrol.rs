//! Enrolment: a new device joins with an invite code, with no mDNS and no internet.
//!
//! The admin's daemon listens on `team.enrol_listen` (TCP, default port 7411). The
//! joining daemon dials the addresses in the code and sends one sealed request; the
//! admin's daemon answers with one sealed reply and closes. Each message is a frame: a
//! 4-byte big-endian length, then the bytes of `peerdoc_team`'s enrolment messages. The
//! secret in the code keys an AEAD both ways, so an eavesdropper learns nothing and
//! only the holder of the code can join (`docs/security.md`).
//!
//! Bounds: frames of at most [`MAX_FRAME`], [`ENROL_TIMEOUT`] per connection, and at
//! most [`MAX_CONCURRENT`] connections served at once (more are closed at once).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use peerdoc_net::Keypair;
use peerdoc_node::PeerId;
// MAX_FRAME: the team crate's own bound on a sealed request or reply.
use peerdoc_team::{InviteCode, JoinRequest, MAX_FRAME, Refusal, Reply, Welcome};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::{TeamFile, TeamService, now_ms};
use crate::server::ApiError;

/// How long one enrolment exchange may take, each side.
pub(crate) const ENROL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a joining device waits for one address to accept.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Enrolment connections served at once.
const MAX_CONCURRENT: usize = 8;

/// Binds the enrolment listener and serves it for `service` until the process ends.
/// Returns the addresses to put in invite codes: the bound address, or, when bound to
/// every interface, each interface's address.
pub async fn bind(service: Arc<TeamService>, addr: SocketAddr) -> std::io::Result<Vec<SocketAddr>> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let addrs = advertised(bound);
    tracing::info!(addr = %bound, "accepting invite codes");
    service.set_enrol_addrs(addrs.clone());
    let slots = Arc::new(Semaphore::new(MAX_CONCURRENT));
    tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::debug!(%error, "enrolment accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                tracing::info!(%peer, "too many enrolments at once; connection closed");
                continue;
            };
            let service = service.clone();
            tokio::spawn(async move {
                let outcome = tokio::time::timeout(ENROL_TIMEOUT, serve(&service, stream)).await;
                match outcome {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => tracing::info!(%peer, %error, "enrolment failed"),
                    Err(_) => tracing::info!(%peer, "enrolment timed out"),
                }
                drop(permit);
            });
        }
    });
    Ok(addrs)
}

/// The addresses at which `bound` can be reached from the LAN.
fn advertised(bound: SocketAddr) -> Vec<SocketAddr> {
    if !bound.ip().is_unspecified() {
        return vec![bound];
    }
    let mut addrs: Vec<SocketAddr> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .filter(|i| !i.is_loopback())
        .filter_map(|i| match i.ip() {
            IpAddr::V4(v4) if !v4.is_link_local() => {
                Some(SocketAddr::new(IpAddr::V4(v4), bound.port()))
            }
            _ => None,
        })
        .take(peerdoc_team::MAX_INVITE_ADDRS)
        .collect();
    if addrs.is_empty() {
        addrs.push(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            bound.port(),
        ));
    }
    addrs
}

async fn serve(service: &TeamService, mut stream: TcpStream) -> std::io::Result<()> {
    let request = read_frame(&mut stream).await?;
    let reply = service.accept_join(&request).await;
    write_frame(&mut stream, &reply).await?;
    stream.shutdown().await
}

async fn read_frame(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let len = stream.read_u32().await? as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("an enrolment frame of {len} bytes is over the {MAX_FRAME}-byte limit"),
        ));
    }
    let mut bytes = vec![0u8; len];
    stream.read_exact(&mut bytes).await?;
    Ok(bytes)
}

async fn write_frame(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "frame too large"))?;
    stream.write_u32(len).await?;
    stream.write_all(bytes).await?;
    stream.flush().await
}

/// A device that joined: its name and role.
pub(super) type Joined = (String, peerdoc_team::Role);

/// The inviting side: answers one sealed request. `Err` only for a request whose
/// invite is unknown here (answered in clear: there is no secret to seal with).
pub(super) fn accept(
    file: &mut TeamFile,
    keypair: &Keypair,
    request: &[u8],
    inviter_addrs: Vec<String>,
) -> Result<(Vec<u8>, Option<Joined>), Refusal> {
    let tag = peerdoc_team::request_tag(request).map_err(|_| Refusal::UnknownInvite)?;
    let secret = file
        .team
        .invite_secret(&tag)
        .cloned()
        .ok_or(Refusal::UnknownInvite)?;
    let mut rng = super::os_rng().map_err(|e| Refusal::Internal(e.message))?;
    let join = match peerdoc_team::open_request(&secret, request) {
        Ok(join) => join,
        Err(_) => return Err(Refusal::UnknownInvite),
    };
    let (reply, joined) = match file.team.accept_join(keypair, &tag, &join, now_ms()) {
        Ok(mut welcome) => {
            welcome.inviter_addrs = inviter_addrs;
            let joined = (welcome.name.clone(), welcome.role);
            (Reply::Welcome(welcome), Some(joined))
        }
        Err(refusal) => {
            tracing::info!(device = %join.device, reason = %refusal, "refused a join request");
            (Reply::Refused(refusal), None)
        }
    };
    let sealed = peerdoc_team::seal_reply(&secret, &reply, &mut rng)
        .map_err(|e| Refusal::Internal(e.to_string()))?;
    Ok((sealed, joined))
}

/// The joining side: dials the code's addresses in turn until one answers, and returns
/// the welcome and the address that gave it.
pub(super) async fn join(
    code: &InviteCode,
    me: PeerId,
    device_name: &str,
) -> Result<(Welcome, SocketAddr), ApiError> {
    let request = JoinRequest {
        device: me,
        name: device_name.to_owned(),
    };
    let mut rng = super::os_rng()?;
    let sealed = peerdoc_team::seal_request(code, &request, &mut rng)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let mut failures = Vec::new();
    for addr in code.addrs() {
        match exchange(*addr, &sealed).await {
            Ok(bytes) => {
                return match peerdoc_team::open_reply(code.secret(), &bytes) {
                    Ok(Reply::Welcome(welcome)) => Ok((welcome, *addr)),
                    Ok(Reply::Refused(refusal)) => Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        "invite_refused",
                        format!("the inviting device refused this code: {refusal}"),
                    )),
                    Err(error) => Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        "invite_refused",
                        format!("the device at {addr} did not accept this code: {error}"),
                    )),
                };
            }
            Err(error) => failures.push(format!("{addr}: {error}")),
        }
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "inviter_unreachable",
        format!(
            "could not reach the inviting device at any address in the code ({}); check that \
             both devices are on the same network and that the inviting device is running",
            failures.join("; ")
        ),
    ))
}

async fn exchange(addr: SocketAddr, request: &[u8]) -> Result<Vec<u8>, String> {
    let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| "no answer".to_owned())?
        .map_err(|e| e.to_string())?;
    tokio::time::timeout(ENROL_TIMEOUT, async {
        write_frame(&mut stream, request).await?;
        read_frame(&mut stream).await
    })
    .await
    .map_err(|_| "no reply in time".to_owned())?
    .map_err(|e| e.to_string())
}
