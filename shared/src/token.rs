//! Session tokens: a player's identity and expiry, signed with HMAC-SHA256 under the
//! server (cluster) secret, so any node admits the player without a database read.
//!
//! Text form: `zm1.<hex claims>.<hex mac>`.

use crate::codec::{DecodeError, Reader, Writer};
use crate::control::TOKEN_MAX;
use crate::ids::{PLAYER_NAME_MAX, validate_player_name};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

type HmacSha256 = Hmac<Sha256>;

const PREFIX: &str = "zm1";
/// Shortest secret accepted for signing, in bytes.
pub const SECRET_MIN: usize = 16;

/// What a token asserts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The player's name (validated by [`validate_player_name`]).
    pub player: String,
    /// Expiry, seconds since the Unix epoch.
    pub expires_unix_s: u64,
    /// Random value making every token unique.
    pub nonce: u64,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TokenError {
    /// The text is not `zm1.<hex>.<hex>` or the claims do not decode.
    #[error("malformed token")]
    Malformed,
    /// The signature does not match: wrong secret or tampered claims.
    #[error("token signature invalid")]
    BadSignature,
    /// The token's expiry has passed.
    #[error("token expired")]
    Expired,
    /// The player name in the claims is not acceptable.
    #[error("invalid player name: {0}")]
    BadPlayerName(&'static str),
    /// The signing secret is shorter than [`SECRET_MIN`] bytes.
    #[error("secret must be at least {SECRET_MIN} bytes")]
    WeakSecret,
}

impl From<DecodeError> for TokenError {
    fn from(_: DecodeError) -> Self {
        Self::Malformed
    }
}

fn mac(secret: &[u8]) -> Result<HmacSha256, TokenError> {
    if secret.len() < SECRET_MIN {
        return Err(TokenError::WeakSecret);
    }
    HmacSha256::new_from_slice(secret).map_err(|_| TokenError::WeakSecret)
}

/// Signs `claims` with `secret`, giving the token's text form.
pub fn sign(secret: &[u8], claims: &Claims) -> Result<String, TokenError> {
    validate_player_name(&claims.player).map_err(TokenError::BadPlayerName)?;
    let mut w = Writer::with_capacity(64);
    w.str(&claims.player);
    w.varint(claims.expires_unix_s);
    w.varint(claims.nonce);
    let mut m = mac(secret)?;
    m.update(w.as_slice());
    let tag = m.finalize().into_bytes();
    Ok(format!(
        "{PREFIX}.{}.{}",
        hex::encode(w.as_slice()),
        hex::encode(tag)
    ))
}

/// Checks a token's form, signature and expiry against `now_unix_s`.
pub fn verify(secret: &[u8], token: &str, now_unix_s: u64) -> Result<Claims, TokenError> {
    if token.len() > TOKEN_MAX {
        return Err(TokenError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(PREFIX), Some(body_hex), Some(tag_hex), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let body = hex::decode(body_hex).map_err(|_| TokenError::Malformed)?;
    let tag = hex::decode(tag_hex).map_err(|_| TokenError::Malformed)?;
    let mut m = mac(secret)?;
    m.update(&body);
    m.verify_slice(&tag).map_err(|_| TokenError::BadSignature)?;
    let claims = decode_claims(&body)?;
    validate_player_name(&claims.player).map_err(TokenError::BadPlayerName)?;
    if claims.expires_unix_s <= now_unix_s {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

fn decode_claims(body: &[u8]) -> Result<Claims, TokenError> {
    let mut r = Reader::new(body);
    let claims = Claims {
        player: r.str("player", PLAYER_NAME_MAX)?.to_owned(),
        expires_unix_s: r.varint()?,
        nonce: r.varint()?,
    };
    r.finish()?;
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn claims() -> Claims {
        Claims {
            player: "alice".into(),
            expires_unix_s: 1_000,
            nonce: 42,
        }
    }

    #[test]
    fn signed_token_verifies() {
        let t = sign(SECRET, &claims()).unwrap();
        assert_eq!(verify(SECRET, &t, 999).unwrap(), claims());
    }

    #[test]
    fn wrong_secret_expiry_and_tampering_are_refused() {
        let t = sign(SECRET, &claims()).unwrap();
        assert_eq!(
            verify(b"another-secret-of-32-bytes-000000", &t, 0),
            Err(TokenError::BadSignature)
        );
        assert_eq!(verify(SECRET, &t, 1_000), Err(TokenError::Expired));
        let forged = sign(
            b"attacker-secret-0123456789",
            &Claims {
                player: "admin".into(),
                ..claims()
            },
        )
        .unwrap();
        assert_eq!(verify(SECRET, &forged, 0), Err(TokenError::BadSignature));
        assert_eq!(verify(SECRET, "zm1.zz.zz", 0), Err(TokenError::Malformed));
    }

    #[test]
    fn short_secret_is_refused() {
        assert_eq!(sign(b"short", &claims()), Err(TokenError::WeakSecret));
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_verifies_or_panics(s in ".{0,600}") {
            prop_assert!(verify(SECRET, &s, 0).is_err());
        }
    }
}
