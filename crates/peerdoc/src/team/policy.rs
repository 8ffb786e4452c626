//! How the team becomes the node's policy: the transport keys (and the rotation's notice
//! and grace period), the allowlist (and a removed device's notice), the engine's access
//! per connection, and this device's own write permission. Split from `team.rs` so each
//! stays readable: this is the part that talks to the node.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use peerdoc_node::{AccessPolicy, PeerId};
use peerdoc_team::{OpKind, Role, TeamState};

use super::{DeviceLabel, NameBook, TeamFile, TeamService, doc, now_ms, os_rng};

/// The key new connections are dialed with, and the previous keys still accepted.
pub type TransportKeys = ([u8; 32], Vec<[u8; 32]>);

/// The transport keys a team file asks for at `now_ms`: the key to dial with, and the
/// previous keys while the last rotation is within `grace_ms`.
pub fn transport_keys(team: &TeamState, now_ms: u64, grace_ms: u64) -> TransportKeys {
    let current = *team.transport_key();
    let rotated_at = last_rotation_ms(team);
    let in_grace = rotated_at.is_some_and(|at| now_ms < at.saturating_add(grace_ms));
    let also = if in_grace {
        team.accepted_keys()
            .into_iter()
            .filter(|k| *k != current)
            .collect()
    } else {
        Vec::new()
    };
    (current, also)
}

/// When the current transport key was drawn (ms since the epoch), if it was rotated.
fn last_rotation_ms(team: &TeamState) -> Option<u64> {
    team.membership()
        .ops()
        .iter()
        .filter_map(|op| op.body().ok())
        .filter(|body| matches!(body.kind, OpKind::RotateKey { .. }))
        .map(|body| body.at_ms)
        .max()
}

/// Most keys the transport accepts besides the current one.
const MAX_EXTRA_KEYS: usize = 8;

/// How long a removed device stays connected (read-only) after its removal, and how long
/// members keep dialing with the old team key after a rotation, so that the membership
/// document telling them reaches them before their connections close.
pub(super) const REMOVAL_NOTICE: std::time::Duration = std::time::Duration::from_secs(2);

impl TeamService {
    /// Turns the membership into the node's policy: allowlist, read-only peers, names.
    pub(super) async fn apply(&self, file: &TeamFile) {
        // Members that disagree about who may write (two admins removing each other)
        // must still exchange membership records: the document takes them from anyone.
        if let Err(error) = self.node.protect_document(doc::doc_id(&file.team)).await {
            tracing::warn!(%error, "could not protect the membership document");
        }
        self.apply_keys(&file.team).await;
        let membership = file.team.membership();
        let my_role = membership.role_of(&self.me);
        // Viewers may only read; removed devices, while still connected during their
        // notice, hear of the membership document and nothing else.
        let viewers = membership
            .members()
            .into_iter()
            .filter(|m| m.revoked.is_none() && m.role == Role::Viewer)
            .map(|m| m.device)
            .collect();
        let removed = membership
            .members()
            .into_iter()
            .filter(|m| m.revoked.is_some())
            .map(|m| m.device)
            .collect();
        let read_only = my_role.is_none_or(|r| !r.can_write());
        let access = AccessPolicy {
            read_only_peers: viewers,
            protected_only_peers: removed,
            local_apps_read_only: read_only,
        };
        if let Err(error) = self.node.set_access(access).await {
            tracing::warn!(%error, "could not update peer access");
        }
        let allowlist = file.allowlist(&self.me);
        let mut allowed = self.allowed.lock().await;
        let removed = allowed.difference(&allowlist).count();
        // The notice lets removed devices hear of their removal; a device that knows it
        // was removed has nothing to wait for, and must not take new changes meanwhile.
        if removed == 0 || membership.is_revoked(&self.me) {
            if let Err(error) = self.node.set_allowlist(allowlist.clone()).await {
                tracing::warn!(%error, "could not update the allowlist");
            }
        } else {
            // Newcomers now; the removed devices once they had time to hear of it.
            let grace: BTreeSet<PeerId> = allowlist.union(&allowed).copied().collect();
            if let Err(error) = self.node.set_allowlist(grace).await {
                tracing::warn!(%error, "could not update the allowlist");
            }
            if let Some(service) = self.this.upgrade() {
                tokio::spawn(async move {
                    tokio::time::sleep(REMOVAL_NOTICE).await;
                    service.refresh_allowlist().await;
                });
            }
        }
        *allowed = allowlist;
        drop(allowed);
        self.set_flags(&file.team);
        let mut book = NameBook::default();
        for member in membership.members() {
            let prefix = peerdoc_core::PeerId::new(member.device.to_string()).actor_prefix();
            book.by_actor_prefix.insert(prefix, member.name.clone());
            book.by_peer.insert(
                member.device,
                DeviceLabel {
                    name: member.name.clone(),
                    role: member.revoked.is_none().then_some(member.role),
                },
            );
        }
        if let Ok(mut names) = self.names.write() {
            *names = book;
        }
        if membership.is_revoked(&self.me) {
            tracing::warn!(
                team = %file.team.name(),
                "this device was removed from the team: it keeps its copy of the documents but syncs with nobody"
            );
        }
    }

