//! Who is in the team: a deterministic fold over the set of signed membership ops.
//!
//! Ops form an op-based CRDT: a replica holds every verified op it has seen for the team and
//! folds them in one total order, the genesis first and then by `(lamport, op id)`. Each op is
//! checked against the state folded so far (is its signer a current admin? is the target
//! revoked?) and ignored when not allowed. Because the order depends only on the op set, two
//! replicas holding the same ops agree on the membership, whatever order the ops arrived in.
//!
//! Key rotations fold like any other op: a [`OpKind::RotateKey`] applies when its signer is
//! a current admin, it names the next epoch, and it seals the key only to devices that are
//! current members at that point (its signer among them). Of concurrent rotations to the same
//! epoch the first in fold order wins; the others name an epoch already taken and are ignored.
//!
//! Known limit: ops carry a Lamport time, not their causal predecessors, so a device that
//! was an admin can still sign ops *backdated* before its own demotion or revocation, and
//! they fold as if concurrent with it. Revocation stops a device's ops from the revocation
//! on, not a revoked admin who deliberately forges history; that needs ops that name the
//! op hashes they saw (a hash DAG), a later format version.

use std::collections::{BTreeMap, BTreeSet};

use libp2p_identity::{KeyType, Keypair, PeerId};
use rand::CryptoRng;
use serde::{Deserialize, Serialize};

use crate::{OpBody, OpId, OpKind, Role, SignedOp, TeamError, TeamId, validate_name};

/// Most ops a membership holds (and a welcome carries).
pub const MAX_OPS: usize = 10_000;

/// Most current members a team has; an `Add` of a new device beyond it is ignored. It bounds
/// the sealed keys a rotation carries (see [`MAX_ROTATE_KEY_BODY`](crate::MAX_ROTATE_KEY_BODY)).
pub const MAX_MEMBERS: usize = 256;

/// A device of the team, current or removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The device's libp2p identity.
    pub device: PeerId,
    /// Its human name, e.g. "reception laptop".
    pub name: String,
    /// Its role (meaningless once revoked).
    pub role: Role,
    /// The admin that added it; `None` for the founder.
    pub added_by: Option<PeerId>,
    /// When it was added, by the adder's clock.
    pub added_at_ms: u64,
    /// Set once the device is removed; removal is final.
    pub revoked: Option<Revocation>,
}

impl Member {
    /// Whether the device is a member now (not removed).
    pub fn is_current(&self) -> bool {
        self.revoked.is_none()
    }
}

/// Who removed a device, and when by their clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// The admin that removed the device.
    pub by: PeerId,
    /// When, by the admin's clock.
    pub at_ms: u64,
}

/// The team's membership, folded from signed ops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    team: TeamId,
    /// Every op verified to belong to this team, including ones the fold currently ignores:
    /// a later op (say, the one making their signer admin) may make them valid.
    known: BTreeMap<OpId, (SignedOp, OpBody)>,
    /// Distinct ops that failed verification or belong to another team.
    invalid: BTreeSet<OpId>,
    team_name: Option<String>,
    roster: Roster,
    /// The ops the fold applied, in fold order.
    applied: Vec<OpId>,
    /// Known ops the fold ignored.
    ignored: usize,
    max_lamport: u64,
    /// The applied rotations in fold order: the op of epoch `n` is at `n - 1`.
    rotations: Vec<OpId>,
    /// Whether a device was revoked after the current key was drawn, so it may hold it.
    key_exposed: bool,
}

