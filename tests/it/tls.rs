//! STARTTLS with a certificate generated in the test (rcgen): a client that requires TLS
//! delivers over it, and a handshake of garbage is cut without harming anyone else. AUTH PLAIN
//! and LOGIN: refused before TLS, accepted inside it (raw client and lettre), wrong passwords
//! answered 535 until the error limit, and `require_auth` keeps MAIL for authenticated clients.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::helpers::{Daemon, Smtp, deliver, message};

/// The two SMTP users of [`auth_daemon`]: one with its password in a file, one inline.
const AM: (&str, &str) = ("alertmanager", "file-secret");
const NAGIOS: (&str, &str) = ("nagios", "inline secret");

/// A daemon with STARTTLS on, and the certificate a client should trust.
async fn tls_daemon() -> (Daemon, CertificateDer<'static>) {
    tls_daemon_with("", "").await
}

/// A daemon with STARTTLS, the users [`AM`] and [`NAGIOS`], and `require_auth` as given.
async fn auth_daemon(require_auth: bool) -> (Daemon, CertificateDer<'static>) {
    auth_daemon_with(require_auth, "").await
}

/// [`auth_daemon`] with more `[smtp]` keys.
async fn auth_daemon_with(
    require_auth: bool,
    smtp_keys: &str,
) -> (Daemon, CertificateDer<'static>) {
    let users = format!(
        "[[smtp.users]]\nname = \"{}\"\npassword_file = \"smtp-password\"\n\
         [[smtp.users]]\nname = \"{}\"\npassword = \"{}\"\n",
        AM.0, NAGIOS.0, NAGIOS.1
    );
    tls_daemon_with(
        &format!("require_auth = {require_auth}\n{smtp_keys}"),
        &users,
    )
    .await
}

/// `smtp_keys` go into `[smtp]`, `tail` at the end of the file.
async fn tls_daemon_with(smtp_keys: &str, tail: &str) -> (Daemon, CertificateDer<'static>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("smtp-password"), format!("{}\n", AM.1)).unwrap();
    let cert = write_certificate(dir.path());
    let text = format!(
        "[smtp]\nlisten = [\"127.0.0.1:0\"]\ntls_cert = \"tls.crt\"\ntls_key = \"tls.key\"\n{smtp_keys}\n\
         [http]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"{}\"\n\
         [[integrations]]\nid = \"ops\"\ntype = \"email\"\naddresses = [\"ops@alerts.localhost\"]\n{tail}",
        dir.path().join("store").display()
    );
    let config = siren::Config::parse(&text, &dir.path().join("siren.toml")).unwrap();
    let mut d = Daemon::start_config(config).await;
    d.dir = Some(dir);
    (d, cert)
}

/// Writes a new self-signed certificate for `localhost` and its key as `tls.crt` and
/// `tls.key` in `dir` (where `tls_cert`/`tls_key` find them); returns the certificate.
pub fn write_certificate(dir: &std::path::Path) -> CertificateDer<'static> {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(dir.join("tls.crt"), certified.cert.pem()).unwrap();
    std::fs::write(dir.join("tls.key"), certified.signing_key.serialize_pem()).unwrap();
    certified.cert.der().clone()
}

