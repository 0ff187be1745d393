//! `siren inject`: a sample through parsing, routing, rules and templates, printed, nothing
//! stored: what a template author runs against the example configuration.

use std::process::Command;

use serde_json::Value;

/// Runs `siren inject` with the example configuration; answers exit code, stdout events, stderr.
fn inject(args: &[&str]) -> (i32, Vec<Value>, String) {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(env!("CARGO_BIN_EXE_siren"))
        .current_dir(root)
        .args(["--config", "config/siren.toml", "inject"])
        .args(args)
        .output()
        .expect("run siren inject");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let events = serde_json::Deserializer::from_str(&stdout)
        .into_iter::<Value>()
        .map(|v| v.expect("one JSON document per event"))
        .collect();
    (
        out.status.code().unwrap_or(-1),
        events,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_email_is_routed_by_its_to_and_runs_the_rules() {
    let (code, events, stderr) = inject(&["samples/nagios-recovery.eml"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["integration"], "ops");
    assert_eq!(
        events[0]["action"], "resolve",
        "the example's RECOVERY rule"
    );
    assert_eq!(
        events[0]["data"]["subject"],
        "** RECOVERY Service Alert: web01/HTTP is OK **"
    );

    let (code, events, _) = inject(&["samples/nagios-problem.eml"]);
    assert_eq!(code, 0);
    assert_eq!(events[0]["action"], "create");
    assert_eq!(
        events[0]["title"],
        "** PROBLEM Service Alert: web01/HTTP is CRITICAL **"
    );
    // The PROBLEM and RECOVERY rules take the same id from the subject: the pair folds.
    let (_, recovery, _) = inject(&["samples/nagios-recovery.eml"]);
    assert_eq!(events[0]["thirdparty_id"], recovery[0]["thirdparty_id"]);
}

#[test]
fn a_webhook_payload_renders_the_integrations_templates() {
    let (code, events, stderr) =
        inject(&["samples/webhook-create.json", "--integration", "custom"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(events[0]["title"], "Custom Data - I want to use this data");
    assert_eq!(events[0]["thirdparty_id"], "example-id-123");

    let (code, events, _) = inject(&[
        "samples/alertmanager-firing.json",
        "--integration",
        "alertmanager",
    ]);
    assert_eq!(code, 0);
    assert_eq!(events.len(), 2, "one event per alert");
    assert!(events.iter().all(|e| e["action"] == "create"));
}

#[test]
fn json_without_an_integration_or_an_unknown_one_is_refused() {
    let (code, events, stderr) = inject(&["samples/webhook-create.json"]);
    assert_eq!(code, 1);
    assert!(events.is_empty());
    assert!(stderr.contains("needs --integration"), "{stderr}");
    let (code, _, stderr) = inject(&["samples/webhook-create.json", "--integration", "nope"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("no integration \"nope\""), "{stderr}");
}