    /// Whether this device may write, from the team as it is now: set before anything
    /// else changes, so `/v1/team` never says "removed" while writes still go through.
    pub(super) fn set_flags(&self, team: &TeamState) {
        if let Ok(mut slot) = self.team_doc.write() {
            *slot = Some(doc::doc_id(team));
        }
        let membership = team.membership();
        let read_only = membership.role_of(&self.me).is_none_or(|r| !r.can_write());
        self.read_only.store(read_only, Ordering::Relaxed);
        self.removed
            .store(membership.is_revoked(&self.me), Ordering::Relaxed);
    }

    /// Gives the transport the keys the team asks for now, when they changed; and
    /// schedules dropping the previous keys when their grace period ends.
    pub(super) async fn apply_keys(&self, team: &TeamState) {
        let now = now_ms();
        let keys = transport_keys(team, now, self.key_grace_ms);
        let applied = self.keys.lock().await.clone();
        if let Some((old, mut also)) = applied.filter(|(old, _)| *old != keys.0) {
            // A rotation while connected: accept the new key at once (members that
            // already switched can reach us), keep dialing with the old one for the
            // notice period so the rotation reaches the members connected now, then
            // switch (which closes the connections made with the old key).
            also.retain(|k| *k != keys.0);
            also.insert(0, keys.0);
            also.truncate(MAX_EXTRA_KEYS);
            self.set_keys((old, also), team.current_epoch()).await;
            if let Some(service) = self.this.upgrade() {
                tokio::spawn(async move {
                    tokio::time::sleep(REMOVAL_NOTICE).await;
                    if let Some(file) = service.snapshot().await {
                        service.finish_keys(&file.team).await;
                    }
                });
            }
            return;
        }
        self.finish_keys(team).await;
    }

    /// Gives the transport the keys the team asks for now, and schedules dropping the
    /// previous keys when their grace period ends.
    pub(super) async fn finish_keys(&self, team: &TeamState) {
        let now = now_ms();
        let keys = transport_keys(team, now, self.key_grace_ms);
        let grace_ends = (!keys.1.is_empty())
            .then(|| last_rotation_ms(team))
            .flatten()
            .map(|at| at.saturating_add(self.key_grace_ms));
        if !self.set_keys(keys, team.current_epoch()).await {
            return;
        }
        if let (Some(ends), Some(service)) = (grace_ends, self.this.upgrade()) {
            let wait = ends.saturating_sub(now).saturating_add(10);
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
                if let Some(file) = service.snapshot().await {
                    let keys = transport_keys(&file.team, now_ms(), service.key_grace_ms);
                    service.set_keys(keys, file.team.current_epoch()).await;
                    tracing::info!("the previous team keys' grace period ended");
                }
            });
        }
    }

    /// Gives the transport `keys` unless it has them already; whether it changed them.
    pub(super) async fn set_keys(&self, keys: TransportKeys, epoch: u64) -> bool {
        let mut applied = self.keys.lock().await;
        if applied.as_ref() == Some(&keys) {
            return false;
        }
        let rotated = applied
            .as_ref()
            .is_some_and(|(current, _)| *current != keys.0);
        if let Err(error) = self.node.set_team_keys(keys.0, keys.1.clone()).await {
            tracing::warn!(%error, "could not change the team key");
            return false;
        }
        if rotated {
            tracing::info!(
                epoch,
                "the team key was rotated; reconnecting with the new key"
            );
        }
        *applied = Some(keys);
        true
    }

    /// Gives the transport the allowlist the team file says now.
    pub(super) async fn refresh_allowlist(&self) {
        let Some(file) = self.file.lock().await.clone() else {
            return;
        };
        let allowlist = file.allowlist(&self.me);
        if let Err(error) = self.node.set_allowlist(allowlist).await {
            tracing::warn!(%error, "could not update the allowlist");
        }
    }

    /// Merges membership operations learned from the membership document; applies and
    /// saves them when anything changed. Returns whether it did.
    pub(crate) async fn merge_ops(&self, ops: Vec<peerdoc_team::SignedOp>) -> bool {
        let mut guard = self.file.lock().await;
        let Some(file) = guard.as_mut() else {
            return false;
        };
        let was_revoked = file.team.membership().is_revoked(&self.me);
        if !file.team.merge(ops) {
            return false;
        }
        file.team.learn_keys(&self.keypair);
        // A removal nobody rotated the key for yet (its admin could not, or two
        // removals raced): an admin rotates now.
        self.rotate_if_needed(file);
        let now_revoked = file.team.membership().is_revoked(&self.me);
        self.set_flags(&file.team);
        if let Err(error) = file.save(&self.data_dir) {
            tracing::warn!(error = %error.message, "could not save the team file");
        }
        let snapshot = file.clone();
        drop(guard);
        if !was_revoked && now_revoked {
            tracing::warn!("this device was removed from the team by an admin");
        }
        self.apply(&snapshot).await;
        true
    }

    /// Rotates the team key when a device was removed since it was drawn and this
    /// device is an admin (the new key is sealed to every remaining member).
    pub(super) fn rotate_if_needed(&self, file: &mut TeamFile) {
        let team = &mut file.team;
        let admin = team
            .membership()
            .role_of(&self.me)
            .is_some_and(Role::can_admin);
        if !admin || !team.membership().needs_key_rotation() {
            return;
        }
        let rotated = os_rng()
            .ok()
            .map(|mut rng| team.rotate_key(&self.keypair, now_ms(), &mut rng));
        match rotated {
            Some(Ok(_)) => tracing::info!(epoch = team.current_epoch(), "rotated the team key"),
            Some(Err(error)) => tracing::warn!(%error, "could not rotate the team key"),
            None => tracing::warn!("no OS randomness to rotate the team key"),
        }
    }
}
