use data_encoding::BASE64;
use proptest::prelude::*;
use rand::seq::SliceRandom;

use super::*;
use crate::test_support::{keypair, peer, rng};

const NOW: u64 = 1_700_000_000_000;

/// A team founded by key 1 ("alpha").
fn founded() -> Membership {
    Membership::create(&keypair(1), "Clinic", "alpha", NOW, &mut rng(1)).expect("create")
}

/// Signs and merges, panicking with the error when the op is refused.
fn act(membership: &mut Membership, signer: u8, kind: OpKind) -> SignedOp {
    let op = membership
        .sign(&keypair(signer), NOW, kind)
        .unwrap_or_else(|err| panic!("signer {signer} refused: {err}"));
    assert!(membership.merge([op.clone()]));
    op
}

fn add(device: u8, name: &str, role: Role) -> OpKind {
    OpKind::Add {
        device: peer(device),
        name: name.into(),
        role,
    }
}

/// Signs an op without the permission check, as a misbehaving peer would.
fn forge(membership: &Membership, signer: u8, lamport: u64, kind: OpKind) -> SignedOp {
    let body = OpBody {
        team: Some(membership.team_id()),
        lamport,
        at_ms: NOW,
        by: peer(signer),
        kind,
    };
    SignedOp::sign(&keypair(signer), &body).expect("sign")
}

/// A rotation to `epoch` sealed to `devices`, with well-formed boxes that open for no one
/// (the fold never opens them).
fn rotation(epoch: u64, devices: &[u8]) -> OpKind {
    OpKind::RotateKey {
        epoch,
        sealed: devices
            .iter()
            .map(|&device| (peer(device), BASE64.encode(&[device; 80])))
            .collect(),
    }
}

fn sorted(devices: &[PeerId]) -> Vec<PeerId> {
    let mut devices = devices.to_vec();
    devices.sort();
    devices
}

#[test]
fn create_makes_the_founder_admin() {
    let team = founded();
    assert_eq!(team.team_name(), "Clinic");
    assert_eq!(team.role_of(&peer(1)), Some(Role::Admin));
    assert_eq!(team.members().len(), 1);
    assert_eq!(team.members()[0].name, "alpha");
    assert_eq!(team.members()[0].added_by, None);
    assert_eq!(team.ops().len(), 2);
    assert_eq!(team.max_lamport(), 1);
    assert_eq!(team.rejected(), 0);
    let genesis = &team.ops()[0];
    assert_eq!(team.team_id(), TeamId::derive(genesis.body_bytes()));
    // Same inputs fold the same, whatever the order.
    let reversed = Membership::from_ops(team.team_id(), team.ops().into_iter().rev());
    assert_eq!(reversed, team);
}

#[test]
fn admins_manage_and_others_cannot() {
    let mut team = founded();
    act(&mut team, 1, add(2, "bravo", Role::Editor));
    act(&mut team, 1, add(3, "charlie", Role::Viewer));
    act(&mut team, 1, add(4, "delta", Role::Viewer));
    for signer in [2, 3] {
        let refused = [
            add(5, "echo", Role::Viewer),
            OpKind::SetRole {
                device: peer(4),
                role: Role::Admin,
            },
            OpKind::Revoke { device: peer(4) },
            OpKind::Rename {
                device: peer(4),
                name: "x".into(),
            },
        ];
        for kind in refused {
            assert_eq!(
                team.sign(&keypair(signer), NOW, kind.clone()),
                Err(TeamError::NotAdmin {
                    device: peer(signer)
                })
            );
            // Forged past `sign`, the fold ignores it.
            let mut probe = team.clone();
            assert!(probe.merge([forge(&team, signer, 10, kind)]));
            assert_eq!(probe.members(), team.members());
            assert_eq!(probe.rejected(), team.rejected() + 1);
        }
    }
    // Anyone may rename themselves.
    act(
        &mut team,
        3,
        OpKind::Rename {
            device: peer(3),
            name: "  carol ".into(),
        },
    );
    assert_eq!(team.find("CAROL").map(|m| m.device), Ok(peer(3)));
    // An unknown device can do nothing.
    assert_eq!(
        team.sign(&keypair(9), NOW, add(9, "me", Role::Admin)),
        Err(TeamError::UnknownDevice(peer(9)))
    );
    act(
        &mut team,
        1,
        OpKind::SetRole {
            device: peer(2),
            role: Role::Admin,
        },
    );
    act(&mut team, 2, add(5, "echo", Role::Viewer));
    assert_eq!(team.role_of(&peer(5)), Some(Role::Viewer));
    assert_eq!(
        team.member(&peer(5)).and_then(|m| m.added_by),
        Some(peer(2))
    );
}

