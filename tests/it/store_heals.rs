//! A store on a disk that fills up and is then freed (issue 12, item 6), for real: a small
//! tmpfs mounted over the store. While it is full SMTP answers 451, webhooks 503 and `/readyz`
//! 503 with the reason; once space is freed the daemon goes back to 250/202 by itself, with
//! every acknowledged message still there. Mounting needs a mount namespace of its own, so the
//! outer test runs the inner one (this same test binary) under `unshare --user
//! --map-root-user --mount`: nothing is mounted on the host, and no root is needed where
//! unprivileged user namespaces are allowed.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::helpers::{Daemon, Smtp, http_get};

#[test]
fn a_full_disk_heals_without_a_restart() {
    in_a_mount_namespace("store_heals::full_disk_inside_a_mount_namespace");
}

/// Runs the ignored test `name` of this binary in a user and mount namespace of its own (where
/// it may mount a tmpfs) and asserts that it passed.
pub fn in_a_mount_namespace(name: &str) {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount"])
        .arg(&exe)
        .args([name, "--exact", "--ignored", "--nocapture"])
        .output()
        .expect("unshare(1) runs (util-linux)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "the inner test failed (unprivileged user namespaces must be allowed):\n{stdout}\n{stderr}"
    );
}

pub fn mount_tmpfs(dir: &Path, size: &str) {
    let target = CString::new(dir.as_os_str().as_bytes()).unwrap();
    let options = CString::new(format!("size={size}")).unwrap();
    // SAFETY: mount(2) with NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            target.as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            options.as_ptr().cast(),
        )
    };
    assert_eq!(rc, 0, "mount tmpfs: {}", std::io::Error::last_os_error());
}

/// Bytes free on the file system of `dir`.
pub fn free_bytes(dir: &Path) -> u64 {
    let path = CString::new(dir.as_os_str().as_bytes()).unwrap();
    // SAFETY: statvfs(3) into a zeroed struct, with a NUL-terminated path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(path.as_ptr(), &mut st) }, 0);
    st.f_bavail as u64 * st.f_frsize as u64
}

/// One message of about 32 KiB on a connection of its own; the reply to its final dot. The body
/// is random letters and digits, so that compressing the stored input does not make room.
async fn send(d: &Daemon, n: usize) -> String {
    let mut rng = fastrand::Rng::with_seed(n as u64);
    let body: String = (0..420)
        .map(|_| (0..76).map(|_| rng.alphanumeric()).collect::<String>() + "\r\n")
        .collect();
    let message = format!(
        "From: m@example.com\r\nTo: ops@alerts.localhost\r\nSubject: fill {n}\r\nMessage-ID: <fill{n}@x>\r\n\r\n{body}"
    );
    let mut c = Smtp::greeted(d.smtp).await;
    let reply = c
        .mail(
            "m@example.com",
            &["ops@alerts.localhost"],
            message.as_bytes(),
        )
        .await;
    c.cmd("QUIT", "221").await;
    reply
}

async fn webhook(d: &Daemon) -> u16 {
    reqwest::Client::new()
        .post(format!("http://{}/webhooks/hook", d.http))
        .bearer_auth("secret")
        .json(&serde_json::json!({"event_type": "create", "Id": "w", "Title": "w"}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
#[ignore = "run by a_full_disk_heals_without_a_restart, inside a mount namespace of its own"]
async fn full_disk_inside_a_mount_namespace() {
    let dir = tempfile::tempdir().unwrap();
    mount_tmpfs(dir.path(), "8m");
    let text = format!(
        "[smtp]\nlisten = [\"127.0.0.1:0\"]\n[http]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"{}\"\n\
         [[integrations]]\nid = \"ops\"\ntype = \"email\"\naddresses = [\"ops@alerts.localhost\"]\n\
         [[integrations]]\nid = \"hook\"\ntype = \"webhook\"\ntoken = \"secret\"\n",
        dir.path().join("store").display()
    );
    let d = Daemon::start_config(siren::Config::parse(&text, Path::new("t.toml")).unwrap()).await;
    // Leave about 2 MiB: a few dozen messages fit, then the disk is full.
    let filler = dir.path().join("filler");
    let room = free_bytes(dir.path()).saturating_sub(2 << 20);
    std::fs::write(&filler, vec![0u8; room as usize]).unwrap();

    let mut acked = Vec::new();
    let mut refused = None;
    for n in 0..400 {
        let reply = send(&d, n).await;
        if reply.starts_with("250 2.0.0") {
            acked.push(format!("fill{n}@x"));
        } else {
            refused = Some(reply);
            break;
        }
    }
    let refused = refused.expect("the disk filled up");
    assert!(refused.starts_with("451 4.3.0"), "{refused}");
    assert!(!acked.is_empty());
    // Full: everything says so, and keeps saying so.
    assert!(send(&d, 1000).await.starts_with("451 4.3.0"));
    assert_eq!(webhook(&d).await, 503);
    let (status, ready) = http_get(d.http, "/readyz").await;
    assert_eq!(status, 503, "{ready}");
    assert!(
        ready["reason"]
            .as_str()
            .unwrap()
            .contains("store cannot write"),
        "{ready}"
    );

    // Space returns: the next message heals the store, no restart.
    std::fs::remove_file(&filler).unwrap();
    let reply = send(&d, 2000).await;
    assert!(reply.starts_with("250 2.0.0"), "{reply}");
    acked.push("fill2000@x".into());
    assert_eq!(webhook(&d).await, 202);
    let (status, ready) = http_get(d.http, "/readyz").await;
    assert_eq!(
        (status, &ready["ready"]),
        (200, &Value::Bool(true)),
        "{ready}"
    );

    // Every acknowledged message is there, once.
    let stored: Vec<String> = d
        .logs("ops")
        .await
        .iter()
        .map(|l| l["data"]["message_id"].as_str().unwrap().to_string())
        .collect();
    for id in &acked {
        assert_eq!(
            stored.iter().filter(|s| *s == id).count(),
            1,
            "{id} in {stored:?}"
        );
    }
    println!(
        "full after {} messages; healed; {} entries stored",
        acked.len() - 1,
        stored.len()
    );
    d.stop().await;
}
