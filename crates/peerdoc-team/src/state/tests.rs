use super::*;
use crate::test_support::{keypair, peer, rng};
use crate::{Reply, open_reply, open_request, seal_reply, seal_request};

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
            vec!["10.0.0.1:7410".parse().expect("addr")],
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

    let debug = format!("{state:?}");
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
