//! What a device keeps about its team (the daemon's `team.json`): the ops, the transport keys
//! it holds by epoch, its own name and the invites it issued.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;

use libp2p_identity::{Keypair, PeerId};
use rand::CryptoRng;
use serde::{Deserialize, Serialize};

use crate::encoding::{hex_array, hex_key_map};
use crate::{
    InviteCode, InviteSecret, InviteTag, JoinRequest, MAX_OPS, Member, Membership, OpKind, Refusal,
    Role, SignedOp, TeamError, TeamId, Welcome, name, sealed_key, validate_name,
};

mod invite;

pub use invite::{Invite, InviteStatus, MAX_INVITE_USES, MAX_INVITES};

/// Most transport keys [`TeamState::accepted_keys`] returns: the current epoch's and those of
/// the epochs just before it.
pub const MAX_ACCEPTED_KEYS: usize = 4;

/// Returned by [`TeamState::transport_key`] should the key ring be empty, which every
/// constructor rules out; a zero key completes no handshake with any member.
const NO_KEY: [u8; 32] = [0; 32];

/// A device's team state. Serialises to the daemon's `team.json`; the derived membership is
/// rebuilt on load. Its `Debug` output never shows transport keys or invite secrets.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "TeamStateFile", into = "TeamStateFile")]
pub struct TeamState {
    /// The transport keys this device holds, by epoch. Never empty.
    keys: BTreeMap<u64, [u8; 32]>,
    device_name: String,
    invites: Vec<Invite>,
    membership: Membership,
}

/// The on-disk shape of [`TeamState`].
#[derive(Serialize, Deserialize)]
struct TeamStateFile {
    team_id: TeamId,
    name: String,
    /// The key to dial with. Files written before key rotation have only this one: epoch 0.
    #[serde(with = "hex_array")]
    transport_key: [u8; 32],
    /// The keys held, by epoch.
    #[serde(default, with = "hex_key_map")]
    keys: BTreeMap<u64, [u8; 32]>,
    device_name: String,
    ops: Vec<SignedOp>,
    #[serde(default)]
    invites: Vec<Invite>,
}

impl TryFrom<TeamStateFile> for TeamState {
    type Error = TeamError;

    fn try_from(file: TeamStateFile) -> Result<Self, Self::Error> {
        if file.ops.len() > MAX_OPS {
            return Err(TeamError::TooManyOps(MAX_OPS));
        }
        if file.invites.len() > MAX_INVITES {
            return Err(TeamError::TooManyInvites);
        }
        // One key per epoch, and there is at most one epoch per op.
        if file.keys.len() > MAX_OPS + 1 {
            return Err(TeamError::InconsistentState("more keys than key epochs"));
        }
        let membership = Membership::from_ops(file.team_id, file.ops);
        if !membership.is_founded() {
            return Err(TeamError::MissingGenesis);
        }
        let mut keys = file.keys;
        if keys.is_empty() {
            keys.insert(0, file.transport_key);
        }
        Ok(Self {
            keys,
            device_name: validate_name(&file.device_name)?,
            invites: file.invites,
            membership,
        })
    }
}

impl From<TeamState> for TeamStateFile {
    fn from(state: TeamState) -> Self {
        Self {
            team_id: state.membership.team_id(),
            name: state.membership.team_name().to_owned(),
            transport_key: *state.transport_key(),
            keys: state.keys,
            device_name: state.device_name,
            ops: state.membership.known_ops(),
            invites: state.invites,
        }
    }
}

impl TeamState {
    /// Founds a team with this device as its first admin and draws its transport key.
    pub fn create<R: CryptoRng + ?Sized>(
        keypair: &Keypair,
        team_name: &str,
        device_name: &str,
        now_ms: u64,
        rng: &mut R,
    ) -> Result<TeamState, TeamError> {
        let membership = Membership::create(keypair, team_name, device_name, now_ms, rng)?;
        let mut transport_key = [0u8; 32];
        rng.fill_bytes(&mut transport_key);
        Ok(Self {
            keys: BTreeMap::from([(0, transport_key)]),
            device_name: validate_name(device_name)?,
            invites: Vec::new(),
            membership,
        })
    }