#[test]
fn revocation_is_final() {
    let mut team = founded();
    act(&mut team, 1, add(2, "bravo", Role::Admin));
    act(&mut team, 1, add(3, "charlie", Role::Editor));
    act(&mut team, 1, OpKind::Revoke { device: peer(2) });
    assert!(team.is_revoked(&peer(2)));
    assert_eq!(team.role_of(&peer(2)), None);
    assert_eq!(
        team.member(&peer(2)).and_then(|m| m.revoked).map(|r| r.by),
        Some(peer(1))
    );
    assert_eq!(
        team.sign(&keypair(1), NOW, add(2, "bravo", Role::Admin)),
        Err(TeamError::Revoked(peer(2)))
    );
    assert_eq!(
        team.sign(&keypair(2), NOW, add(4, "delta", Role::Admin)),
        Err(TeamError::Revoked(peer(2)))
    );
    // The revoked admin's later ops are ignored, even with a high Lamport time.
    let later = team.max_lamport() + 5;
    let before = team.members();
    for kind in [
        add(4, "delta", Role::Admin),
        OpKind::Revoke { device: peer(1) },
        OpKind::Rename {
            device: peer(2),
            name: "back".into(),
        },
    ] {
        team.merge([forge(&team, 2, later, kind)]);
    }
    assert_eq!(team.members(), before);
    assert_eq!(team.role_of(&peer(4)), None);
}

#[test]
fn the_last_admin_stays() {
    let mut team = founded();
    act(&mut team, 1, add(2, "bravo", Role::Editor));
    for kind in [
        OpKind::Revoke { device: peer(1) },
        OpKind::SetRole {
            device: peer(1),
            role: Role::Editor,
        },
        add(1, "alpha", Role::Viewer),
    ] {
        assert_eq!(team.sign(&keypair(1), NOW, kind), Err(TeamError::LastAdmin));
    }
}

#[test]
fn concurrent_mutual_revocations_converge() {
    let mut base = founded();
    act(&mut base, 1, add(2, "bravo", Role::Admin));
    act(&mut base, 1, add(3, "charlie", Role::Editor));
    // Both admins revoke each other without having seen the other's op: same Lamport time.
    let a_revokes_b = base
        .sign(&keypair(1), NOW, OpKind::Revoke { device: peer(2) })
        .expect("sign");
    let b_revokes_a = base
        .sign(&keypair(2), NOW, OpKind::Revoke { device: peer(1) })
        .expect("sign");
    assert_eq!(
        a_revokes_b.body().map(|b| b.lamport),
        b_revokes_a.body().map(|b| b.lamport)
    );
    let mut all = base.ops();
    all.push(a_revokes_b.clone());
    all.push(b_revokes_a.clone());
    let reference = Membership::from_ops(base.team_id(), all.clone());
    let mut rng = rng(3);
    for _ in 0..20 {
        all.shuffle(&mut rng);
        assert_eq!(Membership::from_ops(base.team_id(), all.clone()), reference);
    }
    let mut incremental = base.clone();
    incremental.merge([b_revokes_a.clone()]);
    incremental.merge([a_revokes_b.clone()]);
    assert_eq!(incremental, reference);
    // Exactly one of them survives, and it is the one whose op sorts first.
    let survivors: Vec<_> = [peer(1), peer(2)]
        .into_iter()
        .filter(|device| reference.role_of(device) == Some(Role::Admin))
        .collect();
    assert_eq!(survivors.len(), 1);
    let first = a_revokes_b.id().min(b_revokes_a.id());
    let expected = if first == a_revokes_b.id() {
        peer(1)
    } else {
        peer(2)
    };
    assert_eq!(survivors, [expected]);
    assert_eq!(reference.rejected(), 1);
}

