//! Redirect tokens: a signed, short-lived permission for one player's session to enter
//! one zone on one run of one node, checked by that node without a database read.
//!
//! When a client reaches a node that does not host its zone, the node answers
//! `Redirect{addr, token}`; the target node admits the player on the token alone. Tokens
//! are signed with HMAC-SHA256 under the cluster secret, named by a key id so the secret
//! can be rotated without a flag day (see [`RedirectKeys`]).
//!
//! Binary form, at most [`REDIRECT_TOKEN_MAX`] bytes:
//! `version u8 | key id u32 LE | claims | tag [u8; 32]`, where the claims are
//! `player str | session varint | zone u32 LE | target NodeRef | epoch varint |
//! expires_unix_ms varint | nonce varint` (the shared [`codec`](crate::codec)) and the
//! tag is HMAC-SHA256 over a domain label (not sent) followed by every byte before it.
//!
//! [`verify`] checks in this order, and reports the first failure:
//! 1. length and format (size bounds, version) → [`RedirectError::Malformed`];
//! 2. key id → [`RedirectError::UnknownKey`];
//! 3. signature, compared in constant time → [`RedirectError::Forged`];
//! 4. claims decode and name a valid player → [`RedirectError::Malformed`];
//! 5. expiry → [`RedirectError::Expired`];
//! 6. target node and incarnation → [`RedirectError::Misaddressed`].
//!
//! Nothing in the claims is parsed or reported before the signature holds, so an
//! unauthenticated token can never make a node act on (or echo) attacker-chosen claims.
//! Single use is enforced by [`RedirectVerifier`], which adds a [`ReplayGuard`] after
//! [`verify`].

use std::collections::BTreeMap;
use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

use crate::codec::{DecodeError, Reader, Writer};
use crate::control::{ErrorCode, TOKEN_MAX};
use crate::ids::{PLAYER_NAME_MAX, ZoneId, validate_player_name};
use crate::node::NodeRef;
use crate::replay::{ReplayError, ReplayGuard};
use crate::token::SECRET_MIN;

type HmacSha256 = Hmac<Sha256>;

/// The format version written in the first byte; any other version is `Malformed`.
pub const REDIRECT_TOKEN_VERSION: u8 = 1;
/// Length of the HMAC-SHA256 tag ending every token, in bytes.
pub const REDIRECT_TAG_LEN: usize = 32;
/// Version byte and key id.
const HEADER_LEN: usize = 1 + 4;
/// Longest encoded claims: name (1-byte length + 32), session, zone, target (two
/// varints), epoch, expiry, nonce; a u64 varint takes at most 10 bytes.
const CLAIMS_MAX: usize = 1 + PLAYER_NAME_MAX + 10 + 4 + 2 * 10 + 10 + 10 + 10;
/// Longest token [`sign`] produces and [`verify`] reads, in bytes; longer input is
/// `Malformed` before any work is done on it.
pub const REDIRECT_TOKEN_MAX: usize = HEADER_LEN + CLAIMS_MAX + REDIRECT_TAG_LEN;
/// Shortest possible token: header, the shortest claims (a one-byte name and one-byte
/// varints) and the tag.
const REDIRECT_TOKEN_MIN: usize = HEADER_LEN + (1 + 1) + 1 + 4 + 2 + 1 + 1 + 1 + REDIRECT_TAG_LEN;
/// Most keys a ring holds; rotation needs two or three, the bound keeps a
/// misconfiguration from growing the ring without limit.
pub const REDIRECT_KEYS_MAX: usize = 8;
/// Prefixed to the MAC input (never sent) so a tag made for another purpose under the
/// same secret (a `zm1` session token, whose MAC input starts with a name length of at
/// most 32) can never pass as a redirect tag, whose input starts with `z` (122).
const MAC_DOMAIN: &[u8] = b"zonemesh/redirect\0";

// The `Redirect` frame carries the token as text; its hex form must fit the field.
const _: () = assert!(4 + 2 * REDIRECT_TOKEN_MAX <= TOKEN_MAX);

