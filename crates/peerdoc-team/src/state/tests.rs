use data_encoding::BASE64;

use super::*;
use crate::test_support::{keypair, peer, rng};
use crate::{OpBody, Reply, open_reply, open_request, seal_reply, seal_request};

const NOW: u64 = 1_700_000_000_000;
const HOUR: u64 = 3_600_000;

fn team() -> TeamState {
    TeamState::create(&keypair(1), "Clinic", "reception", NOW, &mut rng(1)).expect("create")
}

fn invite(state: &mut TeamState, role: Role, uses: u32) -> (Invite, InviteCode) {
    state
        .new_invite(
            &keypair(1),
            role,
            None,
            Some(HOUR),
            uses,
            NOW,
            &mut rng(2),
            vec!["198.18.0.11:7410".parse().expect("addr")],
        )
        .expect("invite")
}

fn join(device: u8, name: &str) -> JoinRequest {
    JoinRequest {
        device: peer(device),
        name: name.into(),
    }
}

#[test]
fn invite_is_single_use_by_default_and_idempotent_for_its_device() {
    let mut state = team();
    let (invite, code) = invite(&mut state, Role::Editor, 1);
    assert_eq!(invite.tag, code.tag());
    let welcome = state
        .accept_join(&keypair(1), &code.tag(), &join(2, "laptop"), NOW)
        .expect("welcome");
    assert_eq!(
        (welcome.role, welcome.name.as_str()),
        (Role::Editor, "laptop")
    );
    assert_eq!(state.membership().role_of(&peer(2)), Some(Role::Editor));
    assert_eq!(state.invites(NOW)[0].1, InviteStatus::UsedUp);
    assert_eq!(state.invites(NOW)[0].0.used_by, [peer(2)]);
    // Another device is refused; the same device retrying gets the welcome again.
    assert_eq!(
        state.accept_join(&keypair(1), &code.tag(), &join(3, "desk"), NOW),
        Err(Refusal::UsedUp)
    );
    let again = state
        .accept_join(&keypair(1), &code.tag(), &join(2, "laptop"), NOW + 2 * HOUR)
        .expect("retry");
    assert_eq!(again, welcome);
    assert_eq!(state.membership().members().len(), 2);
}

#[test]
fn invite_expires_and_can_be_revoked() {
    let mut state = team();
    let (_, code) = invite(&mut state, Role::Viewer, 5);
    assert_eq!(
        state.accept_join(&keypair(1), &code.tag(), &join(2, "a"), NOW + HOUR),
        Err(Refusal::Expired)
    );
    assert_eq!(state.invites(NOW + HOUR)[0].1, InviteStatus::Expired);
    state.revoke_invite(&code.tag()).expect("revoke");
    assert_eq!(
        state.accept_join(&keypair(1), &code.tag(), &join(2, "a"), NOW),
        Err(Refusal::Revoked)
    );
    assert_eq!(state.invites(NOW)[0].1, InviteStatus::Revoked);
    let unknown = InviteTag::from_bytes([0; 8]);
    assert_eq!(
        state.accept_join(&keypair(1), &unknown, &join(2, "a"), NOW),
        Err(Refusal::UnknownInvite)
    );
    assert!(state.revoke_invite(&unknown).is_err());
}

#[test]
fn removed_devices_cannot_rejoin() {
    let mut state = team();
    let (_, code) = invite(&mut state, Role::Editor, 3);
    state
        .accept_join(&keypair(1), &code.tag(), &join(2, "laptop"), NOW)
        .expect("welcome");
    state
        .sign_and_merge(&keypair(1), NOW, OpKind::Revoke { device: peer(2) })
        .expect("revoke");
    assert_eq!(
        state.accept_join(&keypair(1), &code.tag(), &join(2, "laptop"), NOW),
        Err(Refusal::DeviceRemoved)
    );
}