#[test]
fn ops_of_other_teams_and_bad_signatures_are_rejected() {
    let mut team = founded();
    let other =
        Membership::create(&keypair(1), "Clinic", "alpha", NOW, &mut rng(2)).expect("create");
    assert_ne!(other.team_id(), team.team_id());
    // A second genesis, even by the founder, founds another team: nothing is learnt.
    assert!(!team.merge(other.ops()));
    assert_eq!(team.rejected(), 2);
    assert_eq!(team.ops().len(), 2);
    // A bad signature.
    let op = forge(&team, 1, 5, add(2, "bravo", Role::Editor));
    let mut signature = op.signature_bytes().to_vec();
    signature[10] ^= 1;
    assert!(!team.merge([SignedOp::from_parts(op.body_bytes().to_vec(), signature)]));
    assert_eq!(team.rejected(), 3);
    assert_eq!(team.role_of(&peer(2)), None);
    // Duplicates change nothing.
    assert!(!team.merge(team.ops()));
    assert!(!team.merge(other.ops()));
    assert_eq!(team.rejected(), 3);
}

#[test]
fn ops_waiting_for_their_cause_apply_once_it_arrives() {
    let mut team = founded();
    let make_admin = team
        .sign(&keypair(1), NOW, add(2, "bravo", Role::Admin))
        .expect("sign");
    let mut ahead = team.clone();
    ahead.merge([make_admin.clone()]);
    let adds_charlie = ahead
        .sign(&keypair(2), NOW, add(3, "charlie", Role::Viewer))
        .expect("sign");
    // The effect arrives before its cause: kept, ignored, then applied.
    assert!(team.merge([adds_charlie.clone()]));
    assert_eq!(team.role_of(&peer(3)), None);
    assert_eq!(team.known_ops().len(), 3);
    assert!(team.merge([make_admin]));
    assert_eq!(team.role_of(&peer(3)), Some(Role::Viewer));
    assert_eq!(team.rejected(), 0);
    // Without a genesis nothing applies, but ops are kept.
    let orphan = Membership::from_ops(team.team_id(), [adds_charlie]);
    assert!(!orphan.is_founded());
    assert_eq!(orphan.team_name(), "");
    assert!(orphan.members().is_empty());
    assert_eq!(orphan.known_ops().len(), 1);
}

#[test]
fn find_by_id_or_name() {
    let mut team = founded();
    act(&mut team, 1, add(2, "Laptop", Role::Editor));
    act(&mut team, 1, add(3, "laptop", Role::Editor));
    act(&mut team, 1, add(4, "desk", Role::Editor));
    assert_eq!(
        team.find(&peer(2).to_string()).map(|m| m.device),
        Ok(peer(2))
    );
    assert_eq!(team.find(" DESK ").map(|m| m.device), Ok(peer(4)));
    match team.find("laptop") {
        Err(TeamError::AmbiguousName { matches, .. }) => assert_eq!(matches.len(), 2),
        other => panic!("expected ambiguity, got {other:?}"),
    }
    assert!(matches!(
        team.find("nobody"),
        Err(TeamError::NoSuchMember(_))
    ));
    // A current member wins over a removed one with the same name.
    act(&mut team, 1, OpKind::Revoke { device: peer(2) });
    assert_eq!(team.find("laptop").map(|m| m.device), Ok(peer(3)));
    let names: Vec<String> = team.members().into_iter().map(|m| m.name).collect();
    assert_eq!(names, ["alpha", "desk", "Laptop", "laptop"]);
}

#[test]
fn sign_refuses_genesis_and_bad_names() {
    let team = founded();
    let genesis = OpKind::Genesis {
        name: "x".into(),
        nonce: [0; 16],
    };
    assert_eq!(
        team.sign(&keypair(1), NOW, genesis),
        Err(TeamError::GenesisNotAllowed)
    );
    assert!(matches!(
        team.sign(&keypair(1), NOW, add(2, "", Role::Editor)),
        Err(TeamError::BadName(_))
    ));
    assert!(matches!(
        Membership::create(&keypair(1), "a\u{0}b", "x", NOW, &mut rng(1)),
        Err(TeamError::BadName(_))
    ));
}

/// One op of a random history: (signer, lamport, kind, target, role, name). A rotation
/// (kind 4) goes to epoch 1, 1 or 2 by `role`, sealed to the signer and to the devices of
/// 1 to 5 whose bit is set in `target`.
type RawOp = (u8, u64, u8, u8, u8, u8);

fn role_of_index(index: u8) -> Role {
    Role::ALL[usize::from(index) % Role::ALL.len()]
}