/// What a redirect token asserts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectClaims {
    /// The player's name (validated by [`validate_player_name`]).
    pub player: String,
    /// The session the redirect continues, so the target can tell it from a new login.
    pub session: u64,
    /// The zone the player is sent to.
    pub zone: ZoneId,
    /// The node run that must admit the player; any other node or incarnation refuses.
    pub target: NodeRef,
    /// The zone's ownership epoch when the token was issued.
    pub epoch: u64,
    /// Expiry, milliseconds since the Unix epoch; the token is valid while `now` is
    /// strictly before it.
    pub expires_unix_ms: u64,
    /// Random value making every token unique; the target admits each nonce once.
    pub nonce: u64,
}

impl RedirectClaims {
    fn encode(&self, w: &mut Writer) {
        w.str(&self.player);
        w.varint(self.session);
        w.u32(self.zone.0);
        self.target.encode(w);
        w.varint(self.epoch);
        w.varint(self.expires_unix_ms);
        w.varint(self.nonce);
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let claims = Self {
            player: r.str("player", PLAYER_NAME_MAX)?.to_owned(),
            session: r.varint()?,
            zone: ZoneId(r.u32()?),
            target: NodeRef::decode(&mut r)?,
            epoch: r.varint()?,
            expires_unix_ms: r.varint()?,
            nonce: r.varint()?,
        };
        r.finish()?;
        validate_player_name(&claims.player).map_err(|_| DecodeError::InvalidValue("player"))?;
        Ok(claims)
    }
}

/// Why a redirect token was not signed or not admitted. [`verify`] reports the first
/// failing check in the order given in the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RedirectError {
    /// Too short or longer than [`REDIRECT_TOKEN_MAX`], an unknown version, or (only
    /// for a correctly signed token, so from a faulty signer) claims that do not decode.
    #[error("malformed redirect token")]
    Malformed,
    /// The token names a key this node does not hold: never added, or already rotated
    /// out (the token is older than the rotation allows, or the rings disagree).
    #[error("redirect token signed with unknown key {key_id}")]
    UnknownKey {
        /// The key id the token names.
        key_id: u32,
    },
    /// The tag does not match: wrong secret or altered bytes.
    #[error("redirect token signature invalid")]
    Forged,
    /// The token's expiry has passed.
    #[error("redirect token expired")]
    Expired,
    /// The token is genuine but for another node, or for an earlier (or later) run of
    /// this one; the player must ask again where its zone lives.
    #[error("redirect token is for node {target}")]
    Misaddressed {
        /// The node run the token names.
        target: NodeRef,
    },
    /// The token's nonce was already admitted and the token has not expired.
    #[error("redirect token already used")]
    Replayed,
    /// The replay guard is full of unexpired nonces; the token was not admitted (it
    /// can be retried once older tokens expire), since forgetting a live nonce would
    /// allow a replay.
    #[error("too many recent redirects to remember another")]
    GuardFull,
    /// [`sign`] was given an invalid player name (never returned by [`verify`]).
    #[error("invalid player name: {0}")]
    BadPlayerName(&'static str),
}

impl From<ReplayError> for RedirectError {
    fn from(e: ReplayError) -> Self {
        match e {
            ReplayError::Replayed => Self::Replayed,
            ReplayError::Expired => Self::Expired,
            ReplayError::Full { .. } => Self::GuardFull,
        }
    }
}

impl From<&RedirectError> for ErrorCode {
    /// The close code a node sends when it refuses a redirect token. `Malformed` is
    /// reported like any other unusable credential; a full guard is a capacity refusal
    /// the client retries.
    fn from(e: &RedirectError) -> Self {
        match e {
            RedirectError::Malformed => Self::AuthFailed,
            RedirectError::UnknownKey { .. } => Self::RedirectUnknownKey,
            RedirectError::Forged => Self::RedirectForged,
            RedirectError::Expired => Self::RedirectExpired,
            RedirectError::Misaddressed { .. } => Self::RedirectMisaddressed,
            RedirectError::Replayed => Self::RedirectReplayed,
            RedirectError::GuardFull => Self::Busy,
            RedirectError::BadPlayerName(_) => Self::Internal,
        }
    }
}

