//! Team membership over the real engine, seeded: signed membership ops travel in the
//! team's membership document, every device's driver folds them and applies the daemon's
//! policy (viewers and revoked devices are read-only; revoked devices are disconnected
//! after a notice period and refused afterwards), while a viewer and, once revoked, a
//! removed editor keep writing as a malicious device would. See `docs/simulation.md`
//! ("Team membership") for what is checked and why.
//!
//! `SEED=<n> cargo test -p peerdoc-sim --test membership -- --nocapture` replays a seed;
//! `MEMBERSHIP_SEEDS=<n>` changes how many seeds the CI test runs.
//!
//! Longer than the ~800-line rule on purpose: most of it is one harness (`Team`) that
//! models the daemon's team driver step by step, and the tests read its fields directly;
//! split into a module, every field would have to be made public for three tests.

use std::collections::{BTreeMap, BTreeSet};

use automerge::{Automerge, ChangeHash};
use libp2p_identity::Keypair;
use peerdoc_core::model::EditOp;
use peerdoc_core::repo::{ChangeRequest, Command, Event, Input, PeerAccess, Reply, RepoError};
use peerdoc_core::{ConnectionId, DocumentId};
use peerdoc_sim::Cluster;
use peerdoc_team::{Membership, OpKind, Role, SignedOp};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value, json};

/// The membership document syncs before any other (as in the daemon).
const TEAM_DOC_PRIORITY: i32 = 1_000_000;

/// How long a member keeps a revoked device's connections open (read-only) so that it
/// hears of its removal: the daemon's `REMOVAL_NOTICE`, scaled to simulated time.
const REMOVAL_NOTICE_MS: u64 = 40;

/// Seeds the CI test runs.
const CI_SEEDS: u64 = 120;

/// One device: its libp2p identity and the prefix of its automerge actor ids.
struct Device {
    keypair: Keypair,
    id: libp2p_identity::PeerId,
    prefix: [u8; 8],
}

impl Device {
    fn from_rng(rng: &mut ChaCha8Rng) -> Self {
        let mut secret = [0u8; 32];
        rng.fill(&mut secret);
        let keypair = Keypair::ed25519_from_bytes(secret).expect("any 32 bytes are a secret");
        let id = keypair.public().to_peer_id();
        let prefix = peerdoc_core::PeerId::new(id.to_string()).actor_prefix();
        Self {
            keypair,
            id,
            prefix,
        }
    }
}

/// A team of devices over a [`Cluster`], each with the driver logic the daemon runs
/// (`crates/peerdoc/src/team.rs` and `team/doc.rs`), written against the engine directly.
struct Team {
    c: Cluster,
    devices: Vec<Device>,
    /// Each device's driver's membership.
    known: Vec<Membership>,
    /// Devices that write whatever their role and connect to anyone who accepts them.
    malicious: Vec<bool>,
    /// The membership document.
    team_doc: DocumentId,
    /// Every document created so far (the membership document not included).
    docs: Vec<DocumentId>,
    /// The access an honest device gave each of its connections.
    access: BTreeMap<ConnectionId, PeerAccess>,
    /// Connections of revoked devices to close once their notice period is over.
    removals: BTreeMap<ConnectionId, u64>,
    /// (member, revoked device) → the revoked device's changes the member held at the
    /// moment it learned of the revocation.
    learned: BTreeMap<(usize, usize), BTreeSet<ChangeHash>>,
    /// Pairs a partition keeps apart (lower index first).
    cut: BTreeSet<(usize, usize)>,
    events_seen: usize,
    writes: u64,
}