/// A team with admins 1, 2, 3, editor 4 and viewer 5, and random ops signed without the
/// permission check, so they include concurrent and conflicting ones.
fn random_history(raw: &[RawOp]) -> (TeamId, Vec<SignedOp>) {
    let mut team = founded();
    act(&mut team, 1, add(2, "bravo", Role::Admin));
    act(&mut team, 1, add(3, "charlie", Role::Admin));
    act(&mut team, 1, add(4, "delta", Role::Editor));
    act(&mut team, 1, add(5, "echo", Role::Viewer));
    let base = team.max_lamport();
    let mut ops = team.ops();
    for &(signer, lamport, kind, target, role, name) in raw {
        let device = peer(target);
        let name = ["laptop", "desk", "phone"][usize::from(name) % 3].to_owned();
        let kind = match kind % 5 {
            4 => {
                let mut sealed: Vec<u8> = (1..=5).filter(|d| target & (1 << d) != 0).collect();
                sealed.push(signer);
                rotation(u64::from(role.max(1)), &sealed)
            }
            0 => OpKind::Add {
                device,
                name,
                role: role_of_index(role),
            },
            1 => OpKind::SetRole {
                device,
                role: role_of_index(role),
            },
            2 => OpKind::Rename { device, name },
            _ => OpKind::Revoke { device },
        };
        ops.push(forge(&team, signer, base + lamport, kind));
    }
    (team.team_id(), ops)
}

proptest! {
    #[test]
    fn fold_is_independent_of_order(
        raw in prop::collection::vec((1u8..=6, 1u64..=4, 0u8..5, 1u8..=127, 0u8..3, 0u8..3), 0..16),
        seed in any::<u64>(),
    ) {
        let (team, mut ops) = random_history(&raw);
        let reference = Membership::from_ops(team, ops.clone());
        let mut rng = rng(seed);
        ops.shuffle(&mut rng);
        prop_assert_eq!(&Membership::from_ops(team, ops.clone()), &reference);
        // Merged one by one, with duplicates, in yet another order.
        ops.shuffle(&mut rng);
        let mut incremental = Membership::from_ops(team, []);
        for op in ops.iter().chain(ops.iter().take(3)) {
            incremental.merge([op.clone()]);
        }
        prop_assert_eq!(&incremental, &reference);
        // The team never loses its last admin, and only members signed applied ops.
        prop_assert!(reference.members().iter().any(|m| m.is_current() && m.role == Role::Admin));
        prop_assert_eq!(reference.ops().len() + reference.rejected(), reference.known_ops().len());
        // Applied ops fold to the same membership on their own.
        let applied_only = Membership::from_ops(team, reference.ops());
        prop_assert_eq!(applied_only.members(), reference.members());
        prop_assert_eq!(applied_only.key_epoch(), reference.key_epoch());
        // One applied rotation per epoch, in order, sealed to its signer.
        let epochs: Vec<(u64, PeerId, Vec<PeerId>)> = reference
            .ops()
            .iter()
            .filter_map(|op| op.body().ok())
            .filter_map(|body| match body.kind {
                OpKind::RotateKey { epoch, sealed } => {
                    Some((epoch, body.by, sealed.into_keys().collect()))
                }
                _ => None,
            })
            .collect();
        prop_assert_eq!(epochs.len() as u64, reference.key_epoch());
        for (index, (epoch, by, recipients)) in epochs.iter().enumerate() {
            prop_assert_eq!(*epoch, index as u64 + 1);
            prop_assert!(recipients.contains(by));
            prop_assert_eq!(&reference.key_recipients(*epoch), recipients);
        }
    }
}