/// Why a [`RedirectKeys`] change was refused; the ring is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyRingError {
    /// The secret is shorter than [`SECRET_MIN`] bytes.
    #[error("redirect secret must be at least {SECRET_MIN} bytes")]
    WeakSecret,
    /// The ring already holds [`REDIRECT_KEYS_MAX`] keys.
    #[error("key ring holds at most {REDIRECT_KEYS_MAX} keys")]
    Full,
    /// The key id is taken; reusing an id for another secret would make every token
    /// signed under the old one look forged.
    #[error("key id {0} is already in the ring")]
    KeyIdInUse(u32),
    /// No key with this id is in the ring.
    #[error("key id {0} is not in the ring")]
    UnknownKey(u32),
    /// The current (signing) key cannot be removed; make another key current first.
    #[error("key id {0} is the current signing key")]
    CurrentKey(u32),
}

/// The redirect key ring: every key this node accepts, and the one it signs with.
///
/// Rotation without refusing valid tokens: [`add`](Self::add) the new key on every node,
/// then [`set_current`](Self::set_current) it, then [`remove`](Self::remove) the old key
/// once the longest-lived token signed with it has expired.
pub struct RedirectKeys {
    /// The key id [`sign`] uses; always present in `keys`.
    current: u32,
    /// HMAC state keyed with each secret (cloned per use, so a secret is hashed once).
    keys: BTreeMap<u32, HmacSha256>,
}

