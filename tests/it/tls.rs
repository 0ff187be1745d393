//! STARTTLS with a certificate generated in the test (rcgen): a client that requires TLS
//! delivers over it, and a handshake of garbage is cut without harming anyone else.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

use crate::helpers::{Daemon, Smtp, deliver, message};

/// A daemon with STARTTLS on, and the certificate a client should trust.
async fn tls_daemon() -> (Daemon, CertificateDer<'static>) {
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(dir.path().join("tls.crt"), certified.cert.pem()).unwrap();
    std::fs::write(
        dir.path().join("tls.key"),
        certified.signing_key.serialize_pem(),
    )
    .unwrap();
    let text = format!(
        "[smtp]\nlisten = [\"127.0.0.1:0\"]\ntls_cert = \"tls.crt\"\ntls_key = \"tls.key\"\n\
         [http]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"{}\"\n\
         [[integrations]]\nid = \"ops\"\ntype = \"email\"\naddresses = [\"ops@alerts.localhost\"]\n",
        dir.path().join("store").display()
    );
    let config = siren::Config::parse(&text, &dir.path().join("siren.toml")).unwrap();
    let mut d = Daemon::start_config(config).await;
    d.dir = Some(dir);
    (d, certified.cert.der().clone())
}

/// Reads one whole reply from any stream.
async fn reply<S: AsyncRead + Unpin>(rd: &mut BufReader<S>) -> String {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        if rd.read_line(&mut line).await.unwrap_or(0) == 0 {
            return all;
        }
        all.push_str(&line);
        if line.as_bytes().get(3) != Some(&b'-') {
            return all;
        }
    }
}

async fn cmd<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut BufReader<S>,
    line: &str,
    want: &str,
) -> String {
    s.get_mut()
        .write_all(format!("{line}\r\n").as_bytes())
        .await
        .unwrap();
    let r = reply(s).await;
    assert!(r.starts_with(want), "{line}: expected {want}, got {r:?}");
    r
}

#[tokio::test]
async fn a_client_that_requires_tls_delivers_over_starttls() {
    let (d, cert) = tls_daemon().await;
    let tcp = tokio::net::TcpStream::connect(d.smtp).await.unwrap();
    let mut plain = BufReader::new(tcp);
    assert!(reply(&mut plain).await.starts_with("220"));
    let ehlo = cmd(&mut plain, "EHLO client.test", "250").await;
    assert!(ehlo.contains("STARTTLS"), "{ehlo}");
    cmd(&mut plain, "STARTTLS", "220 2.0.0").await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tls = connector
        .connect(
            ServerName::try_from("localhost").unwrap(),
            plain.into_inner(),
        )
        .await
        .expect("TLS handshake with the configured certificate");
    let mut s = BufReader::new(tls);
    let ehlo = cmd(&mut s, "EHLO client.test", "250").await;
    assert!(
        !ehlo.contains("STARTTLS"),
        "not offered again inside TLS: {ehlo}"
    );
    cmd(&mut s, "MAIL FROM:<a@example.com>", "250").await;
    cmd(&mut s, "RCPT TO:<ops@alerts.localhost>", "250").await;
    cmd(&mut s, "DATA", "354").await;
    s.get_mut()
        .write_all(&message("over tls", "tls@x"))
        .await
        .unwrap();
    cmd(&mut s, ".", "250 2.0.0").await;
    cmd(&mut s, "QUIT", "221").await;
    let logs = d.logs("ops").await;
    assert_eq!(logs[0]["data"]["message_id"], "tls@x");
    d.stop().await;
}

#[tokio::test]
async fn a_garbage_tls_handshake_is_cut_and_others_are_served() {
    let (d, _) = tls_daemon().await;
    let mut c = Smtp::greeted(d.smtp).await;
    c.cmd("EHLO client.test", "250").await;
    c.cmd("STARTTLS", "220").await;
    c.send_raw(b"\x16\x03\x01\x00\x05hello this is not a TLS ClientHello\r\nMAIL FROM:<x@y>\r\n")
        .await;
    // The handshake fails and the connection is dropped: no SMTP reply comes back (a TLS alert
    // at most), so the MAIL FROM after the garbage never ran.
    let after = c.reply().await;
    assert!(!after.contains("250"), "{after:?}");
    // Plain commands pipelined after STARTTLS are never run as SMTP.
    deliver(
        d.smtp,
        &["ops@alerts.localhost"],
        &message("plain", "plain@x"),
    )
    .await;
    assert_eq!(d.logs("ops").await.len(), 1);
    d.stop().await;
}

#[test]
fn tls_keys_are_checked_when_the_configuration_loads() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.pem"), "not a certificate").unwrap();
    let cases = [
        ("tls_cert = \"bad.pem\"", "smtp.tls_key"),
        (
            "tls_cert = \"bad.pem\"\ntls_key = \"bad.pem\"",
            "smtp.tls_cert",
        ),
        (
            "tls_cert = \"missing.pem\"\ntls_key = \"bad.pem\"",
            "smtp.tls_cert",
        ),
    ];
    for (keys, named) in cases {
        let text = format!("[smtp]\n{keys}\n");
        let err = siren::Config::parse(&text, &dir.path().join("siren.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(named), "{keys}: {err}");
    }
}
