//! The fuzz targets for this crate's decoders of untrusted input, replayed on stable Rust:
//! invite codes (typed, pasted or scanned), enrolment frames (from whoever dials the
//! inviter, or answers the joiner) and entries of the membership document (written by
//! any member). Every committed corpus file under `fuzz/corpus/<target>/`, then seeded
//! mutants of them, go through the checks the fuzz targets run (`fuzz/checks/`). CI runs
//! this; cargo-fuzz is for longer hunts by hand (`docs/protocol.md`, "Fuzzing").
//!
//! `cargo test -p peerdoc-team --test fuzz_corpus -- --ignored write_seed_corpus`
//! rewrites the generated seeds from a seeded team, so they come out the same each time.

#[path = "../../../fuzz/checks/corpus.rs"]
mod corpus;
#[path = "../../../fuzz/checks/enrol_frame.rs"]
mod enrol_frame;
#[path = "../../../fuzz/checks/invite_code.rs"]
mod invite_code;
#[path = "../../../fuzz/checks/team_entry.rs"]
mod team_entry;

use std::net::SocketAddr;

use corpus::{MUTANTS, check_corpus, check_mutants, write_seeds};
use libp2p_identity::Keypair;
use peerdoc_team::{
    AddressBody, InviteCode, InviteSecret, JoinRequest, MAX_INVITE_ADDRS, OpKind, Refusal, Reply,
    Role, SignedAddresses, SignedOp, TeamId, TeamState, open_reply, open_request, plain_refusal,
    request_tag, seal_reply, seal_request,
};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use sha2::{Digest, Sha256};

#[test]
fn invite_code_corpus() {
    assert!(check_corpus("invite_code", invite_code::check) >= 5);
}

#[test]
fn invite_code_mutants() {
    check_mutants("invite_code", invite_code::check, MUTANTS);
}

#[test]
fn enrol_frame_corpus() {
    assert!(check_corpus("enrol_frame", enrol_frame::check) >= 5);
}

#[test]
fn enrol_frame_mutants() {
    check_mutants("enrol_frame", enrol_frame::check, MUTANTS);
}

#[test]
fn team_entry_corpus() {
    assert!(check_corpus("team_entry", team_entry::check) >= 5);
}

#[test]
fn team_entry_mutants() {
    check_mutants("team_entry", team_entry::check, MUTANTS);
}

/// The seeds must stay what their names say, or the fuzzer starts from less than it
/// seems: valid ones decode (and signed ones verify), malformed ones do not.
#[test]
fn seeds_are_what_their_names_say() {
    for target in ["invite_code", "enrol_frame", "team_entry"] {
        for (name, bytes) in corpus::seeds(target) {
            if name.starts_with("bad-") {
                assert!(!decodes(target, &bytes), "{target}/{name} decodes");
            } else if name.starts_with("ok-") {
                assert!(decodes(target, &bytes), "{target}/{name} does not decode");
            }
        }
    }
}

/// Whether `bytes` get through `target`'s decoders (signed entries: and verify).
fn decodes(target: &str, bytes: &[u8]) -> bool {
    let secret = InviteSecret::from_bytes(enrol_frame::SEED_SECRET);
    let team = TeamId::from_bytes(team_entry::SEED_TEAM);
    match target {
        "invite_code" => {
            InviteCode::from_bytes(bytes).is_ok()
                || std::str::from_utf8(bytes).is_ok_and(|text| InviteCode::parse(text).is_ok())
        }
        "enrol_frame" => {
            open_request(&secret, bytes).is_ok()
                || open_reply(&secret, bytes).is_ok()
                || serde_json::from_slice::<JoinRequest>(bytes).is_ok()
                || serde_json::from_slice::<Reply>(bytes).is_ok()
        }
        "team_entry" => {
            serde_json::from_slice::<SignedOp>(bytes).is_ok_and(|op| op.verify().is_ok())
                || serde_json::from_slice::<SignedAddresses>(bytes)
                    .is_ok_and(|record| record.verify(&team).is_ok())
        }
        _ => unreachable!("no target {target}"),
    }
}

#[test]
#[ignore = "writes fuzz/corpus/: run by hand to regenerate the seeds"]
fn write_seed_corpus() {
    let mut world = World::new();
    write_seeds("invite_code", &invite_seeds());
    write_seeds("enrol_frame", &enrol_seeds(&mut world));
    write_seeds("team_entry", &entry_seeds(&mut world));
}

/// A seeded team with an admin and a joining laptop: the same bytes on every run.
struct World {
    rng: ChaCha20Rng,
    now: u64,
    admin: Keypair,
    laptop: Keypair,
    team: TeamState,
}