#[test]
fn only_admins_invite_and_uses_are_bounded() {
    let mut state = team();
    let (_, code) = invite(&mut state, Role::Editor, 2);
    state
        .accept_join(&keypair(1), &code.tag(), &join(2, "laptop"), NOW)
        .expect("welcome");
    let as_editor = state.new_invite(
        &keypair(2),
        Role::Viewer,
        None,
        None,
        1,
        NOW,
        &mut rng(3),
        vec![],
    );
    assert_eq!(
        as_editor.err(),
        Some(TeamError::NotAdmin { device: peer(2) })
    );
    for uses in [0, MAX_INVITE_USES + 1] {
        let result = state.new_invite(
            &keypair(1),
            Role::Viewer,
            None,
            None,
            uses,
            NOW,
            &mut rng(3),
            vec![],
        );
        assert!(matches!(result, Err(TeamError::BadInviteUses { .. })));
    }
}

#[test]
fn invites_are_capped_dropping_inactive_ones_first() {
    let mut state = team();
    let (first, _) = invite(&mut state, Role::Viewer, 1);
    state.revoke_invite(&first.tag).expect("revoke");
    for i in 1..MAX_INVITES {
        let mut rng = rng(100 + i as u64);
        state
            .new_invite(
                &keypair(1),
                Role::Viewer,
                None,
                None,
                1,
                NOW,
                &mut rng,
                vec![],
            )
            .expect("room");
    }
    assert_eq!(state.invites(NOW).len(), MAX_INVITES);
    // The revoked one makes room; then all are active and the cap holds.
    state
        .new_invite(
            &keypair(1),
            Role::Viewer,
            None,
            None,
            1,
            NOW,
            &mut rng(7),
            vec![],
        )
        .expect("room");
    assert!(
        state
            .invites(NOW)
            .iter()
            .all(|(invite, _)| invite.tag != first.tag)
    );
    assert_eq!(
        state
            .new_invite(
                &keypair(1),
                Role::Viewer,
                None,
                None,
                1,
                NOW,
                &mut rng(8),
                vec![]
            )
            .err(),
        Some(TeamError::TooManyInvites)
    );
}

#[test]
fn names_are_fixed_by_the_invite_or_made_unique() {
    let mut state = team();
    let (_, named) = state
        .new_invite(
            &keypair(1),
            Role::Editor,
            Some(" front desk "),
            None,
            1,
            NOW,
            &mut rng(4),
            vec![],
        )
        .expect("invite");
    let welcome = state
        .accept_join(&keypair(1), &named.tag(), &join(2, "whatever"), NOW)
        .expect("welcome");
    assert_eq!(welcome.name, "front desk");
    let (_, open) = invite(&mut state, Role::Editor, 3);
    let welcome = state
        .accept_join(&keypair(1), &open.tag(), &join(3, "Front Desk\n"), NOW)
        .expect("welcome");
    assert_eq!(welcome.name, "Front Desk-2");
    let welcome = state
        .accept_join(&keypair(1), &open.tag(), &join(4, "\u{1}"), NOW)
        .expect("welcome");
    assert_eq!(welcome.name, "device");
}

#[test]
fn full_enrolment_gives_both_sides_the_same_membership() {
    let mut admin_side = team();
    let (_, code) = invite(&mut admin_side, Role::Viewer, 1);
    let code = InviteCode::parse(&code.to_string()).expect("parse");
    let frame = seal_request(&code, &join(2, "phone"), &mut rng(5)).expect("seal");
    let secret = admin_side
        .invite_secret(&code.tag())
        .cloned()
        .expect("secret");
    let request = open_request(&secret, &frame).expect("open");
    let welcome = admin_side
        .accept_join(&keypair(1), &code.tag(), &request, NOW)
        .expect("welcome");
    let reply = seal_reply(&secret, &Reply::Welcome(welcome), &mut rng(6)).expect("seal");
    let Ok(Reply::Welcome(welcome)) = open_reply(code.secret(), &reply) else {
        panic!("no welcome")
    };
    let joined = TeamState::from_welcome(welcome.clone(), &peer(2)).expect("join");
    assert_eq!(joined.membership(), admin_side.membership());
    assert_eq!(joined.device_name(), "phone");
    assert_eq!(joined.transport_key(), admin_side.transport_key());
    // A welcome that does not include this device is refused.
    assert_eq!(
        TeamState::from_welcome(welcome.clone(), &peer(3)).err(),
        Some(TeamError::NotWelcomed)
    );
    let mut wrong_role = welcome;
    wrong_role.role = Role::Admin;
    assert_eq!(
        TeamState::from_welcome(wrong_role, &peer(2)).err(),
        Some(TeamError::NotWelcomed)
    );
}

