//! TLS toward a bridge behind a private CA: verification is always on; `--ca-file` (the
//! client's `extra_ca_pem`) adds the CA, and nothing else makes an unknown certificate pass.

use opsync_shared::BearerToken;
use opsync_shared::onepassword;
use opsync_shared::scim::{ClientConfig, ScimClient};
use opsync_tests::bridge::{BridgeConfig, MockBridge};
use opsync_tests::helpers::test_client_config;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::sync::Arc;

/// Serves `target` (the plain-HTTP emulator) over TLS with a fresh self-signed certificate for
/// `localhost`; returns the HTTPS port and the certificate in PEM.
async fn tls_front(target: std::net::SocketAddr) -> (u16, String) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let pem = certified.cert.pem();
    let cert = CertificateDer::from(certified.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let config = tokio_rustls::rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // Terminate TLS and relay the bytes to the emulator.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut upstream) = tokio::net::TcpStream::connect(target).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
            });
        }
    });
    (port, pem)
}

#[tokio::test]
async fn a_private_ca_is_trusted_only_when_given() {
    let bridge = MockBridge::start(BridgeConfig {
        users: 12,
        ..BridgeConfig::default()
    })
    .await;
    let (port, pem) = tls_front(bridge.addr()).await;
    let url = format!("https://localhost:{port}");
    let token = || BearerToken::new(bridge.token()).unwrap();
    let https = ClientConfig {
        allow_http: false,
        ..test_client_config()
    };

    // Without the CA: the certificate is unknown, verification fails, nothing is read.
    let client = ScimClient::new(&url, token(), https.clone()).unwrap();
    let err = onepassword::discover(&client).await.unwrap_err();
    assert_eq!(err.kind(), "tls_error", "{err}");
    assert!(bridge.requests().is_empty());

    // With the CA: the same bridge verifies and answers.
    let with_ca = ClientConfig {
        extra_ca_pem: Some(pem.into_bytes()),
        ..https
    };
    let mut client = ScimClient::new(&url, token(), with_ca).unwrap();
    let d = onepassword::discover(&client).await.unwrap();
    client.set_base(d.base);
    let s = client.list_users(|_, _| {}).await.unwrap();
    assert_eq!(s.users.len(), 12);
    bridge.assert_only_gets();
}