#[test]
fn rotations_move_the_key_epoch_one_by_one() {
    let mut team = founded();
    act(&mut team, 1, add(2, "bravo", Role::Editor));
    act(&mut team, 1, add(3, "charlie", Role::Viewer));
    assert_eq!(team.key_epoch(), 0);
    assert!(!team.needs_key_rotation());
    act(&mut team, 1, OpKind::Revoke { device: peer(3) });
    assert!(team.needs_key_rotation());
    act(&mut team, 1, rotation(1, &[1, 2]));
    assert_eq!(team.key_epoch(), 1);
    assert!(!team.needs_key_rotation());
    assert_eq!(team.key_recipients(1), sorted(&[peer(1), peer(2)]));
    assert!(team.sealed_key_for(&peer(2), 1).is_some());
    for (device, epoch) in [(3, 1), (2, 0), (2, 2)] {
        assert_eq!(team.sealed_key_for(&peer(device), epoch), None);
    }
    // The same epoch again, or one skipped, is refused.
    for epoch in [1, 3] {
        assert_eq!(
            team.sign(&keypair(1), NOW, rotation(epoch, &[1, 2])),
            Err(TeamError::WrongKeyEpoch {
                expected: 2,
                found: epoch
            })
        );
    }
    act(&mut team, 1, rotation(2, &[1]));
    assert_eq!(team.key_epoch(), 2);
    // Same ops, any order, same epochs.
    let reversed = Membership::from_ops(team.team_id(), team.ops().into_iter().rev());
    assert_eq!(reversed, team);
}

#[test]
fn rotations_seal_only_to_current_members_and_only_admins_rotate() {
    let mut team = founded();
    act(&mut team, 1, add(2, "bravo", Role::Editor));
    act(&mut team, 1, add(3, "charlie", Role::Viewer));
    act(&mut team, 1, OpKind::Revoke { device: peer(3) });
    let refused = [
        (1, rotation(1, &[1, 3]), TeamError::Revoked(peer(3))),
        (1, rotation(1, &[1, 9]), TeamError::UnknownDevice(peer(9))),
        (1, rotation(1, &[2]), TeamError::SignerNotRecipient),
        (
            2,
            rotation(1, &[1, 2]),
            TeamError::NotAdmin { device: peer(2) },
        ),
        (3, rotation(1, &[1, 3]), TeamError::Revoked(peer(3))),
    ];
    for (signer, kind, error) in refused {
        assert_eq!(team.sign(&keypair(signer), NOW, kind.clone()), Err(error));
        // Forged past `sign`, the fold ignores it.
        let mut probe = team.clone();
        assert!(probe.merge([forge(&team, signer, 10, kind)]));
        assert_eq!(probe.key_epoch(), 0);
        assert_eq!(probe.rejected(), team.rejected() + 1);
    }
    // Malformed boxes and oversized maps are refused whatever the state.
    let bad = BTreeMap::from([(peer(1), "not a box".to_owned())]);
    assert!(matches!(
        team.sign(
            &keypair(1),
            NOW,
            OpKind::RotateKey {
                epoch: 1,
                sealed: bad
            }
        ),
        Err(TeamError::MalformedOp(_))
    ));
    // As many keys as a team has members passes the shape check (then fails the fold's, as
    // these devices are no members); one more does not.
    let mut full: BTreeMap<PeerId, String> = (0..=u8::MAX)
        .map(|seed| (peer(seed), BASE64.encode(&[0; 80])))
        .collect();
    assert_eq!(full.len(), MAX_MEMBERS);
    assert!(matches!(
        team.sign(
            &keypair(1),
            NOW,
            OpKind::RotateKey {
                epoch: 1,
                sealed: full.clone()
            }
        ),
        Err(TeamError::UnknownDevice(_))
    ));
    let mut seed = [7u8; 32];
    seed[0] = 8;
    let extra = Keypair::ed25519_from_bytes(seed)
        .expect("any 32 bytes are a key")
        .public()
        .to_peer_id();
    full.insert(extra, BASE64.encode(&[0; 80]));
    assert_eq!(
        team.sign(
            &keypair(1),
            NOW,
            OpKind::RotateKey {
                epoch: 1,
                sealed: full
            }
        ),
        Err(TeamError::TooManyRecipients {
            count: MAX_MEMBERS + 1,
            max: MAX_MEMBERS
        })
    );
}

#[test]
fn a_full_rotation_fits_its_body_bound() {
    let team = founded();
    let sealed: BTreeMap<PeerId, String> = (0..MAX_MEMBERS)
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
            let device = Keypair::ed25519_from_bytes(seed)
                .expect("any 32 bytes are a key")
                .public()
                .to_peer_id();
            (device, BASE64.encode(&[0xFF; 80]))
        })
        .collect();
    let body = OpBody {
        team: Some(team.team_id()),
        lamport: u64::MAX,
        at_ms: u64::MAX,
        by: peer(1),
        kind: OpKind::RotateKey {
            epoch: u64::MAX,
            sealed,
        },
    };
    let op = SignedOp::sign(&keypair(1), &body).expect("a full rotation fits");
    assert!(op.body_bytes().len() > crate::MAX_OP_BODY);
    assert!(op.body_bytes().len() <= crate::MAX_ROTATE_KEY_BODY);
    assert_eq!(op.verify().map(|verified| verified == body), Ok(true));
}

