//! TLS for probes: one rustls configuration per set of TLS options (system roots plus an
//! optional private CA, or verification off), with a verifier that tells a self-signed
//! certificate apart from one by an unknown authority, and words for every handshake failure.

use crate::probe::spec::TlsOptions;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};
use std::sync::Arc;

/// The system's trusted roots, loaded once per process run.
pub fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::warn!(%error, "Could not read some system CA certificates.");
    }
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    tracing::debug!(added, ignored, "Loaded system CA certificates.");
    roots
}

/// The rustls client configuration for `options`.
pub fn client_config(system: &RootCertStore, options: &TlsOptions) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = if options.insecure_skip_verify {
        Arc::new(AcceptAny(provider.clone()))
    } else {
        let mut roots = system.clone();
        if let Some(path) = &options.ca_file {
            let pem = std::fs::read(path).map_err(|e| format!("cannot read tls.ca_file {}: {e}", path.display()))?;
            let certs: Vec<CertificateDer<'static>> = rustls_pki_types::pem::PemObject::pem_slice_iter(&pem)
                .collect::<Result<_, _>>()
                .map_err(|e| format!("tls.ca_file {} is not PEM certificates: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!("tls.ca_file {} holds no certificates", path.display()));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| format!("tls.ca_file {}: unusable certificate: {e}", path.display()))?;
            }
        }
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| format!("cannot build the certificate verifier: {e}"))?;
        Arc::new(NamingVerifier { inner })
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Marks a certificate that signed itself, so the probe can say so.
#[derive(Debug)]
pub struct SelfSigned;

impl std::fmt::Display for SelfSigned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("self-signed certificate")
    }
}

impl std::error::Error for SelfSigned {}

/// WebPKI verification that reports self-signed certificates as such.
#[derive(Debug)]
struct NamingVerifier {
    inner: Arc<WebPkiServerVerifier>,
}

fn is_self_signed(cert: &CertificateDer<'_>) -> bool {
    x509_parser::parse_x509_certificate(cert.as_ref())
        .map(|(_, c)| c.subject().as_raw() == c.issuer().as_raw())
        .unwrap_or(false)
}

impl ServerCertVerifier for NamingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(Error::InvalidCertificate(CertificateError::UnknownIssuer))
                if intermediates.is_empty() && is_self_signed(end_entity) =>
            {
                Err(Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(SelfSigned)))))
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `insecure_skip_verify`: any certificate is accepted; handshake signatures are still checked.
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS failure in words, e.g. "TLS: certificate expired on 2026-01-01".
pub fn describe(error: &Error, host: &str) -> String {
    let certificate = |e: &CertificateError| -> String {
        match e {
            CertificateError::Expired => "certificate has expired".into(),
            CertificateError::ExpiredContext { not_after, .. } => {
                format!("certificate expired on {}", unix_date(not_after.as_secs()))
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "certificate is not valid yet (check the server's clock)".into()
            }
            CertificateError::NotValidForName => format!("hostname mismatch: certificate is not valid for {host}"),
            CertificateError::NotValidForNameContext { presented, .. } => {
                format!("hostname mismatch: certificate is not valid for {host} (it names {})", presented.join(", "))
            }
            CertificateError::UnknownIssuer => {
                "certificate signed by an unknown issuer (not a trusted root; for a private CA set tls.ca_file)".into()
            }
            CertificateError::Other(other) if other.0.downcast_ref::<SelfSigned>().is_some() => {
                "certificate is self-signed and not trusted (to trust it, set tls.ca_file to it)".into()
            }
            CertificateError::BadSignature => "certificate signature is invalid".into(),
            CertificateError::Revoked => "certificate has been revoked".into(),
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                "certificate is not meant for TLS servers".into()
            }
            other => format!("certificate rejected: {other}"),
        }
    };
    match error {
        Error::InvalidCertificate(e) => format!("TLS: {}", certificate(e)),
        Error::AlertReceived(alert) => format!("TLS: the server refused the handshake (alert {alert:?})"),
        Error::InvalidMessage(_) | Error::InappropriateMessage { .. } => {
            "TLS: the server did not answer with TLS (is it plain HTTP on this port?)".into()
        }
        Error::NoCertificatesPresented => "TLS: the server presented no certificate".into(),
        other => format!("TLS handshake failed: {other}"),
    }
}

fn unix_date(seconds: u64) -> String {
    i64::try_from(seconds)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .map_or_else(|| format!("{seconds} (unix time)"), |t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
}
