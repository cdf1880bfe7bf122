//! Redirect tokens through the public API: every refusal and its check order, the key
//! ring and rotation, admission with the replay guard, and properties over arbitrary
//! claims and bytes.

use proptest::prelude::*;
use zonemesh_shared::control::ErrorCode;
use zonemesh_shared::ids::ZoneId;
use zonemesh_shared::node::NodeRef;
use zonemesh_shared::redirect::{
    KeyRingError, REDIRECT_KEYS_MAX, REDIRECT_TOKEN_MAX, REDIRECT_TOKEN_VERSION, RedirectClaims,
    RedirectError, RedirectKeys, RedirectVerifier, sign, verify,
};
use zonemesh_shared::replay::ReplayGuard;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const OTHER_SECRET: &[u8] = b"fedcba9876543210fedcba9876543210";
const ME: NodeRef = NodeRef::new(0xabc, 3);
const EXPIRES: u64 = 10_000;

fn keys() -> RedirectKeys {
    RedirectKeys::new(1, SECRET).unwrap()
}

fn claims() -> RedirectClaims {
    RedirectClaims {
        player: "alice".into(),
        session: 77,
        zone: ZoneId::grid(2, 5),
        target: ME,
        epoch: 9,
        expires_unix_ms: EXPIRES,
        nonce: 0x1234_5678_9abc,
    }
}

fn token() -> Vec<u8> {
    sign(&keys(), &claims()).unwrap()
}

/// `verify` with the usual ring, at time 0, on node `ME`.
fn check(token: &[u8]) -> Result<RedirectClaims, RedirectError> {
    verify(&keys(), token, 0, ME)
}

#[test]
fn a_signed_token_verifies_at_its_target_until_it_expires() {
    let t = token();
    assert!(t.len() <= REDIRECT_TOKEN_MAX);
    assert_eq!(check(&t), Ok(claims()));
    assert_eq!(verify(&keys(), &t, EXPIRES - 1, ME), Ok(claims()));
    assert_eq!(
        verify(&keys(), &t, EXPIRES, ME),
        Err(RedirectError::Expired)
    );
}

#[test]
fn the_longest_claims_fit_the_stated_maximum() {
    let longest = RedirectClaims {
        player: "x".repeat(32),
        session: u64::MAX,
        zone: ZoneId(u32::MAX),
        target: NodeRef::new(u64::MAX, u64::MAX),
        epoch: u64::MAX,
        expires_unix_ms: u64::MAX,
        nonce: u64::MAX,
    };
    let t = sign(&keys(), &longest).unwrap();
    assert_eq!(t.len(), REDIRECT_TOKEN_MAX);
    assert_eq!(verify(&keys(), &t, 0, longest.target), Ok(longest));
}

#[test]
fn bad_lengths_and_versions_are_malformed() {
    let t = token();
    // 48 bytes is one short of the shortest claims with a tag.
    for bad in [&[][..], &t[..10], &t[..48]] {
        assert_eq!(check(bad), Err(RedirectError::Malformed));
    }
    let mut long = t.clone();
    long.resize(REDIRECT_TOKEN_MAX + 1, 0);
    assert_eq!(check(&long), Err(RedirectError::Malformed));
    let mut other_version = t;
    other_version[0] = REDIRECT_TOKEN_VERSION + 1;
    assert_eq!(check(&other_version), Err(RedirectError::Malformed));
}

#[test]
fn a_token_under_a_key_not_in_the_ring_names_the_key() {
    let signer = RedirectKeys::new(7, SECRET).unwrap();
    let t = sign(&signer, &claims()).unwrap();
    assert_eq!(check(&t), Err(RedirectError::UnknownKey { key_id: 7 }));
}

#[test]
fn wrong_secret_or_altered_bytes_are_forged() {
    let attacker = RedirectKeys::new(1, OTHER_SECRET).unwrap();
    let t = sign(&attacker, &claims()).unwrap();
    assert_eq!(check(&t), Err(RedirectError::Forged));
    let t = token();
    assert_eq!(check(&t[..t.len() - 1]), Err(RedirectError::Forged));
    let mut tag_altered = token();
    *tag_altered.last_mut().unwrap() ^= 1;
    assert_eq!(check(&tag_altered), Err(RedirectError::Forged));
}

#[test]
fn an_unauthenticated_token_is_forged_whatever_its_claims_say() {
    // Expired and for another node: neither may be reported before the signature holds.
    let attacker = RedirectKeys::new(1, OTHER_SECRET).unwrap();
    let stale_elsewhere = RedirectClaims {
        target: NodeRef::new(1, 1),
        expires_unix_ms: 1,
        ..claims()
    };
    let t = sign(&attacker, &stale_elsewhere).unwrap();
    assert_eq!(verify(&keys(), &t, EXPIRES, ME), Err(RedirectError::Forged));
}