impl Membership {
    /// Founds a team: signs its genesis and the founder's own `Add` as admin.
    pub fn create<R: CryptoRng + ?Sized>(
        keypair: &Keypair,
        team_name: &str,
        device_name: &str,
        now_ms: u64,
        rng: &mut R,
    ) -> Result<Membership, TeamError> {
        let team_name = validate_name(team_name)?;
        let device_name = validate_name(device_name)?;
        let mut nonce = [0u8; 16];
        rng.fill_bytes(&mut nonce);
        let by = keypair.public().to_peer_id();
        let genesis = SignedOp::sign(
            keypair,
            &OpBody {
                team: None,
                lamport: 0,
                at_ms: now_ms,
                by,
                kind: OpKind::Genesis {
                    name: team_name,
                    nonce,
                },
            },
        )?;
        let mut membership = Membership::from_ops(TeamId::derive(genesis.body_bytes()), [genesis]);
        let add = membership.sign(
            keypair,
            now_ms,
            OpKind::Add {
                device: by,
                name: device_name,
                role: Role::Admin,
            },
        )?;
        membership.merge([add]);
        Ok(membership)
    }

    /// Folds a set of ops for `team`. Duplicates are dropped; ops that fail verification,
    /// belong to another team, or are not allowed where they fall in the fold are ignored and
    /// counted in [`rejected`](Self::rejected).
    pub fn from_ops(team: TeamId, ops: impl IntoIterator<Item = SignedOp>) -> Membership {
        let mut membership = Membership {
            team,
            known: BTreeMap::new(),
            invalid: BTreeSet::new(),
            team_name: None,
            roster: Roster::default(),
            applied: Vec::new(),
            ignored: 0,
            max_lamport: 0,
            rotations: Vec::new(),
            key_exposed: false,
        };
        membership.merge(ops);
        membership
    }

    /// Adds ops and refolds. Returns whether a new op for this team was learnt, i.e. whether
    /// the op set should be saved and relayed (the member list may still be unchanged).
    pub fn merge(&mut self, ops: impl IntoIterator<Item = SignedOp>) -> bool {
        let mut learnt = false;
        for op in ops {
            let id = op.id();
            if self.known.contains_key(&id) || self.invalid.contains(&id) {
                continue;
            }
            match op.verify() {
                Ok(body) if self.belongs(&op, &body) && self.known.len() < MAX_OPS => {
                    self.known.insert(id, (op, body));
                    learnt = true;
                }
                _ if self.invalid.len() < MAX_OPS => {
                    self.invalid.insert(id);
                }
                _ => {}
            }
        }
        if learnt {
            self.refold();
        }
        learnt
    }

    /// Signs an op as `keypair`'s device, after checking it is allowed now (the fold's rule).
    /// Names in `kind` are trimmed. The caller merges the returned op and relays it.
    pub fn sign(
        &self,
        keypair: &Keypair,
        now_ms: u64,
        kind: OpKind,
    ) -> Result<SignedOp, TeamError> {
        if keypair.key_type() != KeyType::Ed25519 {
            return Err(TeamError::UnsupportedKey);
        }
        if self.team_name.is_none() {
            return Err(TeamError::MissingGenesis);
        }
        let kind = match kind {
            OpKind::Genesis { .. } => return Err(TeamError::GenesisNotAllowed),
            OpKind::Add { device, name, role } => OpKind::Add {
                device,
                name: validate_name(&name)?,
                role,
            },
            OpKind::Rename { device, name } => OpKind::Rename {
                device,
                name: validate_name(&name)?,
            },
            other => other,
        };
        let by = keypair.public().to_peer_id();
        self.roster.check(&by, &kind)?;
        let lamport = self
            .max_lamport
            .checked_add(1)
            .ok_or(TeamError::LamportOverflow)?;
        let body = OpBody {
            team: Some(self.team),
            lamport,
            at_ms: now_ms,
            by,
            kind,
        };
        SignedOp::sign(keypair, &body)
    }

    /// Fails unless `device` is a current admin.
    pub(crate) fn check_admin(&self, device: &PeerId) -> Result<(), TeamError> {
        self.roster.require_admin(device)
    }

    /// The team's id.
    pub fn team_id(&self) -> TeamId {
        self.team
    }

    /// The team's name; empty until the genesis is known.
    pub fn team_name(&self) -> &str {
        self.team_name.as_deref().unwrap_or_default()
    }

