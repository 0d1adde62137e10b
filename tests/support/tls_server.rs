//! HTTPS servers with generated certificates: one valid (signed by a test CA), one valid but
//! expiring in 5 days, one expired, one for the wrong host name, one self-signed, one
//! signed by a CA nobody trusts, and one that presents the trusted CA's own certificate as its
//! own. Each answers every request with `200 OK`.

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SanType};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use time::{Duration, OffsetDateTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The servers and the CA file that makes the "valid" ones trusted.
pub struct TlsServers {
    /// PEM file of the test CA (for `tls.ca_file`).
    pub ca_file: PathBuf,
    /// Valid for 127.0.0.1 for 90 days.
    pub valid: String,
    /// Valid for 127.0.0.1, expires in 5 days.
    pub expiring: String,
    /// Expired yesterday.
    pub expired: String,
    /// Valid, but for `wrong.example`.
    pub wrong_host: String,
    /// Self-signed leaf for 127.0.0.1.
    pub self_signed: String,
    /// Signed by a CA that is not in `ca_file`.
    pub unknown_issuer: String,
    /// Presents the CA certificate of `ca_file` itself (with its key) as the server's.
    pub ca_as_leaf: String,
    _dir: tempfile::TempDir,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.not_before = OffsetDateTime::now_utc() - Duration::days(30);
    params.not_after = OffsetDateTime::now_utc() + Duration::days(3650);
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA")
}

fn leaf_params(host: &str, from_days: i64, to_days: i64) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, host);
    params.subject_alt_names = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SanType::IpAddress(ip)],
        Err(_) => vec![SanType::DnsName(host.try_into().expect("dns name"))],
    };
    params.not_before = OffsetDateTime::now_utc() + Duration::days(from_days);
    params.not_after = OffsetDateTime::now_utc() + Duration::days(to_days);
    params
}

/// Serves `cert_pem`/`key` on a free port; returns `https://127.0.0.1:PORT/`.
fn serve(cert_der: rustls::pki_types::CertificateDer<'static>, key: &KeyPair) -> String {
    let key_der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key der");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert_der], key_der)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let rt = super::fakes::runtime();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
    let port = listener.local_addr().expect("addr").port();
    rt.spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(socket).await else { return };
                let mut buf = [0u8; 4096];
                let _ = tls.read(&mut buf).await;
                let _ = tls
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK")
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    format!("https://127.0.0.1:{port}/")
}

/// Starts all the servers.
pub fn start() -> TlsServers {
    let dir = tempfile::tempdir().expect("temp dir");
    let trusted = ca("mxwarden test CA");
    let stranger = ca("some other CA");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, trusted.pem()).expect("write CA");
    let signed = |issuer: &CertifiedIssuer<'static, KeyPair>, params: CertificateParams| {
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, issuer).expect("sign");
        serve(cert.der().clone(), &key)
    };
    let ip = Ipv4Addr::LOCALHOST.to_string();
    let self_signed = {
        let key = KeyPair::generate().expect("key");
        let cert = leaf_params(&ip, -1, 90).self_signed(&key).expect("self-sign");
        serve(cert.der().clone(), &key)
    };
    TlsServers {
        valid: signed(&trusted, leaf_params(&ip, -1, 90)),
        expiring: signed(&trusted, leaf_params(&ip, -1, 5)),
        expired: signed(&trusted, leaf_params(&ip, -60, -1)),
        wrong_host: signed(&trusted, leaf_params("wrong.example", -1, 90)),
        unknown_issuer: signed(&stranger, leaf_params(&ip, -1, 90)),
        ca_as_leaf: serve(trusted.der().clone(), trusted.key()),
        self_signed,
        ca_file,
        _dir: dir,
    }
}
