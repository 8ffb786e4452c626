//! Teams on the daemon: who this device syncs with, and who may write.
//!
//! A device belongs to one team or to none. The team lives in `<data dir>/team.json`
//! (mode 0600: it holds the team's transport key and the secrets of open invites) as a
//! [`peerdoc_team::TeamState`]: signed membership operations that every member folds
//! into the same [`peerdoc_team::Membership`]. This module turns that membership into
//! the node's policy ([`TeamService::apply`]):
//!
//! - the transport: the team key (libp2p `pnet`) and an allowlist of the members'
//!   peer ids, both changed at run time (a device with no team runs with a random key
//!   and an empty allowlist: it syncs with nobody);
//! - the engine: viewers' connections are read-only (their changes, tombstones and new
//!   documents are never applied), and on a viewer device local apps are too;
//! - the API: writes on a viewer device answer 403 `read_only`.
//!
//! Membership travels between members in the team's membership document (`team/doc.rs`),
//! an ordinary automerge document whose id every member derives from the team id; its
//! entries are signed operations, so whoever writes to it can at most add noise that
//! verification drops. Invites are accepted on the enrolment listener (`team/enrol.rs`).
//! The modes that predate teams, `--open` and `--team-key-file`, bypass all of this.

mod addrs;
mod doc;
mod enrol;
mod invites;
mod policy;
mod probe;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use axum::http::StatusCode;
use peerdoc_net::Keypair;
use peerdoc_node::{NodeHandle, PeerId};
use peerdoc_team::{InviteCode, OpKind, Role, TeamError, TeamState};
use serde::{Deserialize, Serialize};

use crate::api::{Member, Revoked, TeamStatus};
use crate::server::ApiError;

pub use enrol::bind as bind_enrolment;
pub use policy::{TransportKeys, transport_keys};

/// The team file in the data directory.
pub const TEAM_FILE: &str = "team.json";

/// How long an invite stays valid unless the admin says otherwise: a day.
pub const DEFAULT_INVITE_SECS: u64 = 24 * 3600;

/// The longest an invite can stay valid: ten years. Far past any use, and it keeps the
/// expiry time (`expires_ms`) a number JavaScript reads exactly; without it a large
/// `expires_in_secs` saturated to `u64::MAX` ms.
pub const MAX_INVITE_SECS: u64 = 10 * 365 * 24 * 3600;

/// How this daemon decides whom it syncs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeamMode {
    /// Teams: closed until this device creates or joins one.
    Managed,
    /// `--open`: no team, syncs with any peerdoc it meets (demos and tests).
    Open,
    /// `--team-key-file` from before teams: every holder of the key is a full member.
    SharedKey,
}

/// What `team.json` holds.
#[derive(Clone, Serialize, Deserialize)]
pub struct TeamFile {
    /// The file format.
    pub version: u32,
    /// The team, its membership and its open invites.
    pub team: TeamState,
    /// libp2p addresses of members this device reached or was given (the inviter's),
    /// dialed at every start so that a device finds its team without mDNS.
    #[serde(default)]
    pub known_peers: Vec<String>,
}

impl std::fmt::Debug for TeamFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TeamFile")
            .field("team", &self.team)
            .field("known_peers", &self.known_peers)
            .finish()
    }
}

impl TeamFile {
    /// Reads `team.json` from `data_dir`; `None` when the device has no team.
    pub fn load(data_dir: &Path) -> Result<Option<Self>, String> {
        let path = data_dir.join(TEAM_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| format!("{}: not a team file ({e})", path.display()))
    }

    fn save(&self, data_dir: &Path) -> Result<(), ApiError> {
        let path = data_dir.join(TEAM_FILE);
        let bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| internal(format!("encoding the team file: {e}")))?;
        crate::daemon::write_private(&path, &bytes)
            .map_err(|e| internal(format!("{}: {e}", path.display())))
    }

    /// The members this device may connect to: every member not revoked (and nobody
    /// when this device itself was revoked).
    pub fn allowlist(&self, me: &PeerId) -> BTreeSet<PeerId> {
        let membership = self.team.membership();
        if membership.role_of(me).is_none() {
            return BTreeSet::new();
        }
        membership
            .members()
            .into_iter()
            .filter(|m| m.revoked.is_none())
            .map(|m| m.device)
            .collect()
    }
}