#[test]
fn serde_round_trip_and_debug_hides_secrets() {
    let mut state = team();
    let (invite, _) = invite(&mut state, Role::Editor, 1);
    let json = serde_json::to_string_pretty(&state).expect("json");
    assert!(json.contains("\"team_id\"") && json.contains("\"transport_key\""));
    let back: TeamState = serde_json::from_str(&json).expect("parse");
    assert_eq!(back, state);

    state
        .rotate_key(&keypair(1), NOW, &mut rng(9))
        .expect("rotate");
    let json = serde_json::to_string_pretty(&state).expect("json");
    let back: TeamState = serde_json::from_str(&json).expect("parse");
    assert_eq!(back, state);
    let debug = format!("{state:?}");
    for key in state.accepted_keys() {
        assert!(!debug.contains(&hex::encode(key)), "{debug}");
    }
    let key = hex::encode(state.transport_key());
    let secret = hex::encode(invite.secret.as_bytes());
    assert!(!debug.contains(&key), "{debug}");
    assert!(!debug.contains(&secret), "{debug}");
    assert!(
        !debug.contains(&format!("{:?}", state.transport_key())),
        "{debug}"
    );
    assert!(
        !debug.contains(&format!("{:?}", invite.secret.as_bytes())),
        "{debug}"
    );
    assert!(debug.contains("<redacted>"));

    // A file whose ops lack the genesis is refused.
    let mut value: serde_json::Value = serde_json::from_str(&json).expect("value");
    value["ops"] = serde_json::json!([]);
    assert!(serde_json::from_value::<TeamState>(value).is_err());
}

/// A team founded by key 1 with members joined through invites: (device seed, role).
/// Returns the admin's state and each member's, as welcomed.
fn team_with(members: &[(u8, Role)]) -> (TeamState, Vec<(u8, TeamState)>) {
    let mut admin = team();
    let mut joined = Vec::new();
    for (i, &(device, role)) in members.iter().enumerate() {
        let (_, code) = admin
            .new_invite(
                &keypair(1),
                role,
                None,
                None,
                1,
                NOW,
                &mut rng(20 + i as u64),
                vec![],
            )
            .expect("invite");
        let welcome = admin
            .accept_join(&keypair(1), &code.tag(), &join(device, "member"), NOW)
            .expect("welcome");
        joined.push((
            device,
            TeamState::from_welcome(welcome, &peer(device)).expect("join"),
        ));
    }
    // Everyone catches up with the adds that came after their own.
    for (_, state) in &mut joined {
        state.merge(admin.ops());
    }
    (admin, joined)
}