#[test]
fn expiry_is_checked_before_the_target() {
    let elsewhere = RedirectClaims {
        target: NodeRef::new(1, 1),
        ..claims()
    };
    let t = sign(&keys(), &elsewhere).unwrap();
    assert_eq!(
        verify(&keys(), &t, EXPIRES, ME),
        Err(RedirectError::Expired)
    );
}

#[test]
fn another_node_or_another_run_of_this_one_is_misaddressed() {
    let t = token();
    let other_node = NodeRef::new(ME.id.0 + 1, ME.incarnation.0);
    let next_run = NodeRef::new(ME.id.0, ME.incarnation.0 + 1);
    for me in [other_node, next_run] {
        assert_eq!(
            verify(&keys(), &t, 0, me),
            Err(RedirectError::Misaddressed { target: ME })
        );
    }
}

#[test]
fn signing_refuses_an_invalid_player_name() {
    for player in ["", "a b", &"x".repeat(33)] {
        let bad = RedirectClaims {
            player: player.into(),
            ..claims()
        };
        assert!(matches!(
            sign(&keys(), &bad),
            Err(RedirectError::BadPlayerName(_))
        ));
    }
}

#[test]
fn weak_secrets_are_refused() {
    assert_eq!(
        RedirectKeys::new(1, b"short").unwrap_err(),
        KeyRingError::WeakSecret
    );
    let mut ring = keys();
    assert_eq!(ring.add(2, b"short"), Err(KeyRingError::WeakSecret));
    assert!(!ring.contains(2));
}

#[test]
fn the_ring_refuses_unsafe_changes() {
    let mut ring = keys();
    assert_eq!(ring.add(1, OTHER_SECRET), Err(KeyRingError::KeyIdInUse(1)));
    assert_eq!(ring.remove(1), Err(KeyRingError::CurrentKey(1)));
    assert_eq!(ring.remove(9), Err(KeyRingError::UnknownKey(9)));
    assert_eq!(ring.set_current(9), Err(KeyRingError::UnknownKey(9)));
    for id in 2..=REDIRECT_KEYS_MAX as u32 {
        ring.add(id, SECRET).unwrap();
    }
    assert_eq!(ring.n_keys(), REDIRECT_KEYS_MAX);
    assert_eq!(ring.add(100, SECRET), Err(KeyRingError::Full));
    assert_eq!(ring.current(), 1);
}

#[test]
fn the_ring_never_prints_its_secrets() {
    let text = format!("{:?}", keys());
    assert!(text.contains("current: 1"), "{text}");
    assert!(!text.contains("0123456789abcdef"), "{text}");
    assert!(!text.contains(&hex::encode(SECRET)), "{text}");
}

#[test]
fn each_refusal_has_its_own_close_code() {
    let refusals = [
        (RedirectError::Forged, ErrorCode::RedirectForged),
        (RedirectError::Expired, ErrorCode::RedirectExpired),
        (RedirectError::Replayed, ErrorCode::RedirectReplayed),
        (
            RedirectError::Misaddressed { target: ME },
            ErrorCode::RedirectMisaddressed,
        ),
        (
            RedirectError::UnknownKey { key_id: 3 },
            ErrorCode::RedirectUnknownKey,
        ),
        (RedirectError::Malformed, ErrorCode::AuthFailed),
        (RedirectError::GuardFull, ErrorCode::Busy),
        (RedirectError::BadPlayerName("x"), ErrorCode::Internal),
    ];
    for (error, code) in &refusals {
        assert_eq!(ErrorCode::from(error), *code, "{error:?}");
        assert_eq!(ErrorCode::from_u16(*code as u16), *code);
    }
}

fn verifier(capacity: usize) -> RedirectVerifier {
    RedirectVerifier::new(keys(), ReplayGuard::new(capacity))
}

#[test]
fn a_token_is_admitted_once() {
    let mut v = verifier(8);
    assert_eq!(v.admit(&token(), 0, ME), Ok(claims()));
    assert_eq!(v.admit(&token(), 1, ME), Err(RedirectError::Replayed));
    assert_eq!(v.guard.len(), 1);
}

#[test]
fn refused_tokens_take_no_room_in_the_guard() {
    let mut v = verifier(1);
    let forged = sign(&RedirectKeys::new(1, OTHER_SECRET).unwrap(), &claims()).unwrap();
    assert_eq!(v.admit(&forged, 0, ME), Err(RedirectError::Forged));
    assert_eq!(
        v.admit(&token(), 0, NodeRef::new(5, 5)),
        Err(RedirectError::Misaddressed { target: ME })
    );
    assert_eq!(v.admit(&token(), EXPIRES, ME), Err(RedirectError::Expired));
    assert!(v.guard.is_empty());
    assert_eq!(v.admit(&token(), 0, ME), Ok(claims()));
}