/// A device's name and role, for labelling peers, history and conflicts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceLabel {
    /// Its name.
    pub name: String,
    /// Its role (`None` once revoked).
    pub role: Option<Role>,
}

/// Names of the team's devices, by peer id and by automerge actor prefix.
#[derive(Debug, Default)]
struct NameBook {
    by_peer: HashMap<PeerId, DeviceLabel>,
    by_actor_prefix: HashMap<[u8; 8], String>,
}

/// The team side of the daemon. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct TeamService {
    mode: TeamMode,
    data_dir: PathBuf,
    keypair: Keypair,
    me: PeerId,
    node: NodeHandle,
    default_device_name: String,
    enrol_addrs: RwLock<Vec<SocketAddr>>,
    file: tokio::sync::Mutex<Option<TeamFile>>,
    names: RwLock<NameBook>,
    read_only: AtomicBool,
    removed: AtomicBool,
    /// The membership document's id, once in a team (for filtering events cheaply).
    team_doc: RwLock<Option<peerdoc_node::DocumentId>>,
    /// The allowlist last given to the transport.
    allowed: tokio::sync::Mutex<BTreeSet<PeerId>>,
    /// The transport keys last given to the transport: (current, also accepted).
    keys: tokio::sync::Mutex<Option<TransportKeys>>,
    /// How long previous team keys are accepted after a rotation, in ms.
    key_grace_ms: u64,
    /// This service, for the tasks it spawns.
    this: std::sync::Weak<TeamService>,
    /// The member addresses (published in the membership document) given to the
    /// transport to dial (`team/addrs.rs`).
    member_dials: tokio::sync::Mutex<BTreeSet<peerdoc_node::Multiaddr>>,
    /// This device is a hub (`--hub`): its address record says so.
    hub: AtomicBool,
    /// The members whose address records say they are hubs.
    hubs: RwLock<BTreeSet<PeerId>>,
    /// Probe the subnet when alone (`team.probe_subnet`, `team/probe.rs`).
    probe: AtomicBool,
}

/// Milliseconds since the epoch.
pub(crate) fn now_ms() -> u64 {
    crate::server::epoch_ms(SystemTime::now())
}

/// A cryptographic rng seeded from the OS (team keys, invite secrets, nonces).
pub(crate) fn os_rng() -> Result<rand::rngs::StdRng, ApiError> {
    use rand::SeedableRng as _;
    rand::rngs::StdRng::try_from_os_rng().map_err(|e| internal(format!("no OS randomness: {e}")))
}

fn internal(message: String) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
}

fn conflict(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, code, message)
}

/// A team error as the API answers it.
fn team_error(error: TeamError) -> ApiError {
    let message = error.to_string();
    match error {
        TeamError::NotAdmin { .. } => ApiError::new(StatusCode::FORBIDDEN, "not_admin", message),
        TeamError::UnknownDevice(_) | TeamError::NoSuchMember(_) => {
            ApiError::new(StatusCode::NOT_FOUND, "unknown_device", message)
        }
        TeamError::UnknownInvite(_) => ApiError::new(StatusCode::NOT_FOUND, "not_found", message),
        TeamError::Revoked(_) => conflict("revoked", message),
        TeamError::LastAdmin => conflict("last_admin", message),
        TeamError::Signing(_) | TeamError::InconsistentState(_) => internal(message),
        _ => ApiError::bad_request(message),
    }
}

/// The host name, for a device that was not given a name.
pub fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "peerdoc device".to_owned())
}

impl TeamService {
    /// The service for a started node. `file` is what [`TeamFile::load`] found.
    pub fn new(
        mode: TeamMode,
        data_dir: PathBuf,
        keypair: Keypair,
        node: NodeHandle,
        file: Option<TeamFile>,
        default_device_name: Option<String>,
        key_grace_secs: u64,
    ) -> Arc<Self> {
        let me = keypair.public().to_peer_id();
        let allowed = file.as_ref().map(|f| f.allowlist(&me)).unwrap_or_default();
        Arc::new_cyclic(|this| Self {
            mode,
            data_dir,
            keypair,
            me,
            node,
            default_device_name: default_device_name.unwrap_or_else(host_name),
            enrol_addrs: RwLock::new(Vec::new()),
            file: tokio::sync::Mutex::new(file),
            names: RwLock::default(),
            read_only: AtomicBool::new(false),
            removed: AtomicBool::new(false),
            team_doc: RwLock::new(None),
            allowed: tokio::sync::Mutex::new(allowed),
            keys: tokio::sync::Mutex::new(None),
            key_grace_ms: key_grace_secs.saturating_mul(1000),
            this: this.clone(),
            member_dials: tokio::sync::Mutex::new(BTreeSet::new()),
            hub: AtomicBool::new(false),
            hubs: RwLock::default(),
            probe: AtomicBool::new(false),
        })
    }

