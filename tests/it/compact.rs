//! `siren compact` on a store the real daemon wrote: it refuses while the daemon runs, and
//! after it the daemon starts on the compacted store with every entry, and takes mail again;
//! a compaction that runs out of disk leaves the store as it was.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use crate::helpers::{Daemon, deliver, message};
use crate::process::{all_logs, start, write_config};

/// Runs `siren compact --config CONFIG`: its exit code, stdout and stderr.
async fn compact(config: &Path) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_siren"));
    command.args(["compact", "--config"]).arg(config);
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
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

/// Sends `n` messages to `ops`, each on its own connection, with `subject(i)` and Message-ID
/// `{prefix}{i}@x`.
async fn send(smtp: SocketAddr, n: usize, prefix: &str, subject: impl Fn(usize) -> String) {
    for i in 0..n {
        let msg = message(&subject(i), &format!("{prefix}{i}@x"));
        deliver(smtp, &["ops@alerts.localhost"], &msg).await;
    }
}

#[tokio::test]
async fn the_daemon_restarts_on_a_compacted_store_with_everything_in_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let p = start(&config).await;
    send(p.smtp, 40, "m", |n| format!("disk {} full", n % 10)).await;
    let before = all_logs(p.http).await;
    assert_eq!(before.len(), 40);

    let (code, _, err) = compact(&config).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("Stop it first"), "{err}");

    assert_eq!(p.stop().await.code(), Some(0));

    let (code, out, err) = compact(&config).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("MiB on disk before") && out.contains("live keys"),
        "{out}"
    );
    assert!(!dir.path().join("store.compact").exists());

    let p = start(&config).await;
    let after = all_logs(p.http).await;
    assert_eq!(message_ids(&after), message_ids(&before));
    send(p.smtp, 1, "after", |_| "after".into()).await;
    assert_eq!(all_logs(p.http).await.len(), 41);
    p.stop().await;
}

#[test]
fn a_compaction_that_fills_the_disk_leaves_the_store_as_it_was() {
    crate::store_heals::in_a_mount_namespace("compact::full_disk_inside_a_mount_namespace");
}

#[tokio::test]
#[ignore = "run by a_compaction_that_fills_the_disk_leaves_the_store_as_it_was, in a mount namespace"]
async fn full_disk_inside_a_mount_namespace() {
    let dir = tempfile::tempdir().unwrap();
    crate::store_heals::mount_tmpfs(dir.path(), "16m");
    let store = dir.path().join("store");
    let config = crate::helpers::test_config(&store, "");
    let d = Daemon::start_config(config.clone()).await;
    send(d.smtp, 30, "f", |_| "disk full".into()).await;
    let before = message_ids(&d.logs("ops").await);
    d.stop().await;

    // Too little room for the copy: sled cannot even lay out its first segments.
    let filler = dir.path().join("filler");
    let room = crate::store_heals::free_bytes(dir.path()).saturating_sub(64 << 10);
    std::fs::write(&filler, vec![0u8; room as usize]).unwrap();
    // sled's I/O threads may hold the stopped daemon's lock on the store for a moment.
    let mut e = String::new();
    for _ in 0..500 {
        e = siren::store::compact(&store, None).unwrap_err().to_string();
        if !e.contains("locked by another process") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(e.contains("No space left on device"), "{e}");
    println!("compact on a full disk: {e}");
    assert!(!dir.path().join("store.compact").exists());

    std::fs::remove_file(&filler).unwrap();
    let d = Daemon::start_config(config).await;
    assert_eq!(message_ids(&d.logs("ops").await), before);
    d.stop().await;
}

/// `siren compact` killed with SIGKILL at points spread over its run, again and again: after
/// each kill the daemon starts on the store with every entry (the old store or the compacted
/// one, never neither), and a later compaction finishes.
#[tokio::test]
async fn sigkill_during_a_compaction_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let p = start(&config).await;
    send(p.smtp, 60, "k", |_| "load".into()).await;
    let before = message_ids(&all_logs(p.http).await);
    p.stop().await;

    // How long a whole run takes here; the kills fall at fractions of it.
    let started = std::time::Instant::now();
    let (code, _, err) = compact(&config).await;
    assert_eq!(code, 0, "{err}");
    let whole = started.elapsed();
    let mut mid_copy = 0;
    for round in 0..10u32 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_siren"))
            .args(["compact", "--config"])
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // The kill point, not a wait for something: from the start of the run to past its end.
        tokio::time::sleep(whole * round / 8).await;
        let _ = child.kill();
        tokio::task::spawn_blocking(move || child.wait())
            .await
            .unwrap()
            .unwrap();
        let left = dir.path().join("store.compact").exists();
        mid_copy += usize::from(left);

        let mut p = start(&config).await;
        if left {
            p.log_line("an interrupted `siren compact` left a copy")
                .await;
        }
        assert_eq!(
            message_ids(&all_logs(p.http).await),
            before,
            "after kill {round}"
        );
        p.stop().await;
    }
    println!(
        "{mid_copy} of 10 kills left a copy behind (killed before the exchange or the removal)"
    );
    let (code, out, err) = compact(&config).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("MiB after"), "{out}");
    assert!(!dir.path().join("store.compact").exists());
}
