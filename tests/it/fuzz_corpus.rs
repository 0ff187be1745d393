//! Replays the fuzzers' kept corpus (`tests/fuzz/corpus/<target>/`) through the same code the
//! fuzz targets drive, so anything the fuzzers once found stays fixed. Long fuzz runs stay local:
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir tests/fuzz <target>`.

use std::path::PathBuf;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{Daemon, deliver, message};

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect()
}

#[test]
fn parse_email_corpus_replays() {
    let files = corpus("parse_email");
    assert!(!files.is_empty());
    for (path, data) in files {
        let parsed = siren::email::parse(&data, siren::email::Envelope::default());
        serde_json::to_value(&parsed).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let clean = siren::email::sanitize_html(&String::from_utf8_lossy(&data));
        assert!(
            !clean.to_ascii_lowercase().contains("<script"),
            "{}",
            path.display()
        );
    }
}

#[test]
fn adapt_payload_corpus_replays() {
    let files = corpus("adapt_payload");
    assert!(!files.is_empty());
    for (_, data) in files {
        // Every adapter a payload can reach, read as JSON and as a form.
        for content_type in ["application/json", "application/x-www-form-urlencoded"] {
            let Ok(body) = siren::adapt::form::decode(Some(content_type), &data) else {
                continue;
            };
            for kind in siren::domain::IntegrationType::ALL {
                for group_by in [siren::domain::GroupBy::Alert, siren::domain::GroupBy::Group] {
                    let integration = siren::domain::Integration {
                        group_by,
                        ..siren::domain::Integration::new("fuzz", kind)
                    };
                    if let Ok(events) = siren::adapt::payload(&integration, &body, Some("a=1")) {
                        assert!(events.iter().all(|e| !e.thirdparty_id.is_empty()));
                    }
                }
            }
        }
    }
}

#[tokio::test]
async fn smtp_session_corpus_replays_against_the_daemon() {
    // The corpus is full of failed AUTHs and refused recipients: their deliberate waits are
    // what makes guessing slow for a real client, and would make a thousand sessions take
    // minutes here. Sessions run eight at a time, as a busy relay's would.
    let d = Daemon::start_with("auth_errors_wait = \"0s\"\nrcpt_errors_wait = \"0s\"").await;
    let files = corpus("smtp_session");
    assert!(!files.is_empty());
    let mut sessions = tokio::task::JoinSet::new();
    let mut files = files.into_iter();
    loop {
        while sessions.len() < 8 {
            let Some((path, data)) = files.next() else {
                break;
            };
            sessions.spawn(replay(d.smtp, path, data));
        }
        match sessions.join_next().await {
            Some(done) => done.unwrap(),
            None => break,
        }
    }
    // And the daemon still serves a normal client.
    deliver(
        d.smtp,
        &["ops@alerts.localhost"],
        &message("after", "after-corpus@x"),
    )
    .await;
    d.stop().await;
}

/// Writes one recorded session to the daemon and checks it was greeted.
async fn replay(smtp: std::net::SocketAddr, path: PathBuf, data: Vec<u8>) {
    let stream = tokio::net::TcpStream::connect(smtp).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let write = async {
        let _ = wr.write_all(&data).await;
        let _ = wr.shutdown().await;
    };
    let read = async {
        let mut out = Vec::new();
        let _ = rd.read_to_end(&mut out).await;
        out
    };
    let ((), out) = tokio::join!(write, read);
    assert!(
        out.starts_with(b"220 "),
        "{}: {:?}",
        path.display(),
        String::from_utf8_lossy(&out)
    );
}