impl World {
    fn new() -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let now = 1_700_000_000_000;
        let admin = Keypair::ed25519_from_bytes([1; 32]).expect("key");
        let laptop = Keypair::ed25519_from_bytes([2; 32]).expect("key");
        let team = TeamState::create(&admin, "Clinic", "reception", now, &mut rng).expect("team");
        assert_eq!(
            team.team_id().as_bytes(),
            &team_entry::SEED_TEAM,
            "the seed team changed: set SEED_TEAM in fuzz/checks/team_entry.rs to {}",
            team.team_id()
        );
        Self {
            rng,
            now,
            admin,
            laptop,
            team,
        }
    }
}

fn addrs(text: &[&str]) -> Vec<SocketAddr> {
    text.iter().map(|a| a.parse().expect("address")).collect()
}

/// Codes as text (as printed, and as typed) and in binary, and codes that must not parse.
fn invite_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let secret = InviteSecret::from_bytes(*b"0123456789");
    let code = |list: &[&str]| InviteCode::new(secret.clone(), addrs(list)).expect("code");
    let one = code(&["198.18.0.20:7410"]);
    let mixed = code(&[
        "198.18.0.20:7410",
        "[2001:db8::7]:7410",
        "[::ffff:198.18.0.21]:1",
    ]);
    let six = vec!["[2001:db8::1]:65535"; MAX_INVITE_ADDRS];
    let full = code(&six);
    let text = one.to_string();
    let mut bad_checksum = text.clone().into_bytes();
    let last = bad_checksum.len() - 1;
    bad_checksum[last] = if bad_checksum[last] == b'0' {
        b'1'
    } else {
        b'0'
    };
    let mut version_2 = one.to_bytes();
    version_2.truncate(version_2.len() - 2);
    version_2[0] = 2;
    let sum = Sha256::digest(&version_2);
    version_2.extend_from_slice(&sum[..2]);
    vec![
        ("ok-text", text.clone().into_bytes()),
        (
            "ok-text-typed",
            text.to_lowercase()
                .replace('-', " ")
                .replace('0', "o")
                .into_bytes(),
        ),
        ("ok-text-no-address", code(&[]).to_string().into_bytes()),
        ("ok-text-mixed", mixed.to_string().into_bytes()),
        ("ok-text-six-ipv6", full.to_string().into_bytes()),
        ("ok-binary", one.to_bytes()),
        ("ok-binary-mixed", mixed.to_bytes()),
        ("bad-empty", Vec::new()),
        ("bad-text-checksum", bad_checksum),
        ("bad-text-letter-u", text.replacen('0', "U", 2).into_bytes()),
        (
            "bad-text-truncated",
            text.as_bytes()[..text.len() - 5].to_vec(),
        ),
        ("bad-binary-version-2", version_2),
        ("bad-binary-truncated", one.to_bytes()[..10].to_vec()),
    ]
}

/// Frames sealed under the check's secret (`SEED_SECRET`), plain refusals, the JSON a
/// holder of the code could seal, and frames that must not open.
fn enrol_seeds(world: &mut World) -> Vec<(&'static str, Vec<u8>)> {
    let secret = InviteSecret::from_bytes(enrol_frame::SEED_SECRET);
    let code = InviteCode::new(secret.clone(), addrs(&["198.18.0.20:7410"])).expect("code");
    let request = JoinRequest {
        device: world.laptop.public().to_peer_id(),
        name: "laptop".into(),
    };
    // A real welcome, from the team's own invite, sealed again under the seed secret.
    let (_, team_code) = world
        .team
        .new_invite(
            &world.admin,
            Role::Editor,
            None,
            Some(3_600_000),
            1,
            world.now,
            &mut world.rng,
            Vec::new(),
        )
        .expect("invite");
    let welcome = world
        .team
        .accept_join(&world.admin, &team_code.tag(), &request, world.now + 1)
        .expect("welcome");
    let welcome = Reply::Welcome(welcome);
    let refused = Reply::Refused(Refusal::Expired);
    let rng = &mut world.rng;
    let request_frame = seal_request(&code, &request, rng).expect("seal");
    let welcome_frame = seal_reply(&secret, &welcome, rng).expect("seal");
    let mut altered = welcome_frame.clone();
    altered[40] ^= 1;
    let mut wrong_tag = request_frame.clone();
    wrong_tag[0] ^= 1;
    let seeds = vec![
        ("ok-request", request_frame.clone()),
        ("ok-reply-welcome", welcome_frame),
        (
            "ok-reply-refused",
            seal_reply(&secret, &refused, rng).expect("seal"),
        ),
        ("ok-plain-refusal", plain_refusal(&Refusal::UnknownInvite)),
        (
            "ok-plain-refusal-internal",
            plain_refusal(&Refusal::Internal("disk full".into())),
        ),
        (
            "ok-json-request",
            serde_json::to_vec(&request).expect("json"),
        ),
        (
            "ok-json-welcome",
            serde_json::to_vec(&welcome).expect("json"),
        ),
        (
            "ok-json-refused",
            serde_json::to_vec(&refused).expect("json"),
        ),
        ("bad-empty", Vec::new()),
        ("bad-request-truncated", request_frame[..7].to_vec()),
        ("bad-request-wrong-tag", wrong_tag),
        ("bad-reply-altered", altered),
        ("bad-reply-unknown-kind", vec![0x02; 48]),
        ("bad-plain-refusal-not-json", b"\x00{\"unknown".to_vec()),
    ];
    // The frames must open as they will in the check.
    assert!(request_tag(&request_frame).is_ok());
    assert_eq!(open_request(&secret, &request_frame), Ok(request));
    seeds
}