    /// Joins a team from a welcome: checks that its ops found the welcomed team and make
    /// `device` (this device) a current member with the welcomed role. The welcome's key is
    /// kept for its epoch; keys of earlier epochs were not sealed to this device.
    pub fn from_welcome(welcome: Welcome, device: &PeerId) -> Result<TeamState, TeamError> {
        if welcome.ops.len() > MAX_OPS {
            return Err(TeamError::TooManyOps(MAX_OPS));
        }
        let membership = Membership::from_ops(welcome.team_id, welcome.ops);
        if !membership.is_founded() {
            return Err(TeamError::MissingGenesis);
        }
        let member = membership.member(device).ok_or(TeamError::NotWelcomed)?;
        if !member.is_current() || member.role != welcome.role {
            return Err(TeamError::NotWelcomed);
        }
        if welcome.key_epoch > membership.key_epoch() {
            return Err(TeamError::InconsistentState(
                "the welcome's key is for an epoch its ops do not reach",
            ));
        }
        let device_name = member.name.clone();
        Ok(Self {
            keys: BTreeMap::from([(welcome.key_epoch, welcome.transport_key)]),
            device_name,
            invites: Vec::new(),
            membership,
        })
    }

    /// The team's id.
    pub fn team_id(&self) -> TeamId {
        self.membership.team_id()
    }

    /// The team's name.
    pub fn name(&self) -> &str {
        self.membership.team_name()
    }

    /// The key to dial the team's private network with: the [current](Self::current_key)
    /// one, or when this device cannot open it (yet), the newest key it holds.
    pub fn transport_key(&self) -> &[u8; 32] {
        self.dial_key().1
    }

    /// The epoch of the team's current transport key (see [`Membership::key_epoch`]).
    pub fn current_epoch(&self) -> u64 {
        self.membership.key_epoch()
    }

    /// The current epoch's key, or `None` when this device does not hold it: it was not
    /// sealed to it (it was revoked first, or joined concurrently with the rotation), or
    /// [`learn_keys`](Self::learn_keys) has not run since the rotation was merged.
    pub fn current_key(&self) -> Option<[u8; 32]> {
        self.keys.get(&self.current_epoch()).copied()
    }

    /// The keys to accept inbound connections under, newest first: those this device holds
    /// of the current epoch and the [`MAX_ACCEPTED_KEYS`]` - 1` epochs before it. Accepting
    /// the older ones for a grace period lets members that were offline during a rotation
    /// reach the team and learn the new key; the daemon chooses how long.
    pub fn accepted_keys(&self) -> Vec<[u8; 32]> {
        let current = self.current_epoch();
        let oldest = current.saturating_sub(MAX_ACCEPTED_KEYS as u64 - 1);
        self.keys
            .range(oldest..=current)
            .rev()
            .map(|(_, key)| *key)
            .collect()
    }

    /// Replaces the team's transport key, as an admin: draws a key for the next epoch, seals
    /// it to every current member (this device included), signs, merges and keeps it.
    /// Returns the op to relay. Call it after revoking a device, so the revoked device, which
    /// keeps the old key, cannot complete a handshake with members that learnt the new one.
    pub fn rotate_key<R: CryptoRng + ?Sized>(
        &mut self,
        keypair: &Keypair,
        now_ms: u64,
        rng: &mut R,
    ) -> Result<SignedOp, TeamError> {
        let by = keypair.public().to_peer_id();
        // Checked before sealing, which costs a Diffie-Hellman per member.
        self.membership.check_admin(&by)?;
        let epoch = self.current_epoch().saturating_add(1);
        let team = self.team_id();
        let mut key = [0u8; 32];
        rng.fill_bytes(&mut key);
        let mut sealed = BTreeMap::new();
        for member in self.membership.members() {
            if !member.is_current() {
                continue;
            }
            match sealed_key::seal(&key, &member.device, team, epoch, rng) {
                Ok(boxed) => {
                    sealed.insert(member.device, boxed);
                }
                // No device can hold the secret of such an id, so none can hold any key.
                Err(TeamError::UnsupportedKey) if member.device != by => {}
                Err(err) => return Err(err),
            }
        }
        let op = self
            .membership
            .sign(keypair, now_ms, OpKind::RotateKey { epoch, sealed })?;
        self.membership.merge([op.clone()]);
        self.keys.insert(epoch, key);
        Ok(op)
    }

    /// Opens the keys sealed to this device (`keypair`) by the rotations merged so far; call
    /// it after [`merge`](Self::merge). Keys of epochs this device holds no key for are
    /// opened, and those of the accepted epochs again, since a rotation that arrives late can
    /// win its epoch over the one a key was learnt from. Returns whether the current key
    /// changed (redial and re-key the transport). A box that does not open is skipped.
    pub fn learn_keys(&mut self, keypair: &Keypair) -> bool {
        let before = self.current_key();
        let me = keypair.public().to_peer_id();
        let team = self.team_id();
        let current = self.current_epoch();
        let accepted_from = current.saturating_sub(MAX_ACCEPTED_KEYS as u64 - 1);
        for epoch in 1..=current {
            if epoch < accepted_from && self.keys.contains_key(&epoch) {
                continue;
            }
            let Some(boxed) = self.membership.sealed_key_for(&me, epoch) else {
                continue;
            };
            if let Ok(key) = sealed_key::open(boxed, keypair, team, epoch) {
                self.keys.insert(epoch, key);
            }
        }
        self.current_key() != before
    }

