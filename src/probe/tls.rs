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
pub(crate) fn system_roots() -> RootCertStore {
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
pub(crate) fn client_config(system: &RootCertStore, options: &TlsOptions) -> Result<rustls::ClientConfig, String> {
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
pub(crate) struct SelfSigned;

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

/// A TLS failure in words, e.g. "TLS: certificate expired on 2026-01-01". Every error rustls
/// (and the certificate checks under it) can report is named here in plain words — never its
/// Debug text such as `Other(OtherError(CaUsedAsEndEntity))`; the long tail of protocol
/// details (rustls's `PeerMisbehaved`, `PeerIncompatible`, alerts) is spelled out as words.
pub(crate) fn describe(error: &Error, host: &str) -> String {
    match error {
        Error::InvalidCertificate(e) => format!("TLS: {}", certificate(e, host)),
        Error::AlertReceived(alert) => format!("TLS: the server refused the handshake ({})", alert_words(alert)),
        Error::InvalidMessage(_) | Error::InappropriateMessage { .. } => {
            "TLS: the server did not answer with TLS (is it plain HTTP on this port?)".into()
        }
        Error::InappropriateHandshakeMessage { .. } => {
            "TLS: the server sent handshake messages out of order (a broken TLS server, or something in between)".into()
        }
        Error::NoCertificatesPresented => "TLS: the server presented no certificate".into(),
        Error::UnsupportedNameType => format!("TLS: {host} is not a name a certificate can be checked against"),
        Error::DecryptError => {
            "TLS: a handshake message failed to decrypt or verify (a broken server, or something in between)".into()
        }
        Error::EncryptError => "TLS: a message could not be encrypted".into(),
        Error::PeerIncompatible(why) => {
            format!("TLS: the server and mxwarden share no usable TLS settings ({})", words(&format!("{why:?}")))
        }
        Error::PeerMisbehaved(why) => {
            format!("TLS: the server broke the TLS protocol ({})", words(&format!("{why:?}")))
        }
        Error::InvalidCertRevocationList(why) => {
            format!("TLS: a certificate revocation list is unusable ({})", words(&format!("{why:?}")))
        }
        Error::General(text) => format!("TLS handshake failed: {}", crate::text::escape_controls(text)),
        Error::FailedToGetCurrentTime => "TLS: this machine's clock could not be read".into(),
        Error::FailedToGetRandomBytes => "TLS: this machine's random number generator failed".into(),
        Error::HandshakeNotComplete => "TLS: the handshake did not complete".into(),
        Error::PeerSentOversizedRecord => "TLS: the server sent a record larger than TLS allows".into(),
        Error::NoApplicationProtocol => {
            "TLS: the server speaks neither HTTP/2 nor HTTP/1.1 (no common ALPN protocol)".into()
        }
        Error::BadMaxFragmentSize => "TLS: the configured maximum fragment size is invalid".into(),
        Error::InconsistentKeys(_) => "TLS: a certificate and its private key do not match".into(),
        Error::InvalidEncryptedClientHello(why) => {
            format!("TLS: encrypted client hello failed ({})", words(&format!("{why:?}")))
        }
        Error::Other(other) => format!("TLS: {}", other_words(other, host)),
        // rustls's errors are non-exhaustive: a newer one is still shown as words.
        other => format!("TLS handshake failed ({})", words(&format!("{other:?}"))),
    }
}

/// A certificate problem in words.
fn certificate(e: &CertificateError, host: &str) -> String {
    #[allow(deprecated)] // `UnsupportedSignatureAlgorithm` is still produced by older paths
    match e {
        CertificateError::BadEncoding => "certificate is not a well-formed certificate (damaged, or not DER)".into(),
        CertificateError::Expired => "certificate has expired".into(),
        CertificateError::ExpiredContext { not_after, .. } => {
            format!("certificate expired on {}", unix_date(not_after.as_secs()))
        }
        CertificateError::NotValidYet => "certificate is not valid yet (check the server's clock)".into(),
        CertificateError::NotValidYetContext { not_before, .. } => format!(
            "certificate is not valid yet: valid from {} (check the server's clock, and this one's)",
            unix_date(not_before.as_secs())
        ),
        CertificateError::NotValidForName => format!("hostname mismatch: certificate is not valid for {host}"),
        CertificateError::NotValidForNameContext { presented, .. } => {
            let names: Vec<String> = presented.iter().map(|n| crate::text::escape_controls(n).into_owned()).collect();
            if names.is_empty() {
                format!("hostname mismatch: certificate is not valid for {host} (it names no host at all)")
            } else {
                format!("hostname mismatch: certificate is not valid for {host} (it names {})", names.join(", "))
            }
        }
        CertificateError::UnknownIssuer => {
            "certificate signed by an unknown issuer (not a trusted root; for a private CA set tls.ca_file)".into()
        }
        CertificateError::BadSignature => "certificate signature is invalid (not signed by the issuer it names)".into(),
        CertificateError::UnsupportedSignatureAlgorithm
        | CertificateError::UnsupportedSignatureAlgorithmContext { .. } => {
            "certificate is signed with an algorithm that is not supported".into()
        }
        CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
            "certificate is signed with an algorithm that does not fit the issuer's key".into()
        }
        CertificateError::Revoked => "certificate has been revoked".into(),
        CertificateError::UnknownRevocationStatus => "certificate's revocation status is unknown".into(),
        CertificateError::ExpiredRevocationList => "certificate revocation list has expired".into(),
        CertificateError::ExpiredRevocationListContext { next_update, .. } => {
            format!("certificate revocation list expired on {}", unix_date(next_update.as_secs()))
        }
        CertificateError::UnhandledCriticalExtension => {
            "certificate has a critical extension that is not understood".into()
        }
        CertificateError::InvalidPurpose => "certificate is not meant for TLS servers".into(),
        CertificateError::InvalidPurposeContext { presented, .. } => {
            let allowed: Vec<String> = presented.iter().map(purpose_words).collect();
            if allowed.is_empty() {
                "certificate is not meant for TLS servers".into()
            } else {
                format!("certificate is not meant for TLS servers (it allows: {})", allowed.join(", "))
            }
        }
        CertificateError::InvalidOcspResponse => {
            "the server's stapled OCSP response (revocation status) is invalid".into()
        }
        CertificateError::ApplicationVerificationFailure => "certificate was rejected by an extra check".into(),
        CertificateError::Other(other) => other_words(other, host),
        other => format!("certificate rejected ({})", words(&format!("{other:?}"))),
    }
}

/// What a verifier passed through as `Other`: ours (self-signed), WebPKI's finer reasons
/// (a CA certificate served as the server's, …), or any other error's own text.
fn other_words(other: &rustls::OtherError, host: &str) -> String {
    let inner: &(dyn std::error::Error + 'static) = other.0.as_ref();
    if inner.downcast_ref::<SelfSigned>().is_some() {
        return "certificate is self-signed and not trusted (to trust it, set tls.ca_file to it)".into();
    }
    if let Some(e) = inner.downcast_ref::<webpki::Error>() {
        return webpki_words(e, host);
    }
    let text = inner.to_string();
    if text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '(' || c == ')') {
        words(&text)
    } else {
        crate::text::escape_controls(&text).into_owned()
    }
}

/// WebPKI's reasons that rustls does not translate, in words.
#[allow(deprecated)] // the `UnsupportedSignatureAlgorithm…` names are still produced
fn webpki_words(e: &webpki::Error, host: &str) -> String {
    use webpki::Error as W;
    match e {
        W::CaUsedAsEndEntity => "the server presented a CA certificate as its own certificate (it must present \
             a certificate issued for its name, signed by that CA — not the CA itself)"
            .into(),
        W::EndEntityUsedAsCa => {
            "a server certificate was used to sign another certificate in the chain (it is not a CA)".into()
        }
        W::CertDistrusted => "certificate's key is explicitly distrusted".into(),
        W::EmptyEkuExtension => "certificate's extended key usage lists no purpose at all".into(),
        W::ExtensionValueInvalid => "certificate has an invalid extension".into(),
        W::InvalidSerialNumber => "certificate's serial number is invalid".into(),
        W::MalformedDnsIdentifier => format!("a host name in the certificate, or {host}, is malformed"),
        W::MalformedExtensions => {
            "certificate's extensions are malformed (host names belong in the subject alternative names)".into()
        }
        W::InvalidNetworkMaskConstraint | W::MalformedNameConstraint => {
            "an issuer's name constraints are malformed".into()
        }
        W::NameConstraintViolation => "certificate names a host its issuer may not issue for (name constraints)".into(),
        W::PathLenConstraintViolated => "the chain is longer than an issuer allows (path length constraint)".into(),
        W::MaximumNameConstraintComparisonsExceeded
        | W::MaximumPathBuildCallsExceeded
        | W::MaximumPathDepthExceeded
        | W::MaximumSignatureChecksExceeded => "the certificate chain is too long or too tangled to verify".into(),
        W::SignatureAlgorithmMismatch => "certificate names two different signature algorithms".into(),
        W::UnsupportedCertVersion => "certificate is not an X.509 version 3 certificate".into(),
        W::UnsupportedCriticalExtension => "certificate has a critical extension that is not understood".into(),
        W::UnsupportedNameType => format!("{host} is not a name a certificate can be checked against"),
        // The ones rustls usually translates itself, in case a verifier passes them on as is.
        W::BadDer | W::BadDerTime | W::TrailingData(_) => certificate(&CertificateError::BadEncoding, host),
        W::CertExpired { not_after, .. } => {
            certificate(&CertificateError::ExpiredContext { time: *not_after, not_after: *not_after }, host)
        }
        W::CertNotValidYet { not_before, .. } => {
            certificate(&CertificateError::NotValidYetContext { time: *not_before, not_before: *not_before }, host)
        }
        W::InvalidCertValidity => "certificate's validity period is invalid (it ends before it starts)".into(),
        W::CertNotValidForName(_) => certificate(&CertificateError::NotValidForName, host),
        W::CertRevoked => certificate(&CertificateError::Revoked, host),
        W::UnknownIssuer => certificate(&CertificateError::UnknownIssuer, host),
        W::UnknownRevocationStatus => certificate(&CertificateError::UnknownRevocationStatus, host),
        W::InvalidSignatureForPublicKey => certificate(&CertificateError::BadSignature, host),
        W::RequiredEkuNotFound | W::RequiredEkuNotFoundContext(_) => {
            certificate(&CertificateError::InvalidPurpose, host)
        }
        W::UnsupportedSignatureAlgorithm
        | W::UnsupportedSignatureAlgorithmContext(_)
        | W::UnsupportedSignatureAlgorithmForPublicKey
        | W::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => {
            "certificate is signed with an algorithm that is not supported".into()
        }
        W::CrlExpired { next_update, .. } => {
            format!("certificate revocation list expired on {}", unix_date(next_update.as_secs()))
        }
        W::InvalidCrlNumber
        | W::InvalidCrlSignatureForPublicKey
        | W::IssuerNotCrlSigner
        | W::UnsupportedCrlIssuingDistributionPoint
        | W::UnsupportedCrlVersion
        | W::UnsupportedDeltaCrl
        | W::UnsupportedIndirectCrl
        | W::UnsupportedRevocationReason
        | W::UnsupportedRevocationReasonsPartitioning
        | W::UnsupportedCrlSignatureAlgorithm
        | W::UnsupportedCrlSignatureAlgorithmContext(_)
        | W::UnsupportedCrlSignatureAlgorithmForPublicKey
        | W::UnsupportedCrlSignatureAlgorithmForPublicKeyContext(_) => {
            format!("a certificate revocation list is unusable ({})", words(&format!("{e:?}")))
        }
        other => format!("certificate rejected ({})", words(&format!("{other:?}"))),
    }
}

/// An extended key usage in words.
fn purpose_words(p: &rustls::ExtendedKeyPurpose) -> String {
    match p {
        rustls::ExtendedKeyPurpose::ClientAuth => "client authentication".into(),
        rustls::ExtendedKeyPurpose::ServerAuth => "server authentication".into(),
        rustls::ExtendedKeyPurpose::Other(oid) => {
            format!("OID {}", oid.iter().map(ToString::to_string).collect::<Vec<_>>().join("."))
        }
    }
}

/// A TLS alert from the server in words.
fn alert_words(alert: &rustls::AlertDescription) -> String {
    use rustls::AlertDescription as A;
    match alert {
        A::HandshakeFailure => "handshake failure: no cipher suite or setting in common".into(),
        A::ProtocolVersion => "protocol version: it accepts neither TLS 1.2 nor 1.3".into(),
        A::UnrecognisedName => "unrecognized name: it does not serve this host name".into(),
        A::CertificateRequired => "it requires a client certificate".into(),
        A::AccessDenied => "access denied".into(),
        A::InternalError => "internal error on the server".into(),
        A::Unknown(code) => format!("alert number {code}"),
        other => words(&format!("{other:?}")),
    }
}

/// `NoCipherSuitesInCommon(…)` → `no cipher suites in common`: the leading name of a Debug
/// text as lowercase words, for the long tail of rustls's enums.
fn words(debug: &str) -> String {
    let name: Vec<char> = debug.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
    let mut out = String::new();
    for (i, &c) in name.iter().enumerate() {
        if c == '_' {
            out.push(' ');
            continue;
        }
        let prev = i.checked_sub(1).map(|p| name[p]);
        let next_lower = name.get(i + 1).is_some_and(char::is_ascii_lowercase);
        let starts_word = c.is_ascii_uppercase()
            && prev.is_some_and(|p| {
                p.is_ascii_lowercase() || p.is_ascii_digit() || (p.is_ascii_uppercase() && next_lower)
            });
        if starts_word && !out.ends_with(' ') {
            out.push(' ');
        }
        out.push(c.to_ascii_lowercase());
    }
    if out.is_empty() { "no details".into() } else { out }
}

fn unix_date(seconds: u64) -> String {
    i64::try_from(seconds)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .map_or_else(|| format!("{seconds} (unix time)"), |t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::{AlertDescription, ExtendedKeyPurpose, OtherError};
    use std::time::Duration;

    /// Why `text` reads like Rust's Debug output rather than words, if it does.
    fn debug_looking(text: &str) -> Option<String> {
        for needle in ["Other(", "OtherError", "Context", "{", "}", "Some(", "None", "::"] {
            if text.contains(needle) {
                return Some(format!("contains {needle:?}"));
            }
        }
        for token in text.split_whitespace() {
            let chars: Vec<char> = token.chars().collect();
            if chars.windows(2).any(|w| w[0].is_ascii_lowercase() && w[1].is_ascii_uppercase()) {
                return Some(format!("CamelCase word {token:?}"));
            }
            if chars.windows(2).any(|w| w[0].is_ascii_alphanumeric() && w[1] == '(') {
                return Some(format!("a call-like {token:?}"));
            }
        }
        None
    }

    fn time(secs: u64) -> UnixTime {
        UnixTime::since_unix_epoch(Duration::from_secs(secs))
    }

    fn other(e: impl std::error::Error + Send + Sync + 'static) -> OtherError {
        OtherError(Arc::new(e))
    }

    #[allow(deprecated)]
    fn certificate_errors() -> Vec<CertificateError> {
        vec![
            CertificateError::BadEncoding,
            CertificateError::Expired,
            CertificateError::ExpiredContext { time: time(1_800_000_000), not_after: time(1_767_225_600) },
            CertificateError::NotValidYet,
            CertificateError::NotValidYetContext { time: time(1_700_000_000), not_before: time(1_767_225_600) },
            CertificateError::Revoked,
            CertificateError::UnhandledCriticalExtension,
            CertificateError::UnknownIssuer,
            CertificateError::UnknownRevocationStatus,
            CertificateError::ExpiredRevocationList,
            CertificateError::ExpiredRevocationListContext { time: time(1_800_000_000), next_update: time(1) },
            CertificateError::BadSignature,
            CertificateError::UnsupportedSignatureAlgorithm,
            CertificateError::UnsupportedSignatureAlgorithmContext {
                signature_algorithm_id: vec![1, 2, 3],
                supported_algorithms: vec![],
            },
            CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext {
                signature_algorithm_id: vec![1],
                public_key_algorithm_id: vec![2],
            },
            CertificateError::NotValidForName,
            CertificateError::NotValidForNameContext {
                expected: ServerName::try_from("matrix.example.org").unwrap().to_owned(),
                presented: vec!["other.example".into(), "evil\x1b[31m.example".into()],
            },
            CertificateError::NotValidForNameContext {
                expected: ServerName::try_from("matrix.example.org").unwrap().to_owned(),
                presented: vec![],
            },
            CertificateError::InvalidPurpose,
            CertificateError::InvalidPurposeContext {
                required: ExtendedKeyPurpose::ServerAuth,
                presented: vec![ExtendedKeyPurpose::ClientAuth, ExtendedKeyPurpose::Other(vec![1, 3, 6, 1])],
            },
            CertificateError::InvalidOcspResponse,
            CertificateError::ApplicationVerificationFailure,
            CertificateError::Other(other(SelfSigned)),
            CertificateError::Other(other(std::io::Error::other("SomeOtherReason"))),
            CertificateError::Other(other(std::io::Error::other("a verifier's own sentence"))),
        ]
    }

    #[allow(deprecated)]
    fn webpki_errors() -> Vec<webpki::Error> {
        use webpki::Error as W;
        vec![
            W::BadDer,
            W::BadDerTime,
            W::CaUsedAsEndEntity,
            W::CertDistrusted,
            W::EmptyEkuExtension,
            W::EndEntityUsedAsCa,
            W::ExtensionValueInvalid,
            W::InvalidCertValidity,
            W::InvalidCrlNumber,
            W::InvalidNetworkMaskConstraint,
            W::InvalidSerialNumber,
            W::InvalidCrlSignatureForPublicKey,
            W::InvalidSignatureForPublicKey,
            W::IssuerNotCrlSigner,
            W::MalformedDnsIdentifier,
            W::MalformedExtensions,
            W::MalformedNameConstraint,
            W::MaximumNameConstraintComparisonsExceeded,
            W::MaximumPathBuildCallsExceeded,
            W::MaximumPathDepthExceeded,
            W::MaximumSignatureChecksExceeded,
            W::NameConstraintViolation,
            W::PathLenConstraintViolated,
            W::RequiredEkuNotFound,
            W::SignatureAlgorithmMismatch,
            W::UnknownIssuer,
            W::UnknownRevocationStatus,
            W::UnsupportedCertVersion,
            W::UnsupportedCriticalExtension,
            W::UnsupportedCrlIssuingDistributionPoint,
            W::UnsupportedCrlVersion,
            W::UnsupportedDeltaCrl,
            W::UnsupportedIndirectCrl,
            W::UnsupportedNameType,
            W::UnsupportedRevocationReason,
            W::UnsupportedRevocationReasonsPartitioning,
            W::UnsupportedCrlSignatureAlgorithm,
            W::UnsupportedSignatureAlgorithm,
            W::UnsupportedCrlSignatureAlgorithmForPublicKey,
            W::UnsupportedSignatureAlgorithmForPublicKey,
        ]
    }

    fn errors() -> Vec<Error> {
        let mut all: Vec<Error> = certificate_errors().into_iter().map(Error::InvalidCertificate).collect();
        for e in webpki_errors() {
            all.push(Error::InvalidCertificate(CertificateError::Other(other(e.clone()))));
            all.push(Error::Other(other(e)));
        }
        all.extend([
            Error::InappropriateMessage {
                expect_types: vec![rustls::ContentType::Handshake],
                got_type: rustls::ContentType::ApplicationData,
            },
            Error::InappropriateHandshakeMessage {
                expect_types: vec![rustls::HandshakeType::ServerHello],
                got_type: rustls::HandshakeType::Finished,
            },
            Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
            Error::NoCertificatesPresented,
            Error::UnsupportedNameType,
            Error::DecryptError,
            Error::EncryptError,
            Error::PeerIncompatible(rustls::PeerIncompatible::NoCipherSuitesInCommon),
            Error::PeerIncompatible(rustls::PeerIncompatible::ServerRejectedEncryptedClientHello(None)),
            Error::PeerMisbehaved(rustls::PeerMisbehaved::SelectedUnofferedCipherSuite),
            Error::AlertReceived(AlertDescription::HandshakeFailure),
            Error::AlertReceived(AlertDescription::ProtocolVersion),
            Error::AlertReceived(AlertDescription::UnrecognisedName),
            Error::AlertReceived(AlertDescription::BadCertificate),
            Error::AlertReceived(AlertDescription::Unknown(250)),
            Error::InvalidCertRevocationList(rustls::CertRevocationListError::BadSignature),
            Error::General("something odd".into()),
            Error::FailedToGetCurrentTime,
            Error::FailedToGetRandomBytes,
            Error::HandshakeNotComplete,
            Error::PeerSentOversizedRecord,
            Error::NoApplicationProtocol,
            Error::BadMaxFragmentSize,
            Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch),
            Error::Other(other(SelfSigned)),
        ]);
        all
    }

    #[test]
    fn every_tls_error_reads_as_words_not_debug_text() {
        let all = errors();
        assert!(all.len() > 100, "the table covers rustls's and WebPKI's errors: {}", all.len());
        for e in &all {
            let text = describe(e, "matrix.example.org");
            assert!(text.starts_with("TLS"), "{e:?} → {text}");
            assert!(text.len() > "TLS: ".len() + 8, "{e:?} says too little: {text}");
            if let Some(why) = debug_looking(&text) {
                panic!("{e:?} is shown as {text:?}: {why}");
            }
            assert!(!text.chars().any(crate::text::is_unsafe), "{e:?} → {text:?} holds a control character");
        }
    }

    #[test]
    fn the_common_failures_say_what_happened() {
        let ca = Error::InvalidCertificate(CertificateError::Other(other(webpki::Error::CaUsedAsEndEntity)));
        let cases = [
            (ca, "TLS: the server presented a CA certificate as its own certificate", "the finding"),
            (
                Error::InvalidCertificate(CertificateError::ExpiredContext {
                    time: time(1_800_000_000),
                    not_after: time(1_767_225_600),
                }),
                "TLS: certificate expired on 2026-01-01 00:00 UTC",
                "expired, with the date",
            ),
            (
                Error::InvalidCertificate(CertificateError::NotValidYetContext {
                    time: time(1),
                    not_before: time(1_767_225_600),
                }),
                "TLS: certificate is not valid yet: valid from 2026-01-01 00:00 UTC",
                "not yet valid, with the date",
            ),
            (
                Error::InvalidCertificate(CertificateError::UnknownIssuer),
                "TLS: certificate signed by an unknown issuer",
                "unknown issuer",
            ),
            (
                Error::InvalidCertificate(CertificateError::NotValidForNameContext {
                    expected: ServerName::try_from("matrix.example.org").unwrap().to_owned(),
                    presented: vec!["evil\x1b[31m.example".into()],
                }),
                "TLS: hostname mismatch: certificate is not valid for matrix.example.org (it names evil\\x1b[31m.example)",
                "a name from the certificate is shown escaped",
            ),
            (
                Error::InvalidCertificate(CertificateError::BadSignature),
                "TLS: certificate signature is invalid",
                "bad signature",
            ),
            (Error::InvalidCertificate(CertificateError::Revoked), "TLS: certificate has been revoked", "revoked"),
            (
                Error::PeerIncompatible(rustls::PeerIncompatible::NoCipherSuitesInCommon),
                "TLS: the server and mxwarden share no usable TLS settings (no cipher suites in common)",
                "the long tail as words",
            ),
            (
                Error::AlertReceived(AlertDescription::Unknown(250)),
                "TLS: the server refused the handshake (alert number 250)",
                "an unknown alert by number",
            ),
        ];
        for (e, want, why) in cases {
            let text = describe(&e, "matrix.example.org");
            assert!(text.starts_with(want), "{why}: {text}");
        }
    }

    #[test]
    fn debug_names_become_words() {
        let cases = [
            ("NoCipherSuitesInCommon", "no cipher suites in common"),
            ("ServerRejectedEncryptedClientHello(None)", "server rejected encrypted client hello"),
            ("CaUsedAsEndEntity", "ca used as end entity"),
            ("TLS13Only", "tls13 only"),
            ("HTTPError", "http error"),
            ("(", "no details"),
        ];
        for (debug, want) in cases {
            assert_eq!(words(debug), want);
        }
    }
}