impl Team {
    /// Device 0 founds the team and adds the others with `roles[i]`; every device starts
    /// with the founder's ops (as from its welcome) and publishes them, as `join` does.
    fn found(roles: &[Role], seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7ea3);
        let devices: Vec<Device> = roles.iter().map(|_| Device::from_rng(&mut rng)).collect();
        let configs: Vec<(String, [u8; 8])> = devices
            .iter()
            .map(|d| (d.id.to_string(), d.prefix))
            .collect();
        let c = Cluster::new_per_node(roles.len(), seed, |i, config| {
            config.peer_id = peerdoc_core::PeerId::new(configs[i].0.clone());
            config.actor_prefix = Some(configs[i].1);
        });
        let now = c.now_ms;
        let mut membership =
            Membership::create(&devices[0].keypair, "Wedding", "device 0", now, &mut rng)
                .expect("found the team");
        for (i, role) in roles.iter().enumerate().skip(1) {
            let op = membership
                .sign(
                    &devices[0].keypair,
                    now,
                    OpKind::Add {
                        device: devices[i].id,
                        name: format!("device {i}"),
                        role: *role,
                    },
                )
                .expect("add a member");
            membership.merge([op]);
        }
        let team_doc = DocumentId::from_bytes(*membership.team_id().as_bytes());
        let mut team = Self {
            c,
            known: vec![membership; roles.len()],
            malicious: roles.iter().map(|r| *r == Role::Viewer).collect(),
            devices,
            team_doc,
            docs: Vec::new(),
            access: BTreeMap::new(),
            removals: BTreeMap::new(),
            learned: BTreeMap::new(),
            cut: BTreeSet::new(),
            events_seen: 0,
            writes: 0,
        };
        for i in 0..roles.len() {
            // `team.rs::apply`: the membership document takes signed ops from every
            // connection, read-only ones included, and cannot be deleted.
            team.c.feed(i, Input::ProtectDocument { doc: team_doc });
            team.publish(i);
        }
        team.react();
        team
    }

    fn n(&self) -> usize {
        self.devices.len()
    }

    fn honest(&self) -> Vec<usize> {
        (0..self.n()).filter(|i| !self.malicious[*i]).collect()
    }

    /// `team/doc.rs::publish`: writes every known op the document lacks, creating it
    /// when this device has none.
    fn publish(&mut self, i: usize) {
        let wanted: Map<String, Value> = self.known[i]
            .known_ops()
            .iter()
            .map(|op| {
                let text = serde_json::to_string(op).expect("ops encode");
                (op.id().to_string(), Value::String(text))
            })
            .collect();
        match self.c.command(
            i,
            Command::Read {
                doc: self.team_doc,
                heads: None,
            },
        ) {
            Ok(Reply::Json {
                value: Value::Object(present),
                ..
            }) => {
                let ops: Vec<EditOp> = wanted
                    .into_iter()
                    .filter(|(key, _)| !present.contains_key(key))
                    .map(|(key, value)| EditOp::Set {
                        path: format!("/{key}"),
                        value,
                    })
                    .collect();
                if !ops.is_empty() {
                    let _ = self.c.command(
                        i,
                        Command::Change {
                            doc: self.team_doc,
                            request: ChangeRequest::Ops(ops),
                            message: Some("team membership".into()),
                        },
                    );
                }
            }
            Err(RepoError::DocumentNotFound(_)) => {
                let _ = self.c.command(
                    i,
                    Command::CreateAt {
                        doc: self.team_doc,
                        initial: Some(Value::Object(wanted)),
                        priority: TEAM_DOC_PRIORITY,
                        title: None,
                    },
                );
            }
            _ => {}
        }
    }

    /// `team/doc.rs::read_ops`: entries that do not parse are skipped.
    fn read_ops(&mut self, i: usize) -> Vec<SignedOp> {
        match self.c.json(i, self.team_doc) {
            Some(Value::Object(map)) => map
                .values()
                .filter_map(|v| serde_json::from_str(v.as_str()?).ok())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// `team/doc.rs::follow`, for one change of the membership document on device `i`.
    fn follow(&mut self, i: usize) {
        let ops = self.read_ops(i);
        let present: BTreeSet<_> = ops.iter().map(SignedOp::id).collect();
        let before = self.known[i].clone();
        if self.known[i].merge(ops) {
            self.learn(i, &before);
        }
        if self.known[i]
            .known_ops()
            .iter()
            .any(|op| !present.contains(&op.id()))
        {
            self.publish(i);
        }
    }

    /// Device `i`'s membership changed from `before`: record what it held of each newly
    /// revoked device, then apply the policy.
    fn learn(&mut self, i: usize, before: &Membership) {
        let watched = if self.malicious[i] { 0 } else { self.n() };
        for d in 0..watched {
            let device = self.devices[d].id;
            if self.known[i].is_revoked(&device) && !before.is_revoked(&device) {
                let held = self.changes_by(i, d);
                self.learned.insert((i, d), held);
            }
        }
        self.apply_policy(i);
    }

    /// `team.rs::apply`: viewers and revoked devices are read-only; a revoked device's
    /// connections close after the notice period; a device that is itself revoked keeps
    /// none.
    ///
    /// A malicious device runs the same policy towards others (it is the stock engine
    /// and driver with the write guard and the allowlist removed), but never lets go of
    /// its own connections.
    fn apply_policy(&mut self, i: usize) {
        let me_revoked = !self.malicious[i] && self.known[i].is_revoked(&self.devices[i].id);
        for (conn, j) in self.c.connections_of(i) {
            let peer = self.devices[j].id;
            let writer = self.known[i].role_of(&peer).is_some_and(Role::can_write);
            let access = if writer {
                PeerAccess::ReadWrite
            } else {
                PeerAccess::ReadOnly
            };
            if self.access.get(&conn) != Some(&access) {
                self.access.insert(conn, access);
                self.c.feed(i, Input::ConnectionAccess { conn, access });
            }
            if me_revoked || (!self.malicious[i] && self.known[i].is_revoked(&peer)) {
                let at = self.c.now_ms + REMOVAL_NOTICE_MS;
                self.removals.entry(conn).or_insert(at);
            }
        }
    }

    /// Signs `kind` as device `i` with what `i` knows, merges and publishes it.
    fn sign(&mut self, i: usize, kind: OpKind) -> bool {
        let Ok(op) = self.known[i].sign(&self.devices[i].keypair, self.c.now_ms, kind) else {
            return false;
        };
        let before = self.known[i].clone();
        self.known[i].merge([op]);
        self.learn(i, &before);
        self.publish(i);
        self.react();
        true
    }

    /// Follows every membership document that changed since the last call.
    fn react(&mut self) {
        loop {
            let changed: BTreeSet<usize> = self.c.events[self.events_seen..]
                .iter()
                .filter_map(|(node, event)| match event {
                    Event::DocumentChanged { doc, .. } | Event::DocumentCreated { doc, .. }
                        if *doc == self.team_doc =>
                    {
                        Some(*node)
                    }
                    _ => None,
                })
                .collect();
            self.events_seen = self.c.events.len();
            if changed.is_empty() {
                return;
            }
            for node in changed {
                self.follow(node);
            }
        }
    }

    /// Delivers up to `frames` frames, the drivers reacting after each one.
    fn pump(&mut self, frames: usize) {
        for _ in 0..frames {
            if self.c.deliver_one().is_none() {
                return;
            }
            self.react();
        }
    }

    /// Delivers until nothing is in flight.
    fn settle(&mut self) {
        let mut delivered = 0u64;
        while self.c.in_flight() > 0 {
            self.pump(1);
            delivered += 1;
            assert!(delivered < 5_000_000, "frames never stopped flowing");
        }
    }

    /// Closes the connections whose notice period is over.
    fn expire_removals(&mut self) {
        let now = self.c.now_ms;
        let due: Vec<ConnectionId> = self
            .removals
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(conn, _)| *conn)
            .collect();
        for conn in due {
            self.removals.remove(&conn);
            self.c.disconnect(conn);
        }
        self.react();
    }

    /// Whether `x` accepts a connection with `y`: honest devices refuse revoked ones
    /// (the transport allowlist) and, once revoked themselves, everybody.
    fn accepts(&self, x: usize, y: usize) -> bool {
        self.malicious[x]
            || !(self.known[x].is_revoked(&self.devices[y].id)
                || self.known[x].is_revoked(&self.devices[x].id))
    }

    fn connected(&self, a: usize, b: usize) -> bool {
        self.c.connections_of(a).iter().any(|(_, peer)| *peer == b)
    }

    fn may_connect(&self, a: usize, b: usize) -> bool {
        a != b
            && !self.cut.contains(&(a.min(b), a.max(b)))
            && !self.connected(a, b)
            && self.accepts(a, b)
            && self.accepts(b, a)
    }

    /// Connects `a` (dialler) to `b` if both accept; policy applies before any frame.
    fn connect(&mut self, a: usize, b: usize) -> bool {
        if !self.may_connect(a, b) {
            return false;
        }
        self.c.connect(a, b);
        self.apply_policy(a);
        self.apply_policy(b);
        true
    }

    /// Cuts `a` and `b` apart (closing their connections) until [`Team::join`].
    fn split(&mut self, a: usize, b: usize) {
        self.cut.insert((a.min(b), a.max(b)));
        for (conn, peer) in self.c.connections_of(a) {
            if peer == b {
                self.c.disconnect(conn);
            }
        }
        self.react();
    }

    fn join(&mut self, a: usize, b: usize) {
        self.cut.remove(&(a.min(b), a.max(b)));
    }

    /// Whether device `i` writes now: honest devices only when their role allows.
    fn writes(&self, i: usize) -> bool {
        self.malicious[i]
            || self.known[i]
                .role_of(&self.devices[i].id)
                .is_some_and(Role::can_write)
    }

    /// Sets `key` in `doc` on device `i`; returns the change made.
    fn set(&mut self, i: usize, doc: DocumentId, key: &str, value: Value) -> Option<ChangeHash> {
        self.writes += 1;
        match self.c.command(
            i,
            Command::Change {
                doc,
                request: ChangeRequest::Ops(vec![EditOp::Set {
                    path: format!("/{key}"),
                    value,
                }]),
                message: None,
            },
        ) {
            Ok(Reply::Changed { change, .. }) => change,
            _ => None,
        }
    }

    fn create(&mut self, i: usize, value: Value) -> Option<DocumentId> {
        match self.c.command(
            i,
            Command::Create {
                initial: Some(value),
                priority: 0,
                title: None,
            },
        ) {
            Ok(Reply::Created { doc, .. }) => {
                self.docs.push(doc);
                Some(doc)
            }
            _ => None,
        }
    }

    /// Every document device `i` holds (its catalog, tombstones excepted), loaded.
    fn documents(&mut self, i: usize) -> BTreeMap<DocumentId, Automerge> {
        let ids: Vec<DocumentId> = self.c.nodes[i].repo.catalog().keys().copied().collect();
        let mut out = BTreeMap::new();
        for doc in ids {
            if let Ok(Reply::Exported(bytes)) = self.c.command(i, Command::Export { doc }) {
                out.insert(doc, Automerge::load(&bytes).expect("an exported doc loads"));
            }
        }
        out
    }

    /// The changes device `i` holds whose actor is device `author`'s.
    fn changes_by(&mut self, i: usize, author: usize) -> BTreeSet<ChangeHash> {
        let docs = self.documents(i);
        self.authored(&docs, author)
    }

    /// The changes in `docs` whose actor is device `author`'s. The membership document is
    /// left out: it takes changes from every device by design (its entries are signed
    /// ops that verify or are ignored; `Input::ProtectDocument`).
    fn authored(
        &self,
        docs: &BTreeMap<DocumentId, Automerge>,
        author: usize,
    ) -> BTreeSet<ChangeHash> {
        let prefix = self.devices[author].prefix;
        docs.iter()
            .filter(|(id, _)| **id != self.team_doc)
            .flat_map(|(_, doc)| doc.get_changes(&[]))
            .filter(|change| change.actor_id().to_bytes().starts_with(&prefix))
            .map(|change| change.hash())
            .collect()
    }

    /// Heals every partition and runs until nothing moves: every pair that both sides
    /// accept is connected, every frame delivered, every notice period over.
    fn heal(&mut self) {
        self.cut.clear();
        for _ in 0..1_000 {
            let mut moved = false;
            for a in 0..self.n() {
                for b in a + 1..self.n() {
                    moved |= self.connect(a, b);
                }
            }
            moved |= self.c.in_flight() > 0;
            self.settle();
            if let Some(&last) = self.removals.values().max() {
                self.c.now_ms = self.c.now_ms.max(last);
                self.expire_removals();
                moved = true;
            }
            if !moved {
                return;
            }
        }
        panic!("the team never went quiet");
    }

    /// The invariants of `docs/simulation.md` ("Team membership").
    fn check(&mut self) -> Result<(), String> {
        let honest = self.honest();
        // (a) one membership: the same ops, the same fold.
        let first = honest[0];
        let ops = |m: &Membership| m.known_ops().iter().map(SignedOp::id).collect::<Vec<_>>();
        for &i in &honest[1..] {
            if ops(&self.known[i]) != ops(&self.known[first]) {
                return Err(format!(
                    "devices {first} and {i} know different membership ops"
                ));
            }
            if self.known[i].members() != self.known[first].members() {
                return Err(format!(
                    "devices {first} and {i} fold different memberships: {:?} vs {:?}",
                    roster(&self.known[first]),
                    roster(&self.known[i])
                ));
            }
        }
        // (b) the same documents, heads and content.
        let mut ids = BTreeSet::new();
        for &i in &honest {
            ids.extend(self.c.nodes[i].repo.catalog().keys().copied());
        }
        for doc in ids {
            let mut seen: Option<(usize, Option<DocState>)> = None;
            for &i in &honest {
                let state = match self.c.command(i, Command::Read { doc, heads: None }) {
                    Ok(Reply::Json { value, mut heads }) => {
                        heads.sort();
                        Some((value, heads))
                    }
                    _ => None,
                };
                match &seen {
                    None => seen = Some((i, state)),
                    Some((j, other)) if *other != state => {
                        return Err(format!(
                            "document {doc} differs between devices {j} and {i}: {other:?} vs {state:?}"
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
        // (c) nothing a viewer wrote, and (d) nothing a revoked device wrote that no
        // honest member held when it learned of the revocation.
        let viewers: Vec<usize> = (0..self.n())
            .filter(|d| self.known[first].role_of(&self.devices[*d].id) == Some(Role::Viewer))
            .collect();
        let revoked: Vec<usize> = (0..self.n())
            .filter(|d| self.known[first].is_revoked(&self.devices[*d].id))
            .collect();
        for &i in &honest {
            let docs = self.documents(i);
            for &v in &viewers {
                if let Some(hash) = self.authored(&docs, v).into_iter().next() {
                    return Err(format!("device {i} holds change {hash} by viewer {v}"));
                }
            }
            for &r in &revoked {
                let allowed: BTreeSet<ChangeHash> = honest
                    .iter()
                    .filter_map(|m| self.learned.get(&(*m, r)))
                    .flatten()
                    .copied()
                    .collect();
                if let Some(hash) = self
                    .authored(&docs, r)
                    .into_iter()
                    .find(|h| !allowed.contains(h))
                {
                    return Err(format!(
                        "device {i} holds change {hash} by revoked device {r}, which no honest member held when it learned of the revocation"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A document's content and sorted heads on one device.
type DocState = (Value, Vec<ChangeHash>);

/// A membership as (device name, role or "revoked"), for failure messages.
fn roster(m: &Membership) -> Vec<(String, String)> {
    m.members()
        .into_iter()
        .map(|member| {
            let role = match member.revoked {
                Some(_) => "revoked".to_owned(),
                None => member.role.to_string(),
            };
            (member.name, role)
        })
        .collect()
}

/// What a seed exercised.
#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    /// Changes the revoked device made after its revocation was signed.
    late_writes: u64,
    /// Of those, how many honest members hold at the end (accepted before they knew).
    late_writes_kept: u64,
    /// Seeds whose revocation was signed while the admin was cut off from someone.
    revoked_in_partition: u64,
    /// Seeds where another admin changed a role concurrently with the revocation.
    concurrent_role_changes: u64,
    /// Writes attempted by the viewer.
    viewer_writes: u64,
}

impl std::ops::AddAssign for Stats {
    fn add_assign(&mut self, o: Self) {
        self.late_writes += o.late_writes;
        self.late_writes_kept += o.late_writes_kept;
        self.revoked_in_partition += o.revoked_in_partition;
        self.concurrent_role_changes += o.concurrent_role_changes;
        self.viewer_writes += o.viewer_writes;
    }
}

/// One seeded run: found the team, random steps, heal, check.
fn run_seed(seed: u64) -> Result<Stats, String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = rng.random_range(4..=6);
    let viewer = n - 1;
    let mut roles = vec![Role::Editor; n];
    roles[0] = Role::Admin;
    roles[viewer] = Role::Viewer;
    let second_admin = rng.random_bool(0.5).then_some(1);
    if let Some(a) = second_admin {
        roles[a] = Role::Admin;
    }
    let admins: Vec<usize> = (0..n).filter(|i| roles[*i] == Role::Admin).collect();
    let editors: Vec<usize> = (0..n).filter(|i| roles[*i] == Role::Editor).collect();
    let steps = rng.random_range(40..=100);
    let revoke_step = rng.random_range(steps / 4..steps * 3 / 4);
    let revoker = admins[rng.random_range(0..admins.len())];
    let target = editors[rng.random_range(0..editors.len())];
    // The other admin, if any, changes a role within a few steps of the revocation.
    let other_admin = if revoker == 0 { 1 } else { 0 };
    let role_change = second_admin
        .filter(|_| rng.random_bool(0.6))
        .map(|_| revoke_step + rng.random_range(0..4));

    let mut team = Team::found(&roles, seed);
    let mut stats = Stats::default();
    let mut late: BTreeSet<ChangeHash> = BTreeSet::new();
    for _ in 0..3 {
        let creator = editors[rng.random_range(0..editors.len())];
        team.create(creator, json!({"k0": format!("{creator}:init")}));
    }
    for a in 0..n {
        for b in a + 1..n {
            if rng.random_bool(0.5) {
                team.connect(a, b);
            }
        }
    }

    for step in 0..steps {
        team.c.advance(rng.random_range(1..=10));
        team.expire_removals();
        if step == revoke_step {
            if (0..n).any(|d| d != revoker && !team.connected(revoker, d)) {
                stats.revoked_in_partition += 1;
            }
            let device = team.devices[target].id;
            if team.sign(revoker, OpKind::Revoke { device }) {
                team.malicious[target] = true;
            }
        }
        if role_change == Some(step) {
            // Promote an editor (possibly the one being revoked) to admin.
            let who = editors[rng.random_range(0..editors.len())];
            let device = team.devices[who].id;
            if team.sign(
                other_admin,
                OpKind::SetRole {
                    device,
                    role: Role::Admin,
                },
            ) {
                stats.concurrent_role_changes += 1;
            }
        }
        match rng.random_range(0..100) {
            0..60 => {
                let i = rng.random_range(0..n);
                if team.writes(i) {
                    let doc = if team.malicious[i] && rng.random_bool(0.1) {
                        team.team_doc
                    } else {
                        team.docs[rng.random_range(0..team.docs.len())]
                    };
                    let key = format!("k{}", rng.random_range(0..4));
                    let change = team.set(i, doc, &key, json!(format!("{i}:{step}")));
                    if i == viewer {
                        stats.viewer_writes += 1;
                    }
                    if i == target && team.malicious[i] {
                        late.extend(change);
                    }
                }
            }
            60..66 => {
                let i = rng.random_range(0..n);
                if team.writes(i) {
                    team.create(i, json!({"k0": format!("{i}:{step}")}));
                }
            }
            66..80 => {
                let a = rng.random_range(0..n);
                let b = rng.random_range(0..n);
                if a != b {
                    team.split(a, b);
                }
            }
            80..92 if !team.cut.is_empty() => {
                let k = rng.random_range(0..team.cut.len());
                if let Some(&(a, b)) = team.cut.iter().nth(k) {
                    team.join(a, b);
                }
            }
            _ => {}
        }
        for a in 0..n {
            for b in a + 1..n {
                if team.may_connect(a, b) && rng.random_bool(0.15) {
                    let (x, y) = if rng.random_bool(0.5) { (a, b) } else { (b, a) };
                    team.connect(x, y);
                }
            }
        }
        let frames = rng.random_range(0..=40);
        team.pump(frames);
    }

    team.heal();
    team.check()?;
    stats.late_writes = late.len() as u64;
    let first = team.honest()[0];
    let kept = team.changes_by(first, target);
    stats.late_writes_kept = late.intersection(&kept).count() as u64;
    Ok(stats)
}

fn run_or_panic(seed: u64) -> Stats {
    match run_seed(seed) {
        Ok(stats) => stats,
        Err(error) => panic!(
            "membership seed {seed} failed: {error}\nreplay: SEED={seed} cargo test -p peerdoc-sim --test membership -- --nocapture"
        ),
    }
}

#[test]
fn seeded_membership_runs_converge_and_enforce_roles() {
    if let Some(seed) = std::env::var("SEED").ok().and_then(|s| s.parse().ok()) {
        let stats = run_or_panic(seed);
        println!("seed {seed}: {stats:?}");
        return;
    }
    let seeds = std::env::var("MEMBERSHIP_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(CI_SEEDS);
    // Two threads, each taking every other seed: the same seeds whatever the timing.
    let mut total = Stats::default();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2)
            .map(|first| {
                scope.spawn(move || {
                    let mut stats = Stats::default();
                    for seed in (first..seeds).step_by(2) {
                        stats += run_or_panic(seed);
                    }
                    stats
                })
            })
            .collect();
        for worker in workers {
            total += worker
                .join()
                .expect("a seed failed (its seed is printed above)");
        }
    });
    println!("{seeds} seeds: {total:?}");
    // The seeds, together, did exercise the races this simulation is about.
    assert!(total.viewer_writes > 0, "{total:?}");
    assert!(total.late_writes > total.late_writes_kept, "{total:?}");
    assert!(total.late_writes_kept > 0, "{total:?}");
    assert!(total.revoked_in_partition > 0, "{total:?}");
    assert!(total.concurrent_role_changes > 0, "{total:?}");
}

#[test]
fn a_revocation_racing_an_edit_across_a_partition() {
    // 0 is the admin, 1 an editor, 2 the editor 0 removes while cut off from both.
    let mut t = Team::found(&[Role::Admin, Role::Editor, Role::Editor], 1);
    let doc = t.create(0, json!({"plan": "v0"})).expect("create");
    t.connect(0, 1);
    t.connect(0, 2);
    t.connect(1, 2);
    t.settle();
    t.split(0, 1);
    t.split(0, 2);
    let revoked = t.devices[2].id;
    assert!(t.sign(0, OpKind::Revoke { device: revoked }));
    t.malicious[2] = true;
    // On the other side of the partition nobody knows yet: 1 takes 2's edit.
    let before = t
        .set(2, doc, "plan", json!("2 before 1 knew"))
        .expect("a change");
    t.settle();
    assert_eq!(t.c.json(1, doc).expect("doc")["plan"], "2 before 1 knew");
    // 0 and 1 meet: 1 learns, holding 2's edit, which is now the team's history.
    t.join(0, 1);
    t.connect(0, 1);
    t.settle();
    assert!(t.known[1].is_revoked(&revoked));
    assert!(t.learned[&(1, 2)].contains(&before));
    // 2 keeps writing; 1 no longer applies what comes on 2's connection.
    let after = t
        .set(2, doc, "vendor", json!("2 after 1 knew"))
        .expect("a change");
    t.settle();
    assert!(!t.changes_by(1, 2).contains(&after));
    // The notice period ends: 2 is disconnected and refused from then on.
    t.c.advance(REMOVAL_NOTICE_MS);
    t.expire_removals();
    assert!(!t.connected(1, 2));
    assert!(!t.connect(2, 1) && !t.connect(1, 2));
    t.heal();
    t.check().unwrap_or_else(|e| panic!("{e}"));
    for node in [0, 1] {
        let json = t.c.json(node, doc).expect("doc");
        assert_eq!(json["plan"], "2 before 1 knew", "device {node}");
        assert!(json.get("vendor").is_none(), "device {node}");
    }
}

/// Two admins revoke each other while apart. A device one admin revoked is read-only to
/// every member that heard of it; were read-only to apply to the membership document
/// too, that device's own concurrent op (revoking the other admin) would never reach
/// them even when it wins the fold, and in 8 of these 16 key sets device 1 folded
/// "0 revoked, 1 admin" while 0 and 2 folded "1 revoked", for good. The membership
/// document is protected (`Input::ProtectDocument`): it takes signed ops from every
/// connection, so every member folds the same set.
#[test]
fn two_admins_revoking_each_other_converge_on_one_membership() {
    for seed in 0..16 {
        // 0 and 1 are admins, cut apart; 2 is an editor connected to both.
        let mut t = Team::found(&[Role::Admin, Role::Admin, Role::Editor], seed);
        t.connect(0, 1);
        t.connect(0, 2);
        t.connect(1, 2);
        t.settle();
        t.split(0, 1);
        let (a, b) = (t.devices[0].id, t.devices[1].id);
        assert!(t.sign(0, OpKind::Revoke { device: b }));
        assert!(t.sign(1, OpKind::Revoke { device: a }));
        t.heal();
        // Exactly one of the two is removed, the same one for every device.
        let rosters: Vec<_> = (0..3).map(|i| roster(&t.known[i])).collect();
        assert!(
            rosters.iter().all(|r| *r == rosters[0]),
            "key seed {seed}: {rosters:?}"
        );
        assert!(t.known[2].is_revoked(&a) != t.known[2].is_revoked(&b));
        t.check().unwrap_or_else(|e| panic!("key seed {seed}: {e}"));
    }
}
