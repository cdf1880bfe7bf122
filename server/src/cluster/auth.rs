//! The node handshake: after TLS, each side proves it holds the cluster secret with an
//! HMAC over a TLS exporter value of *this* connection, so a recorded handshake cannot
//! be replayed and a relay in the middle (two TLS sessions, two exporter values) cannot
//! pass one side's proof to the other. Certificates are not checked: nodes need not
//! know each other's certificates, only the shared secret.
//!
//! Wire form of a hello (fixed length): version byte, node id (u64 BE), incarnation
//! (u64 BE), 32-byte tag.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;
use zonemesh_shared::node::NodeRef;
use zonemesh_shared::token::SECRET_MIN;

type HmacSha256 = Hmac<Sha256>;

/// Handshake format version.
const VERSION: u8 = 1;
/// Length of a hello on the wire.
pub const HELLO_LEN: usize = 1 + 8 + 8 + 32;
/// Label of the TLS exporter value both sides sign.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-zonemesh-node-auth";
/// Length of the exporter value.
pub const EXPORTER_LEN: usize = 32;

/// Which end of the connection signs: the two proofs differ, so one side's proof is
/// never valid as the other's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The node that opened the connection.
    Dialer,
    /// The node that accepted it.
    Acceptor,
}

impl Role {
    fn label(self) -> &'static [u8] {
        match self {
            Role::Dialer => b"zonemesh node hello: dialer",
            Role::Acceptor => b"zonemesh node hello: acceptor",
        }
    }
}

/// Why a handshake failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthError {
    /// The hello has the wrong length or version.
    #[error("malformed node hello")]
    Malformed,
    /// The proof does not match: the peer does not hold this cluster's secret.
    #[error("cluster authentication failed: the peer does not hold this cluster's secret")]
    BadProof,
    /// The configured secret is too short to sign with.
    #[error("cluster secret must be at least {SECRET_MIN} bytes")]
    WeakSecret,
}

/// A hello: who the sender is and its proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// The sending node run.
    pub node: NodeRef,
    tag: [u8; 32],
}

fn mac(secret: &[u8], role: Role, exporter: &[u8], node: NodeRef) -> Result<HmacSha256, AuthError> {
    if secret.len() < SECRET_MIN {
        return Err(AuthError::WeakSecret);
    }
    let mut m = HmacSha256::new_from_slice(secret).map_err(|_| AuthError::WeakSecret)?;
    m.update(role.label());
    m.update(exporter);
    m.update(&node.id.0.to_be_bytes());
    m.update(&node.incarnation.0.to_be_bytes());
    Ok(m)
}

impl Hello {
    /// The hello `node` sends in `role` on the connection with exporter value `exporter`.
    pub fn sign(
        secret: &[u8],
        role: Role,
        exporter: &[u8],
        node: NodeRef,
    ) -> Result<Self, AuthError> {
        let tag = mac(secret, role, exporter, node)?
            .finalize()
            .into_bytes()
            .into();
        Ok(Self { node, tag })
    }

    /// Checks the proof (in constant time).
    pub fn verify(&self, secret: &[u8], role: Role, exporter: &[u8]) -> Result<(), AuthError> {
        mac(secret, role, exporter, self.node)?
            .verify_slice(&self.tag)
            .map_err(|_| AuthError::BadProof)
    }

    /// The wire form.
    pub fn encode(&self) -> [u8; HELLO_LEN] {
        let mut out = [0u8; HELLO_LEN];
        out[0] = VERSION;
        out[1..9].copy_from_slice(&self.node.id.0.to_be_bytes());
        out[9..17].copy_from_slice(&self.node.incarnation.0.to_be_bytes());
        out[17..].copy_from_slice(&self.tag);
        out
    }

    /// Reads the wire form.
    pub fn decode(bytes: &[u8]) -> Result<Self, AuthError> {
        if bytes.len() != HELLO_LEN || bytes[0] != VERSION {
            return Err(AuthError::Malformed);
        }
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[i..i + 8]);
            u64::from_be_bytes(b)
        };
        let mut tag = [0u8; 32];
        tag.copy_from_slice(&bytes[17..]);
        Ok(Self {
            node: NodeRef::new(u64_at(1), u64_at(9)),
            tag,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const EXPORTER: [u8; 32] = [7; 32];

    #[test]
    fn a_hello_verifies_after_the_wire() {
        let node = NodeRef::new(u64::MAX, 3);
        let hello = Hello::sign(SECRET, Role::Dialer, &EXPORTER, node).expect("sign");
        let back = Hello::decode(&hello.encode()).expect("decode");
        assert_eq!(back.node, node);
        assert_eq!(back.verify(SECRET, Role::Dialer, &EXPORTER), Ok(()));
    }

    #[test]
    fn wrong_secret_role_or_connection_fails() {
        let node = NodeRef::new(1, 1);
        let hello = Hello::sign(SECRET, Role::Dialer, &EXPORTER, node).expect("sign");
        let other_secret = b"fedcba9876543210fedcba9876543210";
        assert_eq!(
            hello.verify(other_secret, Role::Dialer, &EXPORTER),
            Err(AuthError::BadProof)
        );
        assert_eq!(
            hello.verify(SECRET, Role::Acceptor, &EXPORTER),
            Err(AuthError::BadProof)
        );
        assert_eq!(
            hello.verify(SECRET, Role::Dialer, &[8; 32]),
            Err(AuthError::BadProof)
        );
    }

    #[test]
    fn a_claimed_identity_cannot_be_changed() {
        let hello = Hello::sign(SECRET, Role::Dialer, &EXPORTER, NodeRef::new(1, 1)).expect("sign");
        let mut bytes = hello.encode();
        bytes[16] ^= 1;
        let forged = Hello::decode(&bytes).expect("decodes");
        assert_eq!(
            forged.verify(SECRET, Role::Dialer, &EXPORTER),
            Err(AuthError::BadProof)
        );
    }

    #[test]
    fn malformed_hellos_and_weak_secrets_are_errors() {
        assert_eq!(Hello::decode(&[1; 10]), Err(AuthError::Malformed));
        let mut bytes = [0u8; HELLO_LEN];
        bytes[0] = 9;
        assert_eq!(Hello::decode(&bytes), Err(AuthError::Malformed));
        let weak = Hello::sign(b"short", Role::Dialer, &EXPORTER, NodeRef::new(1, 1));
        assert_eq!(weak, Err(AuthError::WeakSecret));
    }
}
