use proptest::prelude::*;

use super::*;
use crate::test_support::{peer, rng};

fn code() -> InviteCode {
    InviteCode::new(
        InviteSecret::from_bytes(*b"secret-80b"),
        vec!["198.18.0.12:7410".parse().expect("addr")],
    )
    .expect("code")
}

fn request() -> JoinRequest {
    JoinRequest {
        device: peer(2),
        name: "laptop".into(),
    }
}

fn welcome() -> Reply {
    Reply::Welcome(Welcome {
        team_id: TeamId::from_bytes([1; 16]),
        team_name: "Clinic".into(),
        transport_key: [9; 32],
        key_epoch: 0,
        ops: Vec::new(),
        inviter: peer(1),
        inviter_addrs: vec!["/ip4/198.18.0.12/tcp/7411".into()],
        role: Role::Editor,
        name: "laptop".into(),
    })
}

#[test]
fn request_round_trips_and_names_its_invite() {
    let code = code();
    let frame = seal_request(&code, &request(), &mut rng(1)).expect("seal");
    assert_eq!(request_tag(&frame), Ok(code.tag()));
    assert_eq!(open_request(code.secret(), &frame), Ok(request()));
    // Fresh nonce each time.
    let again = seal_request(&code, &request(), &mut rng(2)).expect("seal");
    assert_ne!(frame, again);
}

#[test]
fn reply_round_trips() {
    let secret = code().secret().clone();
    for reply in [welcome(), Reply::Refused(Refusal::Expired)] {
        let frame = seal_reply(&secret, &reply, &mut rng(3)).expect("seal");
        assert_eq!(open_reply(&secret, &frame), Ok(reply));
    }
    let plain = plain_refusal(&Refusal::UnknownInvite);
    assert_eq!(
        open_reply(&InviteSecret::from_bytes([0; 10]), &plain),
        Ok(Reply::Refused(Refusal::UnknownInvite))
    );
}

#[test]
fn any_tampered_byte_or_wrong_secret_fails() {
    let code = code();
    let wrong = InviteSecret::from_bytes(*b"secret-80c");
    let request_frame = seal_request(&code, &request(), &mut rng(4)).expect("seal");
    for i in 0..request_frame.len() {
        let mut tampered = request_frame.clone();
        tampered[i] ^= 0x20;
        assert!(open_request(code.secret(), &tampered).is_err(), "byte {i}");
    }
    assert_eq!(
        open_request(&wrong, &request_frame),
        Err(EnrolError::Unauthenticated)
    );
    let reply_frame = seal_reply(code.secret(), &welcome(), &mut rng(5)).expect("seal");
    for i in 0..reply_frame.len() {
        let mut tampered = reply_frame.clone();
        tampered[i] ^= 0x01;
        assert!(open_reply(code.secret(), &tampered).is_err(), "byte {i}");
    }
    assert_eq!(
        open_reply(&wrong, &reply_frame),
        Err(EnrolError::Unauthenticated)
    );
}

#[test]
fn a_request_cannot_pass_for_a_reply() {
    let code = code();
    let request_frame = seal_request(&code, &request(), &mut rng(6)).expect("seal");
    let mut reflected = vec![SEALED_REPLY];
    reflected.extend_from_slice(&request_frame[TAG_LEN..]);
    assert_eq!(
        open_reply(code.secret(), &reflected),
        Err(EnrolError::Unauthenticated)
    );
}

#[test]
fn bounds_hold() {
    let secret = code().secret().clone();
    assert_eq!(
        open_reply(&secret, &vec![SEALED_REPLY; MAX_FRAME + 1]),
        Err(EnrolError::FrameTooLarge)
    );
    assert_eq!(open_reply(&secret, &[]), Err(EnrolError::Truncated));
    assert_eq!(open_reply(&secret, &[7]), Err(EnrolError::UnknownKind));
    assert_eq!(request_tag(&[1, 2, 3]), Err(EnrolError::Truncated));
    let huge = JoinRequest {
        device: peer(2),
        name: "x".repeat(MAX_FRAME),
    };
    assert_eq!(
        seal_request(&code(), &huge, &mut rng(7)),
        Err(EnrolError::FrameTooLarge)
    );
}

#[test]
fn refusals_speak_plainly() {
    assert_eq!(
        Refusal::Expired.to_string(),
        "this invite code has expired: ask an admin for a new one"
    );
    assert_eq!(
        Refusal::DeviceRemoved.to_string(),
        "this device was removed from the team and cannot join again"
    );
}

#[test]
fn welcome_debug_hides_the_key() {
    let Reply::Welcome(welcome) = welcome() else {
        unreachable!()
    };
    let debug = format!("{welcome:?}");
    assert!(!debug.contains(&hex::encode([9u8; 32])));
    assert!(!debug.contains("9, 9, 9"));
}

proptest! {
    #[test]
    fn garbage_never_panics(frame in prop::collection::vec(any::<u8>(), 0..512)) {
        let secret = code().secret().clone();
        let _ = request_tag(&frame);
        let _ = open_request(&secret, &frame);
        let _ = open_reply(&secret, &frame);
    }
}
