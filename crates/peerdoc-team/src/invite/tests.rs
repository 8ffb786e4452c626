use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV6};

use proptest::prelude::*;

use super::*;

fn lan_code() -> InviteCode {
    let addr = SocketAddr::from((Ipv4Addr::new(192, 168, 1, 20), 7410));
    InviteCode::new(InviteSecret::from_bytes(*b"0123456789"), vec![addr]).expect("one address")
}

fn largest_code() -> InviteCode {
    let addrs = (0..MAX_INVITE_ADDRS as u16)
        .map(|i| SocketAddr::from((Ipv6Addr::new(0xfd00, i, 0, 0, 0, 0, 0, 1), 65535 - i)))
        .collect();
    InviteCode::new(InviteSecret::from_bytes([0xff; 10]), addrs).expect("six addresses")
}

#[test]
fn crockford_spec_is_valid() {
    assert_eq!(CROCKFORD.encode(&[0xff; 5]), "ZZZZZZZZ");
}

#[test]
fn text_is_short_and_round_trips() {
    let code = lan_code();
    let text = code.to_string();
    assert!(text.starts_with("PD-0"), "{text}");
    assert_eq!(text.len(), 45, "{text}");
    assert!(
        text.chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase() || c == '-')
    );
    assert_eq!(InviteCode::parse(&text), Ok(code.clone()));
    // Lower case, no prefix, spaces instead of dashes, look-alike letters.
    let sloppy = text
        .trim_start_matches("PD-")
        .replace('-', " ")
        .to_lowercase()
        .replace('0', "o")
        .replace('1', "l");
    assert_eq!(InviteCode::parse(&sloppy), Ok(code.clone()));
    assert_eq!(text.parse::<InviteCode>(), Ok(code));
}

#[test]
fn errors_say_what_to_do() {
    let text = lan_code().to_string();
    assert_eq!(
        InviteCode::parse(&format!("{text}U")),
        Err(InviteCodeError::BadCharacter('U'))
    );
    assert_eq!(
        InviteCode::parse(&text.replace('-', "_")),
        Err(InviteCodeError::BadCharacter('_'))
    );
    assert_eq!(
        InviteCode::parse(&text[..text.len() - 1]),
        Err(InviteCodeError::Truncated)
    );
    assert_eq!(InviteCode::parse(""), Err(InviteCodeError::Truncated));
    let mut typo = text.clone().into_bytes();
    typo[10] = if typo[10] == b'7' { b'8' } else { b'7' };
    let typo = String::from_utf8(typo).expect("ascii");
    assert_eq!(InviteCode::parse(&typo), Err(InviteCodeError::Checksum));
    assert_eq!(
        InviteCodeError::Checksum.to_string(),
        "the code has a typo: check it and type it again"
    );
    // A newer version, with a valid checksum.
    let mut bytes = lan_code().to_bytes();
    bytes[0] = 2;
    let len = bytes.len();
    let sum = checksum(&bytes[..len - 2]);
    bytes[len - 2..].copy_from_slice(&sum);
    assert_eq!(
        InviteCode::from_bytes(&bytes),
        Err(InviteCodeError::Version)
    );
    // Too many addresses.
    let seven = vec![SocketAddr::from(([10, 0, 0, 1], 1)); 7];
    assert_eq!(
        InviteCode::new(InviteSecret::from_bytes([0; 10]), seven).err(),
        Some(InviteCodeError::TooManyAddresses)
    );
}

#[test]
fn ipv6_and_no_address() {
    let v6 = SocketAddr::V6(SocketAddrV6::new(
        Ipv6Addr::new(0xfd12, 0x3456, 0, 0, 0, 0, 0, 0x42),
        7410,
        0,
        0,
    ));
    for addrs in [vec![], vec![v6], largest_code().addrs().to_vec()] {
        let code = InviteCode::new(InviteSecret::from_bytes([7; 10]), addrs).expect("bounded");
        assert_eq!(InviteCode::parse(&code.to_string()), Ok(code));
    }
}

#[test]
fn tag_hides_the_secret() {
    let code = lan_code();
    assert_eq!(code.tag(), code.secret().tag());
    assert_eq!(code.tag().to_string().len(), 16);
    assert_eq!(code.tag().to_string().parse::<InviteTag>(), Ok(code.tag()));
    let debug = format!("{code:?}");
    assert!(
        !debug.contains(&hex::encode(code.secret().as_bytes())),
        "{debug}"
    );
    assert!(!debug.contains("0123456789"), "{debug}");
    assert!(debug.contains("<redacted>"));
}

#[test]
fn largest_code_fits_in_a_qr() {
    let svg = largest_code().qr_svg();
    assert!(svg.starts_with("<?xml") && svg.contains("<svg"));
    let terminal = lan_code().qr_terminal();
    assert!(terminal.lines().count() > 10);
    assert!(terminal.contains('\u{2580}') || terminal.contains('\u{2584}'));
    // Alphanumeric mode keeps the common case small: version 3 is 29 modules wide, plus
    // the quiet zone, in half as many lines.
    assert!(terminal.lines().count() <= (29_usize + 8).div_ceil(2));
}

fn any_code() -> impl Strategy<Value = InviteCode> {
    let addr = prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
    ];
    (
        any::<[u8; 10]>(),
        prop::collection::vec(addr, 0..=MAX_INVITE_ADDRS),
    )
        .prop_map(|(secret, addrs)| {
            InviteCode::new(InviteSecret::from_bytes(secret), addrs).expect("bounded")
        })
}

proptest! {
    #[test]
    fn round_trips(code in any_code()) {
        prop_assert_eq!(InviteCode::from_bytes(&code.to_bytes()), Ok(code.clone()));
        prop_assert_eq!(InviteCode::parse(&code.to_string()), Ok(code));
    }

    #[test]
    fn a_changed_character_is_caught(code in any_code(), position in any::<usize>(), pick in any::<usize>()) {
        let text = code.to_string();
        // Change one code symbol (not the prefix, not a dash) into another symbol.
        let symbols: Vec<usize> = text
            .char_indices()
            .skip(3)
            .filter(|(_, c)| *c != '-')
            .map(|(i, _)| i)
            .collect();
        let at = symbols[position % symbols.len()];
        let old = text.as_bytes()[at] as char;
        let replacements: Vec<char> = CROCKFORD_SYMBOLS.chars().filter(|c| *c != old).collect();
        let new = replacements[pick % replacements.len()];
        let mut changed = text.clone();
        changed.replace_range(at..=at, &new.to_string());
        match InviteCode::parse(&changed) {
            Err(_) => {}
            Ok(other) => prop_assert_ne!(other, code),
        }
    }

    #[test]
    fn garbage_never_panics(text in ".{0,300}", bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = InviteCode::parse(&text);
        let _ = InviteCode::from_bytes(&bytes);
    }

    #[test]
    fn symbol_garbage_never_panics(text in "[0-9A-Za-z -]{0,300}") {
        let _ = InviteCode::parse(&text);
    }
}