#[test]
fn a_revoked_device_cannot_open_the_rotated_key_and_every_member_can() {
    let (mut admin, mut members) = team_with(&[
        (2, Role::Editor),
        (3, Role::Viewer),
        (4, Role::Editor),
        (5, Role::Admin),
    ]);
    let old_key = *admin.transport_key();
    admin
        .sign_and_merge(&keypair(1), NOW, OpKind::Revoke { device: peer(4) })
        .expect("revoke");
    assert!(admin.membership().needs_key_rotation());
    let rotation = admin
        .rotate_key(&keypair(1), NOW, &mut rng(9))
        .expect("rotate");
    assert!(!admin.membership().needs_key_rotation());
    assert_eq!(admin.current_epoch(), 1);
    let new_key = admin
        .current_key()
        .expect("the rotating admin holds the key");
    assert_ne!(new_key, old_key);
    assert_eq!(admin.transport_key(), &new_key);
    assert_eq!(admin.accepted_keys(), [new_key, old_key]);
    let mut recipients = admin.membership().key_recipients(1);
    recipients.sort();
    let mut expected = vec![peer(1), peer(2), peer(3), peer(5)];
    expected.sort();
    assert_eq!(recipients, expected);

    for (device, state) in &mut members {
        assert!(state.merge(admin.ops()));
        assert_eq!(state.current_epoch(), 1);
        if *device == 4 {
            // The revoked device learns that the key changed, never the key.
            assert!(!state.learn_keys(&keypair(4)));
            assert_eq!(state.current_key(), None);
            assert_eq!(state.transport_key(), &old_key);
            assert!(!state.accepted_keys().contains(&new_key));
        } else {
            // The viewer (3) included: every current member gets the key.
            assert!(state.learn_keys(&keypair(*device)), "device {device}");
            assert_eq!(state.current_key(), Some(new_key));
            assert_eq!(state.transport_key(), &new_key);
            assert_eq!(state.accepted_keys(), [new_key, old_key]);
            // Learning again changes nothing.
            assert!(!state.learn_keys(&keypair(*device)));
        }
    }
    // No box in the rotation opens for the revoked device, nor for a stranger.
    let Ok(OpKind::RotateKey { epoch, sealed }) = rotation.body().map(|body| body.kind) else {
        panic!("not a rotation");
    };
    for boxed in sealed.values() {
        for outsider in [4, 9] {
            assert_eq!(
                sealed_key::open(boxed, &keypair(outsider), admin.team_id(), epoch),
                Err(TeamError::SealedKeyInvalid)
            );
        }
    }
    // A stranger holding the ops learns nothing either.
    let mut stranger = admin.clone();
    assert!(!stranger.learn_keys(&keypair(9)));
}

#[test]
fn a_member_offline_during_the_rotation_learns_the_key_from_any_member() {
    let (mut admin, mut members) =
        team_with(&[(2, Role::Editor), (3, Role::Viewer), (4, Role::Viewer)]);
    let old_key = *admin.transport_key();
    admin
        .sign_and_merge(&keypair(1), NOW, OpKind::Revoke { device: peer(4) })
        .expect("revoke");
    admin
        .rotate_key(&keypair(1), NOW, &mut rng(9))
        .expect("rotate");
    let new_key = admin.current_key().expect("key");
    let [(_, online), (_, offline), _] = members.as_mut_slice() else {
        panic!("three members");
    };
    online.merge(admin.ops());
    online.learn_keys(&keypair(2));
    // While offline, the member dials with the old key, which members still accept.
    assert_eq!(offline.current_epoch(), 0);
    assert_eq!(offline.transport_key(), &old_key);
    assert!(online.accepted_keys().contains(&old_key));
    // It meets the online member (not the admin), merges its ops and learns the key.
    assert!(offline.merge(online.ops()));
    assert_eq!(offline.current_key(), None);
    assert_eq!(offline.transport_key(), &old_key);
    assert!(offline.learn_keys(&keypair(3)));
    assert_eq!(offline.current_key(), Some(new_key));
    // Saved and loaded, the keys stay.
    let json = serde_json::to_string(&*offline).expect("json");
    let back: TeamState = serde_json::from_str(&json).expect("parse");
    assert_eq!(&back, &*offline);
    assert_eq!(back.accepted_keys(), [new_key, old_key]);
}

