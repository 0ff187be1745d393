//! SIGHUP on the real binary: a valid new file puts its integrations and templates in force
//! without dropping a session open across it; an invalid file is refused with its reason and
//! the running configuration stays.

use crate::helpers::{Smtp, http_get, message};
use crate::process::{start, write_config};

/// `write_config`'s file plus one more e-mail integration, `late`, with its own title.
fn with_late_integration(path: &std::path::Path) {
    let mut text = std::fs::read_to_string(path).unwrap();
    text.push_str(
        "[[integrations]]\nid = \"late\"\ntype = \"email\"\naddresses = [\"late@alerts.localhost\"]\n\
         title = \"late: {{data.subject}}\"\n",
    );
    std::fs::write(path, text).unwrap();
}

#[tokio::test]
async fn sighup_applies_a_valid_file_and_refuses_an_invalid_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let mut p = start(&config).await;

    // A session opened before the reload, in the middle of a transaction.
    let mut open = Smtp::greeted(p.smtp).await;
    open.cmd("EHLO before.test", "250").await;
    open.cmd("MAIL FROM:<a@example.com>", "250").await;
    open.cmd("RCPT TO:<late@alerts.localhost>", "550 5.1.1")
        .await;

    with_late_integration(&config);
    p.signal(libc::SIGHUP);
    p.log_line("configuration reloaded").await;

    // The open transaction keeps the configuration it began with; its next one sees the new.
    open.cmd("RCPT TO:<late@alerts.localhost>", "550 5.1.1")
        .await;
    open.cmd("RCPT TO:<ops@alerts.localhost>", "250").await;
    open.cmd("RSET", "250").await;
    open.cmd("MAIL FROM:<a@example.com>", "250").await;
    open.cmd("RCPT TO:<late@alerts.localhost>", "250").await;
    open.cmd("DATA", "354").await;
    open.send_raw(&message("disk full", "late-1@x")).await;
    open.cmd(".", "250 2.0.0").await;
    let (status, body) = http_get(p.http, "/api/v1/alerts?integration=late").await;
    assert_eq!(status, 200);
    assert_eq!(body["alerts"][0]["title"], "late: disk full");

    // An invalid file (a template that does not compile) is refused; nothing changes.
    let good = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        good.replace("late: {{data.subject}}", "late: {{#if}}"),
    )
    .unwrap();
    p.signal(libc::SIGHUP);
    let refused = p.log_line("configuration reload refused").await;
    assert!(
        refused.contains("integrations[late].title"),
        "the reason names the key: {refused}"
    );
    open.cmd("MAIL FROM:<a@example.com>", "250").await;
    open.cmd("RCPT TO:<late@alerts.localhost>", "250").await;
    open.cmd("QUIT", "221").await;

    // A file that drops the integration: its address is refused from then on.
    std::fs::write(
        &config,
        good.split("[[integrations]]\nid = \"late\"")
            .next()
            .unwrap(),
    )
    .unwrap();
    p.signal(libc::SIGHUP);
    p.log_line("configuration reloaded").await;
    let mut after = Smtp::greeted(p.smtp).await;
    after.cmd("EHLO after.test", "250").await;
    after.cmd("MAIL FROM:<a@example.com>", "250").await;
    after
        .cmd("RCPT TO:<late@alerts.localhost>", "550 5.1.1")
        .await;
    p.child.kill().unwrap();
    p.child.wait().unwrap();
}

#[tokio::test]
async fn sighup_keeps_sections_that_need_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let mut p = start(&config).await;
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("[smtp]\n", "[smtp]\nmax_recipients = 1\n"),
    )
    .unwrap();
    p.signal(libc::SIGHUP);
    let warning = p.log_line("only after a restart").await;
    assert!(warning.contains("smtp"), "{warning}");
    // The running limit stays: two recipients are still accepted.
    let mut c = Smtp::greeted(p.smtp).await;
    c.cmd("EHLO t.test", "250").await;
    c.cmd("MAIL FROM:<a@example.com>", "250").await;
    c.cmd("RCPT TO:<ops@alerts.localhost>", "250").await;
    c.cmd("RCPT TO:<ops+x@alerts.localhost>", "250").await;
    p.child.kill().unwrap();
    p.child.wait().unwrap();
}