impl fmt::Debug for RedirectKeys {
    /// Key ids only: the secrets must never reach a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedirectKeys")
            .field("current", &self.current)
            .field("key_ids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl RedirectKeys {
    /// A ring holding one key, used for signing and verifying.
    pub fn new(key_id: u32, secret: &[u8]) -> Result<Self, KeyRingError> {
        let keys = BTreeMap::from([(key_id, keyed_mac(secret)?)]);
        Ok(Self {
            current: key_id,
            keys,
        })
    }

    /// Adds a key accepted for verifying; it signs only once made current.
    pub fn add(&mut self, key_id: u32, secret: &[u8]) -> Result<(), KeyRingError> {
        if self.keys.contains_key(&key_id) {
            return Err(KeyRingError::KeyIdInUse(key_id));
        }
        if self.keys.len() >= REDIRECT_KEYS_MAX {
            return Err(KeyRingError::Full);
        }
        self.keys.insert(key_id, keyed_mac(secret)?);
        Ok(())
    }

    /// Makes a key already in the ring the one [`sign`] uses.
    pub fn set_current(&mut self, key_id: u32) -> Result<(), KeyRingError> {
        if !self.keys.contains_key(&key_id) {
            return Err(KeyRingError::UnknownKey(key_id));
        }
        self.current = key_id;
        Ok(())
    }

    /// Stops accepting a key; tokens signed with it then fail with `UnknownKey`.
    pub fn remove(&mut self, key_id: u32) -> Result<(), KeyRingError> {
        if key_id == self.current {
            return Err(KeyRingError::CurrentKey(key_id));
        }
        self.keys
            .remove(&key_id)
            .map(drop)
            .ok_or(KeyRingError::UnknownKey(key_id))
    }

    /// The id of the signing key.
    pub fn current(&self) -> u32 {
        self.current
    }

    /// Whether tokens signed with `key_id` are accepted.
    pub fn contains(&self, key_id: u32) -> bool {
        self.keys.contains_key(&key_id)
    }

    /// Keys in the ring (at least one, at most [`REDIRECT_KEYS_MAX`]).
    pub fn n_keys(&self) -> usize {
        self.keys.len()
    }

    fn mac(&self, key_id: u32) -> Option<HmacSha256> {
        self.keys.get(&key_id).cloned()
    }

    fn current_mac(&self) -> HmacSha256 {
        self.mac(self.current)
            .expect("the current key is always in the ring")
    }
}

/// HMAC state keyed with `secret`, with the domain label already absorbed.
fn keyed_mac(secret: &[u8]) -> Result<HmacSha256, KeyRingError> {
    if secret.len() < SECRET_MIN {
        return Err(KeyRingError::WeakSecret);
    }
    let mut mac = HmacSha256::new_from_slice(secret).map_err(|_| KeyRingError::WeakSecret)?;
    mac.update(MAC_DOMAIN);
    Ok(mac)
}

/// Signs `claims` with the ring's current key, giving the token's binary form (at
/// most [`REDIRECT_TOKEN_MAX`] bytes).
pub fn sign(keys: &RedirectKeys, claims: &RedirectClaims) -> Result<Vec<u8>, RedirectError> {
    validate_player_name(&claims.player).map_err(RedirectError::BadPlayerName)?;
    let mut w = Writer::with_capacity(REDIRECT_TOKEN_MAX);
    w.u8(REDIRECT_TOKEN_VERSION);
    w.u32(keys.current);
    claims.encode(&mut w);
    let mut mac = keys.current_mac();
    mac.update(w.as_slice());
    let mut token = w.into_vec();
    token.extend_from_slice(&mac.finalize().into_bytes());
    assert!(
        (REDIRECT_TOKEN_MIN..=REDIRECT_TOKEN_MAX).contains(&token.len()),
        "every claim is bounded, so a token is too"
    );
    Ok(token)
}

/// Checks a token for this node run `me` at `now_unix_ms`, in the order given in the
/// [module docs](self), and returns its claims. Does not check for replay: see
/// [`RedirectVerifier::admit`].
pub fn verify(
    keys: &RedirectKeys,
    token: &[u8],
    now_unix_ms: u64,
    me: NodeRef,
) -> Result<RedirectClaims, RedirectError> {
    let (signed, tag) = split_token(token)?;
    let key_id = key_id(signed)?;
    let mut mac = keys
        .mac(key_id)
        .ok_or(RedirectError::UnknownKey { key_id })?;
    mac.update(signed);
    // `verify_slice` compares in constant time, so timing leaks nothing about the tag.
    mac.verify_slice(tag).map_err(|_| RedirectError::Forged)?;
    let claims =
        RedirectClaims::decode(&signed[HEADER_LEN..]).map_err(|_| RedirectError::Malformed)?;
    if claims.expires_unix_ms <= now_unix_ms {
        return Err(RedirectError::Expired);
    }
    if claims.target != me {
        return Err(RedirectError::Misaddressed {
            target: claims.target,
        });
    }
    Ok(claims)
}

/// Prefix of a redirect token's text form, so a node can tell it from a session token
/// (`zm1.`) in the same `Hello` field without trying to verify it as both.
pub const REDIRECT_TEXT_PREFIX: &str = "zr1.";

/// The text form carried in `Redirect` and `Hello`: the prefix and the token in hex.
pub fn to_text(token: &[u8]) -> String {
    format!("{REDIRECT_TEXT_PREFIX}{}", hex::encode(token))
}

/// The binary token in a text form, `None` if `text` is not a redirect token's text
/// (no prefix). Bad hex or a bad length is [`RedirectError::Malformed`].
pub fn from_text(text: &str) -> Option<Result<Vec<u8>, RedirectError>> {
    let body = text.strip_prefix(REDIRECT_TEXT_PREFIX)?;
    if body.len() > 2 * REDIRECT_TOKEN_MAX {
        return Some(Err(RedirectError::Malformed));
    }
    Some(hex::decode(body).map_err(|_| RedirectError::Malformed))
}

/// Splits a token of acceptable length into the signed bytes and the tag.
fn split_token(token: &[u8]) -> Result<(&[u8], &[u8]), RedirectError> {
    if !(REDIRECT_TOKEN_MIN..=REDIRECT_TOKEN_MAX).contains(&token.len()) {
        return Err(RedirectError::Malformed);
    }
    token
        .split_at_checked(token.len() - REDIRECT_TAG_LEN)
        .ok_or(RedirectError::Malformed)
}

/// Reads the header of the signed bytes: the version must be known, then the key id.
fn key_id(signed: &[u8]) -> Result<u32, RedirectError> {
    let mut r = Reader::new(signed);
    if r.u8() != Ok(REDIRECT_TOKEN_VERSION) {
        return Err(RedirectError::Malformed);
    }
    r.u32().map_err(|_| RedirectError::Malformed)
}

/// A node's redirect admission: [`verify`] and then a [`ReplayGuard`], so each token is
/// admitted at most once. Only tokens that pass every check reach the guard, so forged,
/// expired or misaddressed tokens never take up its capacity.
#[derive(Debug)]
pub struct RedirectVerifier {
    /// The keys tokens are checked against (and rotated in place).
    pub keys: RedirectKeys,
    /// Nonces of admitted, unexpired tokens.
    pub guard: ReplayGuard,
}

impl RedirectVerifier {
    /// A verifier over `keys` remembering nonces in `guard`.
    pub fn new(keys: RedirectKeys, guard: ReplayGuard) -> Self {
        Self { keys, guard }
    }