#[test]
fn accepted_keys_are_the_newest_epochs_held() {
    let (mut admin, _) = team_with(&[(2, Role::Editor)]);
    let mut keys = vec![*admin.transport_key()];
    for _ in 0..5 {
        admin
            .rotate_key(&keypair(1), NOW, &mut rng(30 + keys.len() as u64))
            .expect("rotate");
        keys.push(admin.current_key().expect("key"));
    }
    assert_eq!(admin.current_epoch(), 5);
    let newest: Vec<[u8; 32]> = keys.iter().rev().take(MAX_ACCEPTED_KEYS).copied().collect();
    assert_eq!(admin.accepted_keys(), newest);
    // A member that joins now gets only the current key.
    let mut joiner = admin.clone();
    let (_, code) = invite(&mut joiner, Role::Viewer, 1);
    let welcome = joiner
        .accept_join(&keypair(1), &code.tag(), &join(6, "late"), NOW)
        .expect("welcome");
    let late = TeamState::from_welcome(welcome, &peer(6)).expect("join");
    assert_eq!(late.accepted_keys(), [keys[5]]);
}

#[test]
fn only_admins_rotate() {
    let (mut admin, mut members) = team_with(&[(2, Role::Editor)]);
    let (_, editor) = &mut members[0];
    assert_eq!(
        editor.rotate_key(&keypair(2), NOW, &mut rng(9)).err(),
        Some(TeamError::NotAdmin { device: peer(2) })
    );
    assert_eq!(
        admin.rotate_key(&keypair(9), NOW, &mut rng(9)).err(),
        Some(TeamError::UnknownDevice(peer(9)))
    );
    assert_eq!(editor.current_epoch(), 0);
}

#[test]
fn concurrent_rotations_by_two_admins_settle_on_one_key_everywhere() {
    let (admin_a, mut members) = team_with(&[(2, Role::Admin), (3, Role::Viewer)]);
    let mut a = admin_a;
    let [(_, b), (_, viewer)] = members.as_mut_slice() else {
        panic!("two members");
    };
    let op_a = a
        .rotate_key(&keypair(1), NOW, &mut rng(41))
        .expect("rotate");
    let op_b = b
        .rotate_key(&keypair(2), NOW, &mut rng(42))
        .expect("rotate");
    let key_a = a.current_key().expect("key");
    let key_b = b.current_key().expect("key");
    assert_ne!(key_a, key_b);
    let winner = if op_a.id() < op_b.id() { key_a } else { key_b };
    // The viewer sees them in either order.
    viewer.merge([op_b.clone()]);
    viewer.learn_keys(&keypair(3));
    assert_eq!(viewer.current_key(), Some(key_b));
    viewer.merge([op_a.clone()]);
    assert_eq!(viewer.learn_keys(&keypair(3)), winner != key_b);
    assert_eq!(viewer.current_key(), Some(winner));
    // Each admin learns the other's op; the loser's key gives way to the winner's.
    a.merge([op_b]);
    b.merge([op_a]);
    a.learn_keys(&keypair(1));
    b.learn_keys(&keypair(2));
    assert_eq!(a.current_key(), Some(winner));
    assert_eq!(b.current_key(), Some(winner));
    assert_eq!(a.membership(), b.membership());
    assert_eq!(a.current_epoch(), 1);
}

#[test]
fn a_tampered_sealed_key_is_skipped_without_panicking() {
    let (mut admin, mut members) = team_with(&[(2, Role::Editor)]);
    admin
        .rotate_key(&keypair(1), NOW, &mut rng(9))
        .expect("rotate");
    let good = admin
        .membership()
        .sealed_key_for(&peer(2), 1)
        .expect("sealed")
        .to_owned();
    // An admin signs a rotation whose box for device 2 was altered (a flipped bit keeps it
    // well formed, so the fold applies it; only opening finds out).
    let mut bytes = BASE64.decode(good.as_bytes()).expect("base64");
    bytes[40] ^= 0x04;
    let own = admin
        .membership()
        .sealed_key_for(&peer(1), 1)
        .expect("sealed")
        .to_owned();
    let body = OpBody {
        team: Some(admin.team_id()),
        lamport: admin.membership().max_lamport() + 1,
        at_ms: NOW,
        by: peer(1),
        kind: OpKind::RotateKey {
            epoch: 2,
            sealed: BTreeMap::from([(peer(1), own), (peer(2), BASE64.encode(&bytes))]),
        },
    };
    let forged = SignedOp::sign(&keypair(1), &body).expect("sign");
    let (_, member) = &mut members[0];
    member.merge(admin.ops());
    member.merge([forged]);
    assert_eq!(member.current_epoch(), 2);
    assert!(!member.learn_keys(&keypair(2)) || member.current_key().is_none());
    assert_eq!(member.current_key(), None);
    // The epoch-1 key it could open is what it dials with.
    assert_eq!(member.transport_key(), &admin.keys[&1]);
}