    /// This device's name as it chose it or was welcomed (its member entry may differ after
    /// a rename; see [`Membership::member`]).
    pub fn device_name(&self) -> &str {
        &self.device_name
    }

    /// The membership folded from the ops.
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// Every known op, to save and to relay.
    pub fn ops(&self) -> Vec<SignedOp> {
        self.membership.known_ops()
    }

    /// Merges ops received from a peer; returns whether the op set grew (save and relay, and
    /// call [`learn_keys`](Self::learn_keys) in case they rotate the key).
    pub fn merge(&mut self, ops: impl IntoIterator<Item = SignedOp>) -> bool {
        self.membership.merge(ops)
    }

    /// Signs an op as this device, merges it, and returns it for relaying.
    pub fn sign_and_merge(
        &mut self,
        keypair: &Keypair,
        now_ms: u64,
        kind: OpKind,
    ) -> Result<SignedOp, TeamError> {
        let op = self.membership.sign(keypair, now_ms, kind)?;
        self.membership.merge([op.clone()]);
        Ok(op)
    }

    /// Issues an invite: `uses` joins (1 to [`MAX_INVITE_USES`]) of devices that get `role`
    /// (and `name`, if given), until `expires_in_ms` from now if given. Only an admin may
    /// invite. When [`MAX_INVITES`] invites are kept, the oldest inactive ones are dropped;
    /// if all are active, this fails.
    #[allow(clippy::too_many_arguments)] // each is a distinct, required input of an invite
    pub fn new_invite<R: CryptoRng + ?Sized>(
        &mut self,
        keypair: &Keypair,
        role: Role,
        name: Option<&str>,
        expires_in_ms: Option<u64>,
        uses: u32,
        now_ms: u64,
        rng: &mut R,
        addrs: Vec<SocketAddr>,
    ) -> Result<(Invite, InviteCode), TeamError> {
        let by = keypair.public().to_peer_id();
        match self.membership.role_of(&by) {
            Some(role) if role.can_admin() => {}
            _ => return Err(TeamError::NotAdmin { device: by }),
        }
        if !(1..=MAX_INVITE_USES).contains(&uses) {
            return Err(TeamError::BadInviteUses {
                uses,
                max: MAX_INVITE_USES,
            });
        }
        let name = name.map(validate_name).transpose()?;
        let secret = InviteSecret::random(rng);
        let code = InviteCode::new(secret.clone(), addrs)?;
        self.make_room(now_ms)?;
        let invite = Invite {
            tag: secret.tag(),
            secret,
            role,
            name,
            created_ms: now_ms,
            expires_ms: expires_in_ms.map(|ms| now_ms.saturating_add(ms)),
            uses_left: uses,
            used_by: Vec::new(),
            revoked: false,
            created_by: by,
        };
        self.invites.push(invite.clone());
        Ok((invite, code))
    }

    /// Cancels an invite; later joins with it are refused.
    pub fn revoke_invite(&mut self, tag: &InviteTag) -> Result<(), TeamError> {
        let invite = self
            .invites
            .iter_mut()
            .find(|invite| invite.tag == *tag)
            .ok_or_else(|| TeamError::UnknownInvite(tag.to_string()))?;
        invite.revoked = true;
        Ok(())
    }

    /// The invites issued here, oldest first, with their status at `now_ms`.
    pub fn invites(&self, now_ms: u64) -> Vec<(&Invite, InviteStatus)> {
        self.invites
            .iter()
            .map(|invite| (invite, invite.status(now_ms)))
            .collect()
    }

    /// The secret of an invite issued here, to open a join request carrying its tag.
    pub fn invite_secret(&self, tag: &InviteTag) -> Option<&InviteSecret> {
        self.invite(tag).map(|invite| &invite.secret)
    }