    /// Admits a token for node run `me` at `now_unix_ms`: verifies it, then records
    /// its nonce, refusing a nonce already admitted.
    pub fn admit(
        &mut self,
        token: &[u8],
        now_unix_ms: u64,
        me: NodeRef,
    ) -> Result<RedirectClaims, RedirectError> {
        let claims = verify(&self.keys, token, now_unix_ms, me)?;
        self.guard
            .check_and_remember(claims.nonce, claims.expires_unix_ms, now_unix_ms)?;
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const ME: NodeRef = NodeRef::new(4, 2);

    /// A token over `claims_bytes` (any bytes) with a valid tag under key 1 of `SECRET`,
    /// the MAC input starting with `domain`.
    fn tagged(domain: &[u8], claims_bytes: &[u8]) -> Vec<u8> {
        let mut token = vec![REDIRECT_TOKEN_VERSION];
        token.extend_from_slice(&1u32.to_le_bytes());
        token.extend_from_slice(claims_bytes);
        let mut mac = HmacSha256::new_from_slice(SECRET).unwrap();
        mac.update(domain);
        mac.update(&token);
        token.extend_from_slice(&mac.finalize().into_bytes());
        token
    }

    fn keys() -> RedirectKeys {
        RedirectKeys::new(1, SECRET).unwrap()
    }

    fn claims_bytes(player: &str) -> Vec<u8> {
        let claims = RedirectClaims {
            player: player.into(),
            session: 1,
            zone: ZoneId(2),
            target: ME,
            epoch: 3,
            expires_unix_ms: 100,
            nonce: 5,
        };
        let mut w = Writer::default();
        claims.encode(&mut w);
        w.into_vec()
    }

    #[test]
    fn the_text_form_round_trips_and_is_told_from_session_tokens() {
        let token = tagged(MAC_DOMAIN, &claims_bytes("bob"));
        let text = to_text(&token);
        assert!(text.starts_with(REDIRECT_TEXT_PREFIX));
        assert!(text.len() <= TOKEN_MAX);
        assert_eq!(from_text(&text), Some(Ok(token)));
        assert_eq!(from_text("zm1.abcd.ef"), None, "a session token is not one");
        assert_eq!(from_text("zr1.xyz"), Some(Err(RedirectError::Malformed)));
        let long = format!(
            "{REDIRECT_TEXT_PREFIX}{}",
            "00".repeat(REDIRECT_TOKEN_MAX + 1)
        );
        assert_eq!(from_text(&long), Some(Err(RedirectError::Malformed)));
    }

    #[test]
    fn the_tag_covers_the_domain_label() {
        let good = tagged(MAC_DOMAIN, &claims_bytes("bob"));
        assert!(verify(&keys(), &good, 0, ME).is_ok());
        let undomained = tagged(b"", &claims_bytes("bob"));
        assert_eq!(
            verify(&keys(), &undomained, 0, ME),
            Err(RedirectError::Forged)
        );
    }

    #[test]
    fn signed_claims_that_do_not_decode_are_malformed() {
        let mut trailing = claims_bytes("bob");
        trailing.push(0);
        for bytes in [vec![0xff; 20], claims_bytes("b b"), trailing] {
            let token = tagged(MAC_DOMAIN, &bytes);
            assert_eq!(
                verify(&keys(), &token, 0, ME),
                Err(RedirectError::Malformed)
            );
        }
    }

    #[test]
    fn the_shortest_claims_make_the_shortest_token() {
        let shortest = RedirectClaims {
            player: "a".into(),
            session: 0,
            zone: ZoneId(0),
            target: NodeRef::new(0, 0),
            epoch: 0,
            expires_unix_ms: 1,
            nonce: 0,
        };
        assert_eq!(sign(&keys(), &shortest).unwrap().len(), REDIRECT_TOKEN_MIN);
    }
}