#[test]
fn accept_join_after_a_rotation_hands_out_the_current_key() {
    let mut state = team();
    state
        .rotate_key(&keypair(1), NOW, &mut rng(9))
        .expect("rotate");
    state
        .rotate_key(&keypair(1), NOW, &mut rng(10))
        .expect("rotate");
    let (_, code) = invite(&mut state, Role::Viewer, 1);
    let welcome = state
        .accept_join(&keypair(1), &code.tag(), &join(2, "phone"), NOW)
        .expect("welcome");
    assert_eq!(welcome.key_epoch, 2);
    assert_eq!(Some(welcome.transport_key), state.current_key());
    let debug = format!("{welcome:?}");
    assert!(
        !debug.contains(&hex::encode(welcome.transport_key)),
        "{debug}"
    );
    let mut joined = TeamState::from_welcome(welcome.clone(), &peer(2)).expect("join");
    assert_eq!(joined.current_epoch(), 2);
    assert_eq!(joined.current_key(), state.current_key());
    assert_eq!(joined.transport_key(), state.transport_key());
    // Older keys were not sealed to the newcomer: nothing more to learn.
    assert!(!joined.learn_keys(&keypair(2)));
    assert_eq!(joined.accepted_keys().len(), 1);
    // A welcome whose key is for an epoch its ops do not reach is refused.
    let mut ahead = welcome;
    ahead.key_epoch = 3;
    assert!(matches!(
        TeamState::from_welcome(ahead, &peer(2)),
        Err(TeamError::InconsistentState(_))
    ));
}