    /// Whether the team's genesis is among the ops.
    pub fn is_founded(&self) -> bool {
        self.team_name.is_some()
    }

    /// Every device ever added, removed ones included, sorted by name (then id).
    pub fn members(&self) -> Vec<Member> {
        let mut members: Vec<Member> = self.roster.members.values().cloned().collect();
        members.sort_by(|a, b| {
            (a.name.to_lowercase(), &a.name, a.device).cmp(&(
                b.name.to_lowercase(),
                &b.name,
                b.device,
            ))
        });
        members
    }

    /// A device's entry, current or removed.
    pub fn member(&self, device: &PeerId) -> Option<&Member> {
        self.roster.members.get(device)
    }

    /// A device's role; `None` when it is unknown or removed.
    pub fn role_of(&self, device: &PeerId) -> Option<Role> {
        self.roster.current(device).map(|member| member.role)
    }

    /// Whether the device was removed from the team.
    pub fn is_revoked(&self, device: &PeerId) -> bool {
        self.member(device)
            .is_some_and(|member| !member.is_current())
    }

    /// Finds a member by exact device id, or by name ignoring case. Current members win over
    /// removed ones of the same name; several matches are an error listing them.
    pub fn find(&self, name_or_id: &str) -> Result<&Member, TeamError> {
        let query = name_or_id.trim();
        if let Some(member) = query
            .parse::<PeerId>()
            .ok()
            .and_then(|device| self.member(&device))
        {
            return Ok(member);
        }
        let wanted = query.to_lowercase();
        let matches: Vec<&Member> = self
            .roster
            .members
            .values()
            .filter(|member| member.name.to_lowercase() == wanted)
            .collect();
        let current: Vec<&Member> = matches.iter().copied().filter(|m| m.is_current()).collect();
        let pool = if current.is_empty() { matches } else { current };
        match pool.as_slice() {
            [] => Err(TeamError::NoSuchMember(query.chars().take(80).collect())),
            [member] => Ok(member),
            many => Err(TeamError::AmbiguousName {
                query: query.to_owned(),
                matches: many
                    .iter()
                    .map(|member| format!("{} ({})", member.name, member.device))
                    .collect(),
            }),
        }
    }

    /// The ops the fold applied, in fold order (genesis first).
    pub fn ops(&self) -> Vec<SignedOp> {
        self.applied
            .iter()
            .filter_map(|id| self.known.get(id))
            .map(|(op, _)| op.clone())
            .collect()
    }

    /// Every verified op of this team, including those the fold currently ignores, by op id.
    /// This is the set to persist and to relay: an ignored op may become valid later.
    pub fn known_ops(&self) -> Vec<SignedOp> {
        self.known.values().map(|(op, _)| op.clone()).collect()
    }

    /// The highest Lamport time among applied ops; the next local op gets one more.
    pub fn max_lamport(&self) -> u64 {
        self.max_lamport
    }

    /// How many distinct ops were ignored: invalid, for another team, or not allowed.
    pub fn rejected(&self) -> usize {
        self.invalid.len() + self.ignored
    }

    /// The epoch of the team's current transport key: 0 for the key drawn at the team's
    /// founding, one more with each applied [`OpKind::RotateKey`].
    pub fn key_epoch(&self) -> u64 {
        // At most `MAX_OPS` rotations: the count always fits.
        u64::try_from(self.rotations.len()).unwrap_or(u64::MAX)
    }

    /// The key of `epoch` sealed to `device` (base64), if the rotation that applied for that
    /// epoch has a box for it. `None` for epoch 0, whose key is handed over in a welcome.
    pub fn sealed_key_for(&self, device: &PeerId, epoch: u64) -> Option<&str> {
        let sealed = self.rotation(epoch)?;
        sealed.get(device).map(String::as_str)
    }