    /// The mode it runs in.
    pub fn mode(&self) -> TeamMode {
        self.mode
    }

    /// Makes this device a hub (`--hub`): call before [`TeamService::start`].
    pub fn set_hub(&self, hub: bool) {
        self.hub.store(hub, Ordering::Relaxed);
    }

    /// Lets this device probe its subnet when no member is reachable
    /// (`team.probe_subnet`): call before [`TeamService::start`].
    pub fn set_probe(&self, probe: bool) {
        self.probe.store(probe, Ordering::Relaxed);
    }

    /// Whether this device is a member of a team and connected to nobody.
    pub(crate) async fn alone(&self) -> bool {
        let member = self
            .file
            .lock()
            .await
            .as_ref()
            .is_some_and(|f| f.team.membership().role_of(&self.me).is_some());
        member
            && self
                .node
                .peers()
                .await
                .is_ok_and(|peers| peers.iter().all(|p| p.net.is_none()))
    }

    /// The members whose address records say they are hubs.
    pub fn hubs(&self) -> BTreeSet<PeerId> {
        self.hubs.read().map(|h| h.clone()).unwrap_or_default()
    }

    /// Applies the stored team (if any) to the node, publishes its membership, and
    /// starts following the membership document.
    pub async fn start(self: &Arc<Self>) {
        if self.mode != TeamMode::Managed {
            return;
        }
        // First: peers may connect (and sync the membership document) at once.
        doc::follow(self.clone());
        if self.probe.load(Ordering::Relaxed) {
            probe::spawn(self.clone(), crate::config::DEFAULT_LISTEN_PORT);
        }
        let file = self.file.lock().await.clone();
        match &file {
            Some(file) => {
                self.apply(file).await;
                doc::publish(&self.node, &file.team).await;
                self.refresh_addrs(file, None).await;
                tracing::info!(
                    team = %file.team.name(),
                    device = %file.team.device_name(),
                    "team loaded"
                );
            }
            None => tracing::info!(
                "this device is in no team and syncs with nobody: run `peerdoc team create --name NAME` \
                 or `peerdoc team join CODE`"
            ),
        }
    }