    /// Admits a joining device with the invite `tag`: signs its `Add` with the invite's role,
    /// merges it and consumes one use. A device that already is a member gets the welcome
    /// again without consuming a use (a join retried after a lost reply included); a removed
    /// device is refused. The welcome's `inviter_addrs` is left for the daemon to fill.
    pub fn accept_join(
        &mut self,
        keypair: &Keypair,
        tag: &InviteTag,
        request: &JoinRequest,
        now_ms: u64,
    ) -> Result<Welcome, Refusal> {
        let device = request.device;
        let invite = self.invite(tag).ok_or(Refusal::UnknownInvite)?;
        let already_member = self.membership.role_of(&device).is_some();
        // A retry by a device this invite already admitted: the previous reply was lost.
        if already_member && invite.used_by.contains(&device) {
            return Ok(self.welcome(keypair, &device));
        }
        match invite.status(now_ms) {
            InviteStatus::Revoked => return Err(Refusal::Revoked),
            InviteStatus::Expired => return Err(Refusal::Expired),
            InviteStatus::UsedUp => return Err(Refusal::UsedUp),
            InviteStatus::Active => {}
        }
        if self.membership.is_revoked(&device) {
            return Err(Refusal::DeviceRemoved);
        }
        if already_member {
            return Ok(self.welcome(keypair, &device));
        }
        let role = invite.role;
        let name = match &invite.name {
            Some(name) => name.clone(),
            None => name::sanitize(&request.name, "device"),
        };
        let name = self.unique_name(&name);
        let add = OpKind::Add { device, name, role };
        let op = self
            .membership
            .sign(keypair, now_ms, add)
            .map_err(|err| match err {
                TeamError::NotAdmin { .. }
                | TeamError::Revoked(_)
                | TeamError::UnknownDevice(_) => Refusal::InviterNotAdmin,
                other => Refusal::Internal(other.to_string()),
            })?;
        self.membership.merge([op]);
        if let Some(invite) = self.invites.iter_mut().find(|invite| invite.tag == *tag) {
            invite.uses_left = invite.uses_left.saturating_sub(1);
            invite.used_by.push(device);
        }
        Ok(self.welcome(keypair, &device))
    }

    fn invite(&self, tag: &InviteTag) -> Option<&Invite> {
        self.invites.iter().find(|invite| invite.tag == *tag)
    }

    /// The key to dial with and its epoch: the current one, else the newest held.
    fn dial_key(&self) -> (u64, &[u8; 32]) {
        self.keys
            .range(..=self.current_epoch())
            .next_back()
            .or_else(|| self.keys.last_key_value())
            .map_or((0, &NO_KEY), |(epoch, key)| (*epoch, key))
    }

    fn welcome(&self, keypair: &Keypair, device: &PeerId) -> Welcome {
        let member = self.membership.member(device);
        let (key_epoch, transport_key) = self.dial_key();
        Welcome {
            team_id: self.membership.team_id(),
            team_name: self.membership.team_name().to_owned(),
            transport_key: *transport_key,
            key_epoch,
            ops: self.membership.known_ops(),
            inviter: keypair.public().to_peer_id(),
            inviter_addrs: Vec::new(),
            role: member.map_or(Role::Viewer, |member| member.role),
            name: member.map(|member| member.name.clone()).unwrap_or_default(),
        }
    }

    /// `name`, or `name-2`, `name-3`… if a current member already has it (ignoring case).
    fn unique_name(&self, name: &str) -> String {
        let taken: BTreeSet<String> = self
            .membership
            .members()
            .into_iter()
            .filter(Member::is_current)
            .map(|member| member.name.to_lowercase())
            .collect();
        if !taken.contains(&name.to_lowercase()) {
            return name.to_owned();
        }
        (2..=taken.len() + 1)
            .map(|n| {
                let suffix = format!("-{n}");
                let keep = name::MAX_NAME_CHARS - suffix.chars().count();
                format!("{}{suffix}", name.chars().take(keep).collect::<String>())
            })
            .find(|candidate| !taken.contains(&candidate.to_lowercase()))
            .unwrap_or_else(|| name.to_owned())
    }

    /// Makes room for one more invite, dropping the oldest inactive ones if needed.
    fn make_room(&mut self, now_ms: u64) -> Result<(), TeamError> {
        while self.invites.len() >= MAX_INVITES {
            let oldest_inactive = self
                .invites
                .iter()
                .position(|invite| invite.status(now_ms) != InviteStatus::Active)
                .ok_or(TeamError::TooManyInvites)?;
            self.invites.remove(oldest_inactive);
        }
        Ok(())
    }
}

impl fmt::Debug for TeamState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TeamState")
            .field("team_id", &self.team_id())
            .field("name", &self.name())
            .field("transport_key", &"<redacted>")
            .field("key_epoch", &self.current_epoch())
            .field("keys_held", &self.keys.len())
            .field("device_name", &self.device_name)
            .field("members", &self.membership.members().len())
            .field("ops", &self.membership.known_ops().len())
            .field("invites", &self.invites)
            .finish()
    }
}

#[cfg(test)]
mod tests;