    /// The devices the key of `epoch` was sealed to (empty for epoch 0 and unknown epochs).
    pub fn key_recipients(&self, epoch: u64) -> Vec<PeerId> {
        self.rotation(epoch)
            .map(|sealed| sealed.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Whether a device was revoked after the current key was drawn (it may still hold the
    /// key): an admin should [rotate](crate::TeamState::rotate_key) it.
    pub fn needs_key_rotation(&self) -> bool {
        self.key_exposed
    }

    fn rotation(&self, epoch: u64) -> Option<&BTreeMap<PeerId, String>> {
        let index = usize::try_from(epoch.checked_sub(1)?).ok()?;
        let id = self.rotations.get(index)?;
        match self.known.get(id).map(|(_, body)| &body.kind) {
            Some(OpKind::RotateKey { sealed, .. }) => Some(sealed),
            _ => None,
        }
    }

    fn belongs(&self, op: &SignedOp, body: &OpBody) -> bool {
        match body.team {
            Some(team) => team == self.team,
            None => TeamId::derive(op.body_bytes()) == self.team,
        }
    }

    fn refold(&mut self) {
        self.team_name = None;
        self.roster = Roster::default();
        self.applied.clear();
        self.ignored = 0;
        self.max_lamport = 0;
        self.rotations.clear();
        self.key_exposed = false;

        let mut geneses = Vec::new();
        let mut rest = Vec::new();
        for (id, (_, body)) in &self.known {
            if body.team.is_none() {
                geneses.push((*id, body));
            } else {
                rest.push((body.lamport, *id, body));
            }
        }
        // Only the founder can sign a body hashing to the team id; should several signatures
        // of it exist, the smallest id wins and the others count as ignored.
        let Some(&(genesis_id, genesis)) = geneses.first() else {
            self.ignored = self.known.len();
            return;
        };
        self.ignored += geneses.len() - 1;
        if let OpKind::Genesis { name, .. } = &genesis.kind {
            self.team_name = Some(name.clone());
        }
        self.roster.found(genesis);
        self.applied.push(genesis_id);
        self.max_lamport = genesis.lamport;

        rest.sort_unstable_by_key(|(lamport, id, _)| (*lamport, *id));
        for (lamport, id, body) in rest {
            if self.roster.check(&body.by, &body.kind).is_ok() {
                self.roster.apply(body);
                self.applied.push(id);
                self.max_lamport = self.max_lamport.max(lamport);
                match body.kind {
                    OpKind::RotateKey { .. } => {
                        self.rotations.push(id);
                        self.key_exposed = false;
                    }
                    OpKind::Revoke { .. } => self.key_exposed = true,
                    _ => {}
                }
            } else {
                self.ignored += 1;
            }
        }
    }
}

/// The fold's state: every device seen, with the rule deciding which op may apply next.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Roster {
    members: BTreeMap<PeerId, Member>,
    /// How many of `members` are current.
    current_count: usize,
    /// The epoch of the current transport key.
    key_epoch: u64,
}

impl Roster {
    fn current(&self, device: &PeerId) -> Option<&Member> {
        self.members
            .get(device)
            .filter(|member| member.is_current())
    }

    fn admin_count(&self) -> usize {
        self.members
            .values()
            .filter(|member| member.is_current() && member.role.can_admin())
            .count()
    }

    /// A current member, or why the device is not one.
    fn require_current(&self, device: &PeerId) -> Result<&Member, TeamError> {
        match self.members.get(device) {
            None => Err(TeamError::UnknownDevice(*device)),
            Some(member) if !member.is_current() => Err(TeamError::Revoked(*device)),
            Some(member) => Ok(member),
        }
    }

    fn require_admin(&self, device: &PeerId) -> Result<(), TeamError> {
        if self.require_current(device)?.role.can_admin() {
            Ok(())
        } else {
            Err(TeamError::NotAdmin { device: *device })
        }
    }

    /// Whether taking `device`'s admin role away would leave no admin.
    fn is_last_admin(&self, device: &PeerId) -> bool {
        self.current(device)
            .is_some_and(|member| member.role.can_admin())
            && self.admin_count() == 1
    }

    /// The rule shared by the fold and by [`Membership::sign`].
    fn check(&self, by: &PeerId, kind: &OpKind) -> Result<(), TeamError> {
        self.require_current(by)?;
        match kind {
            OpKind::Genesis { .. } => Err(TeamError::GenesisNotAllowed),
            OpKind::Add { device, role, .. } => {
                self.require_admin(by)?;
                match self.members.get(device) {
                    Some(member) if !member.is_current() => {
                        return Err(TeamError::Revoked(*device));
                    }
                    None if self.current_count >= MAX_MEMBERS => {
                        return Err(TeamError::TeamFull(MAX_MEMBERS));
                    }
                    _ => {}
                }
                if !role.can_admin() && self.is_last_admin(device) {
                    return Err(TeamError::LastAdmin);
                }
                Ok(())
            }
            OpKind::SetRole { device, role } => {
                self.require_admin(by)?;
                self.require_current(device)?;
                if !role.can_admin() && self.is_last_admin(device) {
                    return Err(TeamError::LastAdmin);
                }
                Ok(())
            }
            OpKind::Rename { device, .. } => {
                if by != device {
                    self.require_admin(by)?;
                }
                self.require_current(device).map(|_| ())
            }
            OpKind::Revoke { device } => {
                self.require_admin(by)?;
                self.require_current(device)?;
                if self.is_last_admin(device) {
                    return Err(TeamError::LastAdmin);
                }
                Ok(())
            }
            OpKind::RotateKey { epoch, sealed } => {
                self.require_admin(by)?;
                let expected = self.key_epoch.saturating_add(1);
                if *epoch != expected {
                    return Err(TeamError::WrongKeyEpoch {
                        expected,
                        found: *epoch,
                    });
                }
                if sealed.len() > MAX_MEMBERS {
                    return Err(TeamError::TooManyRecipients {
                        count: sealed.len(),
                        max: MAX_MEMBERS,
                    });
                }
                if !sealed.contains_key(by) {
                    return Err(TeamError::SignerNotRecipient);
                }
                // A key sealed to a removed device would reach the very device it shuts out.
                sealed
                    .keys()
                    .try_for_each(|device| self.require_current(device).map(|_| ()))
            }
        }
    }

    fn found(&mut self, genesis: &OpBody) {
        self.members.insert(
            genesis.by,
            Member {
                device: genesis.by,
                // Replaced by the founder's own `Add`, which `create` signs right after.
                name: "founder".to_owned(),
                role: Role::Admin,
                added_by: None,
                added_at_ms: genesis.at_ms,
                revoked: None,
            },
        );
        self.current_count = 1;
    }

    /// Applies an op that passed [`check`](Self::check).
    fn apply(&mut self, body: &OpBody) {
        match &body.kind {
            OpKind::Genesis { .. } => {}
            OpKind::Add { device, name, role } => {
                let member = self.members.entry(*device).or_insert_with(|| {
                    self.current_count += 1;
                    Member {
                        device: *device,
                        name: String::new(),
                        role: *role,
                        added_by: Some(body.by),
                        added_at_ms: body.at_ms,
                        revoked: None,
                    }
                });
                member.name.clone_from(name);
                member.role = *role;
            }
            OpKind::SetRole { device, role } => {
                if let Some(member) = self.members.get_mut(device) {
                    member.role = *role;
                }
            }
            OpKind::Rename { device, name } => {
                if let Some(member) = self.members.get_mut(device) {
                    member.name.clone_from(name);
                }
            }
            OpKind::Revoke { device } => {
                if let Some(member) = self.members.get_mut(device) {
                    member.revoked = Some(Revocation {
                        by: body.by,
                        at_ms: body.at_ms,
                    });
                    self.current_count = self.current_count.saturating_sub(1);
                }
            }
            OpKind::RotateKey { epoch, .. } => self.key_epoch = *epoch,
        }
    }
}

#[cfg(test)]
mod tests;