/// Reads one whole reply from any stream.
pub async fn reply<S: AsyncRead + Unpin>(rd: &mut BufReader<S>) -> String {
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

pub async fn cmd<S: AsyncRead + AsyncWrite + Unpin>(
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

/// Connects, says EHLO, asks for STARTTLS and completes the handshake trusting `cert`: the
/// session is ready for the EHLO that TLS requires anew.
pub async fn starttls(
    smtp: std::net::SocketAddr,
    cert: &CertificateDer<'static>,
) -> BufReader<TlsStream<TcpStream>> {
    try_starttls(smtp, cert)
        .await
        .expect("TLS handshake with the configured certificate")
}

/// As [`starttls`], with the handshake's outcome.
pub async fn try_starttls(
    smtp: std::net::SocketAddr,
    cert: &CertificateDer<'static>,
) -> std::io::Result<BufReader<TlsStream<TcpStream>>> {
    starttls_on(TcpStream::connect(smtp).await?, cert).await
}

/// As [`try_starttls`] on a connection the caller made (e.g. from another address).
pub async fn starttls_on(
    tcp: TcpStream,
    cert: &CertificateDer<'static>,
) -> std::io::Result<BufReader<TlsStream<TcpStream>>> {
    let mut plain = BufReader::new(tcp);
    assert!(reply(&mut plain).await.starts_with("220"));
    let ehlo = cmd(&mut plain, "EHLO client.test", "250").await;
    assert!(ehlo.contains("STARTTLS"), "{ehlo}");
    cmd(&mut plain, "STARTTLS", "220 2.0.0").await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
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
        .await?;
    Ok(BufReader::new(tls))
}

#[tokio::test]
async fn a_client_that_requires_tls_delivers_over_starttls() {
    let (d, cert) = tls_daemon().await;
    let mut s = starttls(d.smtp, &cert).await;
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

/// One scrape of `/metrics`: the value of the series written exactly as exposed.
async fn metric(d: &Daemon, series: &str) -> f64 {
    let text = reqwest::get(format!("http://{}/metrics", d.http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let prefix = format!("{series} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
        .parse()
        .unwrap()
}

fn plain(user: &str, password: &str) -> String {
    B64.encode(format!("\0{user}\0{password}"))
}

/// MAIL, RCPT, DATA and the message, answered 250 at the end.
async fn send_one<S: AsyncRead + AsyncWrite + Unpin>(s: &mut BufReader<S>, id: &str) {
    cmd(s, "MAIL FROM:<a@example.com>", "250").await;
    cmd(s, "RCPT TO:<ops@alerts.localhost>", "250").await;
    cmd(s, "DATA", "354").await;
    s.get_mut().write_all(&message(id, id)).await.unwrap();
    cmd(s, ".", "250 2.0.0").await;
}

#[tokio::test]
async fn auth_is_neither_offered_nor_accepted_before_tls() {
    let (d, _) = auth_daemon(false).await;
    let mut c = Smtp::greeted(d.smtp).await;
    let ehlo = c.cmd("EHLO client.test", "250").await;
    assert!(!ehlo.contains("AUTH"), "AUTH offered in the clear: {ehlo}");
    let r = c
        .cmd(&format!("AUTH PLAIN {}", plain(AM.0, AM.1)), "538 5.7.11")
        .await;
    assert!(r.contains("Encryption required"), "{r}");
    c.cmd("AUTH LOGIN", "538 5.7.11").await;
    // Without require_auth, mail without AUTH is still taken.
    c.cmd("MAIL FROM:<a@example.com>", "250").await;
    c.cmd("QUIT", "221").await;
    let reason = "siren_messages_rejected_total{protocol=\"smtp\",reason=\"encryption_required\"}";
    assert_eq!(metric(&d, reason).await, 2.0);
    d.stop().await;
}

#[tokio::test]
async fn auth_plain_and_login_succeed_after_starttls() {
    let (d, cert) = auth_daemon(false).await;

    // PLAIN with an initial response (the password from password_file).
    let mut s = starttls(d.smtp, &cert).await;
    let ehlo = cmd(&mut s, "EHLO client.test", "250").await;
    assert!(ehlo.contains("250-AUTH PLAIN LOGIN\r\n"), "{ehlo}");
    cmd(&mut s, "AUTH PLAIN", "334").await;
    cmd(&mut s, "*", "501").await;
    let ok = cmd(
        &mut s,
        &format!("AUTH PLAIN {}", plain(AM.0, AM.1)),
        "235 2.7.0",
    )
    .await;
    assert!(ok.contains("successful"), "{ok}");
    cmd(
        &mut s,
        &format!("AUTH PLAIN {}", plain(AM.0, AM.1)),
        "503 5.5.1",
    )
    .await;
    send_one(&mut s, "plain@x").await;
    cmd(&mut s, "QUIT", "221").await;

    // LOGIN, user name and password each after its own challenge.
    let mut s = starttls(d.smtp, &cert).await;
    cmd(&mut s, "EHLO client.test", "250").await;
    cmd(&mut s, "AUTH LOGIN", "334 VXNlcm5hbWU6").await;
    cmd(&mut s, &B64.encode(NAGIOS.0), "334 UGFzc3dvcmQ6").await;
    cmd(&mut s, &B64.encode(NAGIOS.1), "235 2.7.0").await;
    send_one(&mut s, "login@x").await;
    cmd(&mut s, "QUIT", "221").await;

    // PLAIN with the credentials after an empty challenge.
    let mut s = starttls(d.smtp, &cert).await;
    cmd(&mut s, "EHLO client.test", "250").await;
    cmd(&mut s, "AUTH PLAIN", "334").await;
    cmd(&mut s, &plain(NAGIOS.0, NAGIOS.1), "235 2.7.0").await;
    cmd(&mut s, "QUIT", "221").await;

    assert_eq!(d.logs("ops").await.len(), 2);
    let auth =
        |m: &str, r: &str| format!("siren_smtp_auth_total{{mechanism=\"{m}\",result=\"{r}\"}}");
    assert_eq!(metric(&d, &auth("plain", "success")).await, 2.0);
    assert_eq!(metric(&d, &auth("login", "success")).await, 1.0);
    assert_eq!(metric(&d, &auth("plain", "failure")).await, 0.0);
    d.stop().await;
}

#[tokio::test]
async fn wrong_credentials_get_535_and_repeated_failures_end_the_session() {
    // The AUTH budgets raised and their waits off, so that the protocol-error limit is what
    // ends the session here (the budgets have their own tests in `budgets`).
    let budgets =
        "auth_errors_max = 20\nauth_errors_wait = \"0s\"\nmax_auth_error_rate_per_client = 0";
    let (d, cert) = auth_daemon_with(true, budgets).await;
    let mut s = starttls(d.smtp, &cert).await;
    cmd(&mut s, "EHLO client.test", "250").await;
    // A wrong password, a password of another user, another identity in authzid.
    let wrong = [
        B64.encode(format!("\0{}\0wrong", AM.0)),
        plain(AM.0, NAGIOS.1),
        B64.encode(format!("{}\0{}\0{}", NAGIOS.0, AM.0, AM.1)),
    ];
    for w in &wrong {
        cmd(&mut s, &format!("AUTH PLAIN {w}"), "535 5.7.8").await;
    }
    cmd(&mut s, "AUTH LOGIN", "334").await;
    cmd(&mut s, &B64.encode(AM.0), "334").await;
    cmd(&mut s, &B64.encode("wrong"), "535 5.7.8").await;
    // Still not authenticated: MAIL is refused.
    cmd(&mut s, "MAIL FROM:<a@example.com>", "530 5.7.0").await;
    // Guessing on: every failure is a protocol error, and the 20th ends the session.
    for _ in 0..14 {
        cmd(&mut s, &format!("AUTH PLAIN {}", wrong[0]), "535 5.7.8").await;
    }
    cmd(&mut s, &format!("AUTH PLAIN {}", wrong[0]), "535 5.7.8").await;
    assert!(reply(&mut s).await.starts_with("421 4.7.0"));
    assert_eq!(reply(&mut s).await, "", "closed after the error limit");

    let reason =
        |r: &str| format!("siren_messages_rejected_total{{protocol=\"smtp\",reason=\"{r}\"}}");
    assert_eq!(metric(&d, &reason("auth_failed")).await, 19.0);
    assert_eq!(metric(&d, &reason("auth_required")).await, 1.0);
    assert_eq!(metric(&d, &reason("too_many_errors")).await, 1.0);
    let failures = "siren_smtp_auth_total{mechanism=\"plain\",result=\"failure\"}";
    assert_eq!(metric(&d, failures).await, 18.0);
    d.stop().await;
}

#[tokio::test]
async fn require_auth_keeps_mail_for_authenticated_clients() {
    let (d, cert) = auth_daemon(true).await;
    // In the clear: no AUTH possible, so no mail.
    let mut c = Smtp::greeted(d.smtp).await;
    c.cmd("EHLO client.test", "250").await;
    c.cmd("MAIL FROM:<a@example.com>", "530 5.7.0").await;
    c.cmd("QUIT", "221").await;
    // In TLS: refused until AUTH, then taken.
    let mut s = starttls(d.smtp, &cert).await;
    cmd(&mut s, "EHLO client.test", "250").await;
    cmd(
        &mut s,
        "MAIL FROM:<a@example.com>",
        "530 5.7.0 Authentication required",
    )
    .await;
    cmd(
        &mut s,
        &format!("AUTH PLAIN {}", plain(NAGIOS.0, NAGIOS.1)),
        "235",
    )
    .await;
    send_one(&mut s, "authed@x").await;
    cmd(&mut s, "QUIT", "221").await;
    let logs = d.logs("ops").await;
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0]["data"]["message_id"], "authed@x");
    d.stop().await;
}

/// lettre, a real client, with TLS required and credentials: it must find STARTTLS, then AUTH
/// offered inside TLS, and authenticate with each mechanism (require_auth proves it did).
#[tokio::test]
async fn lettre_with_required_tls_and_credentials_delivers() {
    use lettre::transport::smtp::authentication::{Credentials, Mechanism};
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    let (d, cert) = auth_daemon(true).await;
    for (mechanism, (user, password)) in [(Mechanism::Plain, AM), (Mechanism::Login, NAGIOS)] {
        let tls = TlsParameters::builder("localhost".to_string())
            .add_root_certificate(Certificate::from_der(cert.to_vec()).unwrap())
            .build()
            .unwrap();
        let mailer =
            lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous("127.0.0.1")
                .port(d.smtp.port())
                .tls(Tls::Required(tls))
                .credentials(Credentials::new(user.into(), password.into()))
                .authentication(vec![mechanism])
                .build();
        let envelope = lettre::address::Envelope::new(
            Some("monitor@example.com".parse().unwrap()),
            vec!["ops@alerts.localhost".parse().unwrap()],
        )
        .unwrap();
        let id = format!("{user}@lettre");
        let resp = lettre::AsyncTransport::send_raw(&mailer, &envelope, &message(&id, &id))
            .await
            .unwrap_or_else(|e| panic!("{mechanism:?}: {e}"));
        assert_eq!(resp.code().to_string(), "250");
    }
    let logs = d.logs("ops").await;
    assert_eq!(logs.len(), 2);
    d.stop().await;
}

#[test]
fn require_auth_needs_a_user() {
    let dir = tempfile::tempdir().unwrap();
    write_certificate(dir.path());
    let text = "[smtp]\ntls_cert = \"tls.crt\"\ntls_key = \"tls.key\"\nrequire_auth = true\n";
    let err = siren::Config::parse(text, &dir.path().join("siren.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("smtp.require_auth") && err.contains("[[smtp.users]]"),
        "{err}"
    );
}

/// `[smtp]` needs a restart: a reload that changes a password or require_auth says so and
/// keeps the running users (the password is compared, though Debug hides it).
#[test]
fn changed_smtp_users_are_kept_until_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    write_certificate(dir.path());
    let config = |password: &str, require: bool| {
        let text = format!(
            "[smtp]\ntls_cert = \"tls.crt\"\ntls_key = \"tls.key\"\nrequire_auth = {require}\n\
             [[smtp.users]]\nname = \"am\"\npassword = \"{password}\"\n"
        );
        siren::Config::parse(&text, &dir.path().join("siren.toml")).unwrap()
    };
    let live = siren::config::Live::new(config("old", false));
    assert!(live.reload(config("old", false)).is_empty());
    assert_eq!(live.reload(config("new", false)), vec!["smtp"]);
    assert_eq!(live.reload(config("old", true)), vec!["smtp"]);
    let running = live.get();
    assert_eq!(running.smtp.users[0].password.as_str(), "old");
    assert!(!running.smtp.require_auth);
}

/// certbot-style rotation: new files under the same names and a reload put the new
/// certificate in force (nothing is reported as needing a restart); turning TLS off does need
/// one, and the running certificate stays.
#[test]
fn a_reload_picks_up_a_renewed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let first = write_certificate(dir.path());
    let path = dir.path().join("siren.toml");
    let tls = "[smtp]\ntls_cert = \"tls.crt\"\ntls_key = \"tls.key\"\n";
    let live = siren::config::Live::new(siren::Config::parse(tls, &path).unwrap());
    let renewed = write_certificate(dir.path());
    assert_ne!(first, renewed);
    assert!(
        live.reload(siren::Config::parse(tls, &path).unwrap())
            .is_empty()
    );
    assert_eq!(live.get().smtp.tls_chain, vec![renewed.clone()]);
    assert_eq!(
        live.reload(siren::Config::parse("", &path).unwrap()),
        vec!["smtp"]
    );
    assert!(live.get().smtp.tls.is_some());
    assert_eq!(live.get().smtp.tls_chain, vec![renewed]);
}

/// The same on the real binary under SIGHUP: handshakes after the reload present the new
/// certificate, and a client that trusts only the old one is refused.
#[tokio::test]
async fn sighup_puts_a_renewed_certificate_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let old = write_certificate(dir.path());
    let config = crate::process::write_config_with(
        dir.path(),
        "tls_cert = \"tls.crt\"\ntls_key = \"tls.key\"",
    );
    let mut p = crate::process::start(&config).await;
    // A session open across the reload keeps the certificate it began with.
    let mut before = starttls(p.smtp, &old).await;
    let renewed = write_certificate(dir.path());
    p.signal(libc::SIGHUP);
    p.log_line("smtp TLS certificate and key reloaded").await;
    p.log_line("configuration reloaded").await;
    cmd(&mut before, "EHLO client.test", "250").await;
    let mut s = starttls(p.smtp, &renewed).await;
    cmd(&mut s, "EHLO client.test", "250").await;
    send_one(&mut s, "renewed@x").await;
    assert!(
        try_starttls(p.smtp, &old).await.is_err(),
        "the old certificate is still served"
    );
    p.child.kill().unwrap();
    p.child.wait().unwrap();
}