    /// Why writes must be refused on this device, if they must: it is a viewer, or it
    /// was removed from its team.
    pub fn read_only_reason(&self) -> Option<&'static str> {
        if !self.read_only.load(Ordering::Relaxed) {
            return None;
        }
        Some(if self.removed.load(Ordering::Relaxed) {
            "this device was removed from its team: it keeps its copy of the documents, but \
             no member accepts its changes any more"
        } else {
            "this device may only read: it is a viewer in its team (an admin can change its \
             role with `peerdoc team role`)"
        })
    }

    /// The name and role of a peer, when it is a member.
    pub fn label(&self, peer: &PeerId) -> Option<DeviceLabel> {
        self.names
            .read()
            .ok()
            .and_then(|book| book.by_peer.get(peer).cloned())
    }

    /// The name of the device that wrote with this automerge actor (hex), if known.
    pub fn actor_name(&self, actor_hex: &str) -> Option<String> {
        let bytes = hex::decode(actor_hex.get(..16)?).ok()?;
        let prefix: [u8; 8] = bytes.try_into().ok()?;
        self.names
            .read()
            .ok()
            .and_then(|book| book.by_actor_prefix.get(&prefix).cloned())
    }

    /// Remembers the addresses the enrolment listener is bound to (for invite codes).
    pub(crate) fn set_enrol_addrs(&self, addrs: Vec<SocketAddr>) {
        if let Ok(mut slot) = self.enrol_addrs.write() {
            *slot = addrs;
        }
    }

    /// The membership document's id, once this device is in a team.
    pub(crate) fn team_doc(&self) -> Option<peerdoc_node::DocumentId> {
        self.team_doc.read().ok().and_then(|slot| *slot)
    }

    /// Whether this device is in a team (without copying the team file).
    pub(crate) async fn in_team(&self) -> bool {
        self.file.lock().await.is_some()
    }

    /// The team file, if any (for the membership document).
    pub(crate) async fn snapshot(&self) -> Option<TeamFile> {
        self.file.lock().await.clone()
    }

    fn require_managed(&self) -> Result<(), ApiError> {
        match self.mode {
            TeamMode::Managed => Ok(()),
            TeamMode::Open => Err(conflict(
                "team_mode",
                "this daemon runs with --open (no team, syncs with any peerdoc); \
                 restart it without --open to create or join a team",
            )),
            TeamMode::SharedKey => Err(conflict(
                "team_mode",
                "this daemon runs with a shared team key file (--team-key-file); restart it \
                 without one to create or join a team (docs/teams.md, \"Moving from a key file\")",
            )),
        }
    }

    /// `GET /v1/team`.
    pub async fn status(&self) -> TeamStatus {
        let file = self.file.lock().await.clone();
        let (state, summary) = match (self.mode, &file) {
            (TeamMode::Open, _) => (
                "open",
                "open mode (--open): syncing with any peerdoc on the network, no team".to_owned(),
            ),
            (TeamMode::SharedKey, _) => (
                "shared_key",
                "shared team key file: every device holding the key is a full member".to_owned(),
            ),
            (TeamMode::Managed, None) => (
                "none",
                "not in a team yet, so this device syncs with nobody: run \
                 `peerdoc team create --name NAME` on the first device, or \
                 `peerdoc team join CODE` with a code from a team admin"
                    .to_owned(),
            ),
            (TeamMode::Managed, Some(file)) => {
                let membership = file.team.membership();
                match membership.role_of(&self.me) {
                    Some(role) => (
                        "member",
                        format!(
                            "{:?} is {} {role} of team {:?}",
                            file.team.device_name(),
                            if role == Role::Viewer { "a" } else { "an" },
                            file.team.name(),
                        ),
                    ),
                    None => (
                        "removed",
                        format!(
                            "this device was removed from team {:?}: it keeps its copy of the \
                             documents but syncs with nobody",
                            file.team.name()
                        ),
                    ),
                }
            }
        };
        let mut status = TeamStatus {
            state: state.to_owned(),
            summary,
            ..TeamStatus::default()
        };
        let Some(file) = file else {
            return status;
        };
        let membership = file.team.membership();
        let peers = self.node.peers().await.unwrap_or_default();
        let name_of = |peer: &PeerId| {
            membership
                .member(peer)
                .map_or_else(|| peer.to_string(), |m| m.name.clone())
        };
        let members: Vec<Member> = membership
            .members()
            .into_iter()
            .map(|m| {
                let peer = peers.iter().find(|p| p.peer == m.device);
                let net = peer.and_then(|p| p.net.as_ref());
                Member {
                    device: m.device.to_string(),
                    name: m.name.clone(),
                    role: m.role.to_string(),
                    added_by: m.added_by.as_ref().map(&name_of),
                    added_at_ms: m.added_at_ms,
                    this_device: m.device == self.me,
                    connected: net.is_some(),
                    last_seen_ms: net.map(|n| crate::server::epoch_ms(n.last_seen)),
                    revoked: m.revoked.as_ref().map(|r| Revoked {
                        by: name_of(&r.by),
                        at_ms: r.at_ms,
                    }),
                }
            })
            .collect();
        status.me = members.iter().find(|m| m.this_device).cloned();
        status.team_id = Some(file.team.team_id().to_string());
        status.name = Some(file.team.name().to_owned());
        status.members = members;
        status
    }

    /// `POST /v1/team`: a new team with this device as its first admin.
    pub async fn create(&self, name: &str, device_name: Option<String>) -> Result<(), ApiError> {
        self.require_managed()?;
        let mut guard = self.file.lock().await;
        if let Some(file) = guard.as_ref() {
            return Err(conflict(
                "already_in_team",
                format!("this device is already in team {:?}", file.team.name()),
            ));
        }
        let device_name = device_name.unwrap_or_else(|| self.default_device_name.clone());
        let mut rng = os_rng()?;
        let team = TeamState::create(&self.keypair, name, &device_name, now_ms(), &mut rng)
            .map_err(team_error)?;
        let file = TeamFile {
            version: 1,
            team,
            known_peers: Vec::new(),
        };
        file.save(&self.data_dir)?;
        tracing::info!(team = %file.team.name(), device = %file.team.device_name(), "team created");
        *guard = Some(file.clone());
        drop(guard);
        self.apply(&file).await;
        doc::publish(&self.node, &file.team).await;
        self.refresh_addrs(&file, None).await;
        Ok(())
    }

    /// `POST /v1/team/join`: joins with an invite code (see `team/enrol.rs`).
    pub async fn join(&self, code: &str, device_name: Option<String>) -> Result<(), ApiError> {
        self.require_managed()?;
        if let Some(file) = self.file.lock().await.as_ref() {
            return Err(conflict(
                "already_in_team",
                format!("this device is already in team {:?}", file.team.name()),
            ));
        }
        let code = InviteCode::parse(code).map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_invite_code", e.to_string())
        })?;
        let device_name = device_name.unwrap_or_else(|| self.default_device_name.clone());
        let (welcome, reached) = enrol::join(&code, self.me, &device_name).await?;
        let team = TeamState::from_welcome(welcome.clone(), &self.me).map_err(team_error)?;
        // Loopback addresses of the inviter mean nothing here unless we reached it there.
        let known_peers = welcome
            .inviter_addrs
            .iter()
            .filter(|a| reached.ip().is_loopback() || !a.contains("/127.0.0.1/"))
            .cloned()
            .collect::<Vec<_>>();
        let file = TeamFile {
            version: 1,
            team,
            known_peers,
        };
        let mut guard = self.file.lock().await;
        if guard.is_some() {
            return Err(conflict("already_in_team", "joined a team meanwhile"));
        }
        file.save(&self.data_dir)?;
        *guard = Some(file.clone());
        drop(guard);
        tracing::info!(team = %file.team.name(), device = %file.team.device_name(), "joined the team");
        self.apply(&file).await;
        doc::publish(&self.node, &file.team).await;
        self.refresh_addrs(&file, None).await;
        // Keep dialing the inviting device (with backoff), as after a restart: a
        // key rotation or a dead link must not leave this device alone.
        for addr in TeamService::known_peers(&file) {
            if let Err(error) = self.node.add_peer(addr).await {
                tracing::warn!(%error, "could not add the inviting device's address");
            }
        }
        Ok(())
    }

    /// Runs `edit` on the team as this device, then saves, applies and publishes.
    async fn update(
        &self,
        edit: impl FnOnce(&mut TeamFile, &Keypair) -> Result<(), ApiError>,
    ) -> Result<(), ApiError> {
        self.require_managed()?;
        let mut guard = self.file.lock().await;
        let Some(file) = guard.as_mut() else {
            return Err(conflict(
                "not_in_team",
                "this device is in no team: run `peerdoc team create` or `peerdoc team join CODE`",
            ));
        };
        let mut next = file.clone();
        edit(&mut next, &self.keypair)?;
        next.save(&self.data_dir)?;
        *file = next.clone();
        self.set_flags(&next.team);
        drop(guard);
        self.apply(&next).await;
        doc::publish(&self.node, &next.team).await;
        Ok(())
    }

    /// Signs one membership operation and merges it.
    fn sign_into(file: &mut TeamFile, keypair: &Keypair, kind: OpKind) -> Result<(), ApiError> {
        file.team
            .sign_and_merge(keypair, now_ms(), kind)
            .map(drop)
            .map_err(team_error)
    }

    /// `PATCH /v1/team/members/{device}`: rename and/or change role.
    pub async fn update_member(
        &self,
        device: &str,
        request: crate::api::UpdateMember,
    ) -> Result<(), ApiError> {
        if request.name.is_none() && request.role.is_none() {
            return Err(ApiError::bad_request(
                "give a new name, a new role, or both",
            ));
        }
        let role: Option<Role> = match request.role.as_deref() {
            None => None,
            Some(text) => Some(
                text.parse()
                    .map_err(|e: TeamError| ApiError::bad_request(e.to_string()))?,
            ),
        };
        self.update(|file, keypair| {
            let target = file
                .team
                .membership()
                .find(device)
                .map_err(team_error)?
                .device;
            if let Some(name) = request.name.clone() {
                Self::sign_into(
                    file,
                    keypair,
                    OpKind::Rename {
                        device: target,
                        name,
                    },
                )?;
            }
            if let Some(role) = role {
                Self::sign_into(
                    file,
                    keypair,
                    OpKind::SetRole {
                        device: target,
                        role,
                    },
                )?;
            }
            Ok(())
        })
        .await
    }

    /// `DELETE /v1/team/members/{device}`: revokes a device.
    pub async fn revoke(&self, device: &str) -> Result<String, ApiError> {
        let mut revoked_name = String::new();
        self.update(|file, keypair| {
            let member = file
                .team
                .membership()
                .find(device)
                .map_err(team_error)?
                .clone();
            if member.revoked.is_some() {
                return Err(conflict(
                    "revoked",
                    format!("{} was already removed from the team", member.name),
                ));
            }
            Self::sign_into(
                file,
                keypair,
                OpKind::Revoke {
                    device: member.device,
                },
            )?;
            // The removed device keeps the team key: draw a new one, sealed to every
            // remaining member, so it cannot even complete a handshake with them.
            let mut rng = os_rng()?;
            file.team
                .rotate_key(keypair, now_ms(), &mut rng)
                .map_err(team_error)?;
            revoked_name = member.name;
            Ok(())
        })
        .await?;
        tracing::info!(device = %revoked_name, "device removed from the team");
        Ok(revoked_name)
    }

    /// Accepts a join request on the enrolment listener (see `team/enrol.rs`).
    pub(crate) async fn accept_join(&self, request: &[u8]) -> Vec<u8> {
        // Where the new device finds us on libp2p once it holds the team key, and the
        // team's hubs (`--hub`), its meeting points where devices are kept apart.
        let mut addrs: Vec<String> = match self.node.status().await {
            Ok(status) => status
                .listen_addrs
                .iter()
                .map(|a| format!("{a}/p2p/{}", self.me))
                .collect(),
            Err(_) => Vec::new(),
        };
        addrs.extend(self.hub_addrs().await);
        let mut guard = self.file.lock().await;
        let outcome = match guard.as_mut() {
            None => Err(peerdoc_team::Refusal::UnknownInvite),
            Some(file) => enrol::accept(file, &self.keypair, request, addrs),
        };
        match outcome {
            Ok((reply, joined)) => {
                if let Some(file) = guard.as_ref() {
                    if let Err(error) = file.save(&self.data_dir) {
                        tracing::warn!(error = %error.message, "could not save the team file");
                    }
                    let snapshot = file.clone();
                    drop(guard);
                    if let Some((name, role)) = joined {
                        tracing::info!(device = %name, %role, "a device joined the team with an invite");
                    }
                    self.apply(&snapshot).await;
                    doc::publish(&self.node, &snapshot.team).await;
                }
                reply
            }
            Err(refusal) => {
                tracing::info!(reason = %refusal, "refused a join request");
                peerdoc_team::plain_refusal(&refusal)
            }
        }
    }

    /// Remembers (or forgets) a peer address in `team.json`, so that it is dialed at
    /// every start. `None` when there is no team file to keep it in, else whether the
    /// file changed.
    pub async fn remember_peer(
        &self,
        addr: &str,
        remember: bool,
    ) -> Result<Option<bool>, ApiError> {
        if self.mode != TeamMode::Managed {
            return Ok(None);
        }
        let mut guard = self.file.lock().await;
        let Some(file) = guard.as_mut() else {
            return Ok(None);
        };
        let known = file.known_peers.iter().any(|a| a == addr);
        if remember == known {
            return Ok(Some(false));
        }
        if remember && file.known_peers.len() >= 256 {
            return Err(ApiError::bad_request(
                "256 peer addresses are remembered already; remove some first",
            ));
        }
        let mut next = file.clone();
        if remember {
            next.known_peers.push(addr.to_owned());
        } else {
            next.known_peers.retain(|a| a != addr);
        }
        next.save(&self.data_dir)?;
        *file = next;
        Ok(Some(true))
    }

    /// `known_peers` with their libp2p addresses, for the transport's explicit peers.
    pub fn known_peers(file: &TeamFile) -> Vec<peerdoc_node::Multiaddr> {
        file.known_peers
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect()
    }
}