#[test]
fn teams_are_capped_at_max_members() {
    let mut team = founded();
    let keys: Vec<Keypair> = (1..MAX_MEMBERS)
        .map(|i| {
            let mut seed = [0xEEu8; 32];
            seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
            Keypair::ed25519_from_bytes(seed).expect("any 32 bytes are a key")
        })
        .collect();
    let ops: Vec<SignedOp> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let kind = OpKind::Add {
                device: key.public().to_peer_id(),
                name: format!("device {i}"),
                role: Role::Viewer,
            };
            forge(&team, 1, 2 + i as u64, kind)
        })
        .collect();
    team.merge(ops);
    assert_eq!(team.members().len(), MAX_MEMBERS);
    assert_eq!(
        team.sign(&keypair(1), NOW, add(2, "one too many", Role::Viewer)),
        Err(TeamError::TeamFull(MAX_MEMBERS))
    );
    // Updating a member is still allowed; removing one makes room.
    act(&mut team, 1, add(1, "alpha", Role::Admin));
    let first = keys[0].public().to_peer_id();
    act(&mut team, 1, OpKind::Revoke { device: first });
    act(&mut team, 1, add(2, "bravo", Role::Viewer));
    assert_eq!(team.role_of(&peer(2)), Some(Role::Viewer));
}

#[test]
fn concurrent_rotations_fold_to_the_first() {
    let mut base = founded();
    act(&mut base, 1, add(2, "bravo", Role::Admin));
    act(&mut base, 1, add(3, "charlie", Role::Editor));
    let by_a = base
        .sign(&keypair(1), NOW, rotation(1, &[1, 2, 3]))
        .expect("sign");
    let by_b = base
        .sign(&keypair(2), NOW, rotation(1, &[2, 3]))
        .expect("sign");
    let mut all = base.ops();
    all.push(by_a.clone());
    all.push(by_b.clone());
    let reference = Membership::from_ops(base.team_id(), all.clone());
    let mut rng = rng(4);
    for _ in 0..20 {
        all.shuffle(&mut rng);
        assert_eq!(Membership::from_ops(base.team_id(), all.clone()), reference);
    }
    let mut incremental = base.clone();
    incremental.merge([by_b.clone()]);
    assert_eq!(incremental.key_epoch(), 1);
    incremental.merge([by_a.clone()]);
    assert_eq!(incremental, reference);
    assert_eq!(reference.key_epoch(), 1);
    assert_eq!(reference.rejected(), 1);
    let winner = if by_a.id() < by_b.id() { &by_a } else { &by_b };
    assert!(reference.ops().contains(winner));
    let expected: Vec<PeerId> = match winner.body().map(|body| body.kind) {
        Ok(OpKind::RotateKey { sealed, .. }) => sealed.into_keys().collect(),
        other => panic!("not a rotation: {other:?}"),
    };
    assert_eq!(reference.key_recipients(1), expected);
}

#[test]
fn a_rotation_sealed_to_a_concurrently_revoked_device_is_ignored() {
    let mut base = founded();
    act(&mut base, 1, add(2, "bravo", Role::Admin));
    act(&mut base, 1, add(3, "charlie", Role::Editor));
    // Admin 1 revokes charlie while admin 2, unaware, rotates to a key charlie gets.
    let revoke = base
        .sign(&keypair(1), NOW, OpKind::Revoke { device: peer(3) })
        .expect("sign");
    let leaky = forge(&base, 2, base.max_lamport() + 2, rotation(1, &[1, 2, 3]));
    let mut team = base.clone();
    team.merge([leaky.clone()]);
    assert_eq!(team.key_epoch(), 1);
    team.merge([revoke]);
    // The revocation sorts first: the key would reach charlie, so the rotation is void.
    assert_eq!(team.key_epoch(), 0);
    assert!(team.needs_key_rotation());
    act(&mut team, 1, rotation(1, &[1, 2]));
    assert_eq!(team.key_epoch(), 1);
    assert!(!team.needs_key_rotation());
    assert_eq!(team.key_recipients(1), sorted(&[peer(1), peer(2)]));
}
