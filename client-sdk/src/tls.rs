//! rustls client configuration for each [`Trust`] mode, including the certificate
//! pinning verifier. TLS 1.3 only, ring provider, ALPN [`zonemesh_shared::ALPN`].

use crate::config::{Trust, read_pem_certs};
use crate::error::ClientError;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::sync::Arc;
use zonemesh_shared::ALPN;

/// Builds the rustls configuration for `trust`.
pub(crate) fn rustls_config(trust: &Trust) -> Result<rustls::ClientConfig, ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ClientError::Tls(e.to_string()))?;
    let mut config = match trust {
        Trust::PinnedCert(certs) => {
            let verifier = CertVerifier::pinned(certs.clone(), provider)?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth()
        }
        Trust::CaFile(path) => {
            let mut roots = RootCertStore::empty();
            for cert in read_pem_certs(path)? {
                roots
                    .add(cert)
                    .map_err(|e| ClientError::Tls(format!("CA file {}: {e}", path.display())))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::InsecureDev => {
            tracing::warn!(
                "TLS certificate verification is DISABLED (Trust::InsecureDev): anyone on the \
                 network path can impersonate the server"
            );
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(CertVerifier::any(provider)))
                .with_no_client_auth()
        }
    };
    config.alpn_protocols = vec![ALPN.to_vec()];
    // A `Hello` to a node whose cluster issued this client a TLS session goes in the
    // first packet. The server admits a player from 0-RTT only for a single-use
    // redirect token; a session token waits for the completed handshake.
    config.enable_early_data = true;
    Ok(config)
}

/// Which end-entity certificates a [`CertVerifier`] accepts.
#[derive(Debug)]
enum Accepted {
    /// Exactly these ([`Trust::PinnedCert`]).
    Pinned(Vec<CertificateDer<'static>>),
    /// Any ([`Trust::InsecureDev`]).
    Any,
}

/// Checks the server's certificate against [`Accepted`]. Names, dates and issuers are
/// not consulted (a self-signed dev certificate has no issuer to check); the handshake
/// signature is always verified with the certificate's key, so a peer that merely
/// replays a pinned certificate without its private key is refused, and even an
/// accepted-any handshake is internally consistent.
#[derive(Debug)]
pub(crate) struct CertVerifier {
    accepted: Accepted,
    provider: Arc<CryptoProvider>,
}

impl CertVerifier {
    /// A verifier accepting exactly `pinned` (at least one certificate).
    pub(crate) fn pinned(
        pinned: Vec<CertificateDer<'static>>,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, ClientError> {
        if pinned.is_empty() {
            return Err(ClientError::Config(
                "Trust::PinnedCert needs at least one certificate".into(),
            ));
        }
        Ok(Self {
            accepted: Accepted::Pinned(pinned),
            provider,
        })
    }

    /// A verifier accepting any certificate (development only).
    fn any(provider: Arc<CryptoProvider>) -> Self {
        Self {
            accepted: Accepted::Any,
            provider,
        }
    }
}

impl ServerCertVerifier for CertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let accepted = match &self.accepted {
            Accepted::Any => true,
            Accepted::Pinned(pinned) => pinned.iter().any(|p| p.as_ref() == end_entity.as_ref()),
        };
        if accepted {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert() -> CertificateDer<'static> {
        let certified =
            rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("generate");
        certified.cert.der().clone()
    }

    fn verify(verifier: &CertVerifier, cert: &CertificateDer<'_>) -> bool {
        let name = ServerName::try_from("localhost").expect("name");
        verifier
            .verify_server_cert(cert, &[], &name, &[], UnixTime::now())
            .is_ok()
    }

    #[test]
    fn pinned_verifier_accepts_only_the_pinned_certificate() {
        let (pinned, other) = (cert(), cert());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = CertVerifier::pinned(vec![pinned.clone()], provider).expect("verifier");
        assert!(verify(&verifier, &pinned));
        assert!(!verify(&verifier, &other));
        assert!(!verifier.supported_verify_schemes().is_empty());
    }

    #[test]
    fn insecure_dev_verifier_accepts_any_certificate() {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = CertVerifier::any(provider);
        assert!(verify(&verifier, &cert()));
        assert!(verify(&verifier, &cert()));
    }

    #[test]
    fn empty_pin_list_is_a_config_error() {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        assert!(matches!(
            CertVerifier::pinned(vec![], provider),
            Err(ClientError::Config(_))
        ));
    }

    #[test]
    fn every_trust_mode_builds_a_quic_capable_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = rcgen::generate_simple_self_signed(vec!["ca".into()]).expect("ca");
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, ca.cert.pem()).expect("write");
        for trust in [
            Trust::PinnedCert(vec![cert()]),
            Trust::CaFile(ca_path.clone()),
            Trust::InsecureDev,
        ] {
            let config = rustls_config(&trust).expect("config");
            assert_eq!(config.alpn_protocols, vec![ALPN.to_vec()]);
            quinn::crypto::rustls::QuicClientConfig::try_from(config).expect("QUIC usable");
        }
        let missing = Trust::CaFile(dir.path().join("missing.pem"));
        assert!(rustls_config(&missing).is_err());
    }
}