/// A `team.json` written before key rotation: a founder (key 1), an editor (key 2) who
/// joined by invite, one invite, and no `keys`.
const TEAM_JSON_BEFORE_ROTATION: &str = r#"{"team_id":"b6faf3c82c0e9b7349c4cf73c1c497ce","name":"Clinic","transport_key":"3e077b0a96bef58ba7760779e544546e000efec87c5749ec1157912e0e171f60","device_name":"reception","ops":[{"body":"eyJ0ZWFtIjpudWxsLCJsYW1wb3J0IjowLCJhdF9tcyI6MTcwMDAwMDAwMDAwMCwiYnkiOiIxMkQzS29vV0s5OVZvVnhORTdYenlCd1hFelc3eGhLN0dwdjg1cjlGM1YzZnlLU1VLUEg1Iiwia2luZCI6eyJvcCI6ImdlbmVzaXMiLCJuYW1lIjoiQ2xpbmljIiwibm9uY2UiOiI5YTM3NDQ1MDQ1NjA2MzllYzY3MGI3YTE3ZDQ5MmIyNyJ9fQ==","sig":"zX07R7EcejPAtwYyw4oU8yzIWPiEY3TIKJF3GytBvzzrzSJqSG/o3eSv6SYZ4Q+9NuCT38yV/GPy6RfdCc0cDg=="},{"body":"eyJ0ZWFtIjoiYjZmYWYzYzgyYzBlOWI3MzQ5YzRjZjczYzFjNDk3Y2UiLCJsYW1wb3J0IjoxLCJhdF9tcyI6MTcwMDAwMDAwMDAwMCwiYnkiOiIxMkQzS29vV0s5OVZvVnhORTdYenlCd1hFelc3eGhLN0dwdjg1cjlGM1YzZnlLU1VLUEg1Iiwia2luZCI6eyJvcCI6ImFkZCIsImRldmljZSI6IjEyRDNLb29XSzk5Vm9WeE5FN1h6eUJ3WEV6Vzd4aEs3R3B2ODVyOUYzVjNmeUtTVUtQSDUiLCJuYW1lIjoicmVjZXB0aW9uIiwicm9sZSI6ImFkbWluIn19","sig":"LSBVmXdrMSxuSxvYhtO8Zag/9r5G76KnajiVhnPUeqfkKzj3YJEf5CMK600TYTTHhUn4IGfXl7xZ8Komiq2KAw=="},{"body":"eyJ0ZWFtIjoiYjZmYWYzYzgyYzBlOWI3MzQ5YzRjZjczYzFjNDk3Y2UiLCJsYW1wb3J0IjoyLCJhdF9tcyI6MTcwMDAwMDAwMDAwMCwiYnkiOiIxMkQzS29vV0s5OVZvVnhORTdYenlCd1hFelc3eGhLN0dwdjg1cjlGM1YzZnlLU1VLUEg1Iiwia2luZCI6eyJvcCI6ImFkZCIsImRldmljZSI6IjEyRDNLb29XSldvYXFaaERhb0VGc2hGN1JoMWJwWTlvaGloRmh6Y1c2ZDY5THIyTkFTdXEiLCJuYW1lIjoibGFwdG9wIiwicm9sZSI6ImVkaXRvciJ9fQ==","sig":"EcqHDjZHNxNGkcXyC6aw0JFab5ZI8LP8M7JV/hb/kxh6emOCDdszUIpljBKFdpoV84ibZMIxPXxFEWJF3PfOAQ=="}],"invites":[{"tag":"9fb56c12b9cd6517","secret":"8e0bb7534fcf4f12ac74","role":"editor","name":null,"created_ms":1700000000000,"expires_ms":1700003600000,"uses_left":1,"used_by":["12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq"],"revoked":false,"created_by":"12D3KooWK99VoVxNE7XzyBwXEzW7xhK7Gpv85r9F3V3fyKSUKPH5"}]}"#;

#[test]
fn team_json_from_before_rotation_loads_as_epoch_zero() {
    let mut state: TeamState = serde_json::from_str(TEAM_JSON_BEFORE_ROTATION).expect("load");
    let key: [u8; 32] =
        hex::decode("3e077b0a96bef58ba7760779e544546e000efec87c5749ec1157912e0e171f60")
            .expect("hex")
            .try_into()
            .expect("32 bytes");
    assert_eq!(state.transport_key(), &key);
    assert_eq!(state.current_epoch(), 0);
    assert_eq!(state.current_key(), Some(key));
    assert_eq!(state.accepted_keys(), [key]);
    assert_eq!(state.membership().role_of(&peer(2)), Some(Role::Editor));
    assert_eq!(state.invites(NOW).len(), 1);
    // Saved again, it gains `keys` and still names the key to dial in `transport_key`.
    let json: serde_json::Value = serde_json::to_value(&state).expect("json");
    assert_eq!(json["keys"]["0"], hex::encode(key));
    assert_eq!(json["transport_key"], hex::encode(key));
    // And it rotates like any team.
    state
        .rotate_key(&keypair(1), NOW, &mut rng(9))
        .expect("rotate");
    let json: serde_json::Value = serde_json::to_value(&state).expect("json");
    let new_key = state.current_key().expect("key");
    assert_eq!(json["keys"]["1"], hex::encode(new_key));
    assert_eq!(json["transport_key"], hex::encode(new_key));
    let back: TeamState = serde_json::from_value(json).expect("parse");
    assert_eq!(back, state);
}
