//! `siren compact` on a store the real daemon wrote: it refuses while the daemon runs, and
//! after it the daemon starts on the compacted store with every entry, and takes mail again.

use std::path::Path;
use std::process::Command;

use crate::helpers::{deliver, message};
use crate::process::{all_logs, start, write_config};

fn compact(config: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_siren"))
        .args(["compact", "--config"])
        .arg(config)
        .output()
        .expect("run siren compact");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn message_ids(logs: &[serde_json::Value]) -> Vec<String> {
    let mut ids: Vec<String> = logs
        .iter()
        .map(|l| l["data"]["message_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn the_daemon_restarts_on_a_compacted_store_with_everything_in_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let mut p = start(&config).await;
    for n in 0..40 {
        let subject = format!("disk {} full", n % 10);
        deliver(
            p.smtp,
            &["ops@alerts.localhost"],
            &message(&subject, &format!("m{n}@x")),
        )
        .await;
    }
    let before = all_logs(p.http).await;
    assert_eq!(before.len(), 40);

    let (code, _, err) = tokio::task::spawn_blocking({
        let config = config.clone();
        move || compact(&config)
    })
    .await
    .unwrap();
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("stop the daemon first"), "{err}");

    p.signal(libc::SIGTERM);
    let status = tokio::task::spawn_blocking(move || p.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));

    let (code, out, err) = tokio::task::spawn_blocking({
        let config = config.clone();
        move || compact(&config)
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("MiB on disk before") && out.contains("live keys"),
        "{out}"
    );
    assert!(!dir.path().join("store.compact").exists());

    let mut p = start(&config).await;
    let after = all_logs(p.http).await;
    assert_eq!(message_ids(&after), message_ids(&before));
    deliver(
        p.smtp,
        &["ops@alerts.localhost"],
        &message("after", "after@x"),
    )
    .await;
    assert_eq!(all_logs(p.http).await.len(), 41);
    p.child.kill().unwrap();
    p.child.wait().unwrap();
}