/// Every kind of op of a team's history, an address record, and entries that must not
/// verify.
fn entry_seeds(world: &mut World) -> Vec<(&'static str, Vec<u8>)> {
    let (admin, now) = (&world.admin, world.now);
    let phone = Keypair::ed25519_from_bytes([3; 32]).expect("key");
    let phone_id = phone.public().to_peer_id();
    let team = &mut world.team;
    let mut ops = vec![("ok-op-genesis", team.ops()[0].clone())];
    let add = OpKind::Add {
        device: phone_id,
        name: "phone".into(),
        role: Role::Viewer,
    };
    ops.push((
        "ok-op-add",
        team.sign_and_merge(admin, now, add).expect("op"),
    ));
    let set_role = OpKind::SetRole {
        device: phone_id,
        role: Role::Editor,
    };
    ops.push((
        "ok-op-set-role",
        team.sign_and_merge(admin, now, set_role).expect("op"),
    ));
    let rename = OpKind::Rename {
        device: phone_id,
        name: "old phone".into(),
    };
    ops.push((
        "ok-op-rename",
        team.sign_and_merge(admin, now, rename).expect("op"),
    ));
    let revoke = OpKind::Revoke { device: phone_id };
    ops.push((
        "ok-op-revoke",
        team.sign_and_merge(admin, now, revoke).expect("op"),
    ));
    let rotate = team.rotate_key(admin, now, &mut world.rng).expect("op");
    ops.push(("ok-op-rotate-key", rotate));

    let mut seeds: Vec<(&str, Vec<u8>)> = ops
        .iter()
        .map(|(name, op)| (*name, serde_json::to_vec(op).expect("json")))
        .collect();
    let laptop = world.laptop.public().to_peer_id();
    let body = AddressBody {
        team: team.team_id(),
        device: laptop,
        at_ms: now,
        addrs: vec![
            format!("/ip4/198.18.0.21/tcp/7400/p2p/{laptop}"),
            format!("/ip6/2001:db8::21/udp/7400/quic-v1/p2p/{laptop}"),
        ],
        hub: true,
    };
    let record = SignedAddresses::sign(&world.laptop, &body).expect("record");
    seeds.push(("ok-addresses", serde_json::to_vec(&record).expect("json")));

    let genesis = &seeds[0].1;
    let text = String::from_utf8(genesis.clone()).expect("JSON is text");
    let (body_b64, sig_b64) = {
        let value: serde_json::Value = serde_json::from_str(&text).expect("json");
        (
            value["body"].as_str().unwrap().to_owned(),
            value["sig"].as_str().unwrap().to_owned(),
        )
    };
    seeds.push((
        "bad-op-wrong-signature",
        format!(
            r#"{{"body":"{body_b64}","sig":"{}"}}"#,
            "A".repeat(86) + "=="
        )
        .into_bytes(),
    ));
    seeds.push((
        "bad-op-body-not-json",
        format!(r#"{{"body":"e30K3q2+7w==","sig":"{sig_b64}"}}"#).into_bytes(),
    ));
    seeds.push((
        "bad-op-not-base64",
        br#"{"body":"!!","sig":"AA=="}"#.to_vec(),
    ));
    seeds.push(("bad-empty", Vec::new()));
    seeds.push(("bad-not-json", b"\xff\x00garbage".to_vec()));
    seeds
}