#[test]
fn a_used_token_is_refused_as_expired_once_it_expires() {
    let mut v = verifier(8);
    v.admit(&token(), 0, ME).unwrap();
    assert_eq!(v.admit(&token(), EXPIRES, ME), Err(RedirectError::Expired));
}

#[test]
fn a_full_guard_refuses_until_tokens_expire() {
    let mut v = verifier(1);
    let soon = sign(
        &keys(),
        &RedirectClaims {
            expires_unix_ms: 100,
            nonce: 1,
            ..claims()
        },
    )
    .unwrap();
    v.admit(&soon, 0, ME).unwrap();
    let t = token();
    assert_eq!(v.admit(&t, 99, ME), Err(RedirectError::GuardFull));
    assert_eq!(ErrorCode::from(&RedirectError::GuardFull), ErrorCode::Busy);
    assert_eq!(v.admit(&t, 100, ME), Ok(claims()));
}

#[test]
fn a_rotated_ring_verifies_old_and_new_tokens_until_the_old_key_goes() {
    let mut ring = keys();
    let old = sign(&ring, &claims()).unwrap();
    ring.add(2, OTHER_SECRET).unwrap();
    ring.set_current(2).unwrap();
    let new = sign(&ring, &claims()).unwrap();
    assert_eq!(verify(&ring, &old, 0, ME), Ok(claims()));
    assert_eq!(verify(&ring, &new, 0, ME), Ok(claims()));
    ring.remove(1).unwrap();
    assert_eq!(
        verify(&ring, &old, 0, ME),
        Err(RedirectError::UnknownKey { key_id: 1 })
    );
    assert_eq!(verify(&ring, &new, 0, ME), Ok(claims()));
}

prop_compose! {
    fn any_claims()(
        player in "[A-Za-z0-9._-]{1,32}",
        session in any::<u64>(),
        zone in any::<u32>(),
        node in any::<u64>(),
        incarnation in any::<u64>(),
        epoch in any::<u64>(),
        expires_unix_ms in 1..=u64::MAX,
        nonce in any::<u64>(),
    ) -> RedirectClaims {
        RedirectClaims {
            player,
            session,
            zone: ZoneId(zone),
            target: NodeRef::new(node, incarnation),
            epoch,
            expires_unix_ms,
            nonce,
        }
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_verify_or_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        prop_assert!(check(&bytes).is_err());
    }

    #[test]
    fn arbitrary_bytes_behind_a_valid_header_are_forged(
        body in proptest::collection::vec(any::<u8>(), 44..130),
    ) {
        let mut bytes = vec![REDIRECT_TOKEN_VERSION, 1, 0, 0, 0];
        bytes.extend_from_slice(&body);
        prop_assert_eq!(check(&bytes), Err(RedirectError::Forged));
    }

    #[test]
    fn sign_then_verify_returns_the_claims(c in any_claims()) {
        let t = sign(&keys(), &c).unwrap();
        prop_assert!(t.len() <= REDIRECT_TOKEN_MAX);
        prop_assert_eq!(verify(&keys(), &t, c.expires_unix_ms - 1, c.target), Ok(c));
    }

    #[test]
    fn changing_any_byte_is_refused(c in any_claims(), at in any::<prop::sample::Index>(), flip in 1..=255u8) {
        let mut t = sign(&keys(), &c).unwrap();
        let i = at.index(t.len());
        t[i] ^= flip;
        prop_assert!(verify(&keys(), &t, 0, c.target).is_err(), "byte {} ^ {:#x} accepted", i, flip);
    }

    #[test]
    fn rotation_keeps_old_tokens_until_their_key_is_removed(
        c in any_claims(),
        old_id in any::<u32>(),
        new_id in any::<u32>(),
    ) {
        prop_assume!(old_id != new_id);
        let mut ring = RedirectKeys::new(old_id, SECRET).unwrap();
        let old = sign(&ring, &c).unwrap();
        ring.add(new_id, OTHER_SECRET).unwrap();
        ring.set_current(new_id).unwrap();
        let new = sign(&ring, &c).unwrap();
        prop_assert_ne!(&old, &new);
        prop_assert_eq!(verify(&ring, &old, 0, c.target), Ok(c.clone()));
        ring.remove(old_id).unwrap();
        prop_assert_eq!(
            verify(&ring, &old, 0, c.target),
            Err(RedirectError::UnknownKey { key_id: old_id })
        );
        prop_assert_eq!(verify(&ring, &new, 0, c.target), Ok(c));
    }
}

#[test]
fn every_single_byte_change_of_a_token_is_refused() {
    let t = token();
    for i in 0..t.len() {
        for flip in [0x01, 0x80, 0xff] {
            let mut altered = t.clone();
            altered[i] ^= flip;
            assert!(check(&altered).is_err(), "byte {i} ^ {flip:#x} accepted");
        }
    }
}
