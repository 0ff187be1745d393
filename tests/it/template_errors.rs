//! `siren check-config` on templates that cannot work (issue 14): an unknown helper, and a
//! literal date format that would print itself on every alert. Exit code 2, and stderr names
//! the file, the integration and field, and the helper.

use std::process::Command;

/// Writes one webhook integration with `key = template` and runs `siren check-config` on it:
/// its exit code and stderr.
fn check(key: &str, template: &str) -> (i32, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("siren.toml");
    let toml = format!(
        "[[integrations]]\nid = \"grafana-hook\"\ntype = \"webhook\"\ntoken = \"t\"\n{key} = {}\n",
        toml::Value::String(template.to_string())
    );
    std::fs::write(&path, toml).expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_siren"))
        .args(["check-config", "--config"])
        .arg(&path)
        .current_dir(dir.path())
        .output()
        .expect("run siren check-config");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), stderr)
}

fn assert_rejected(key: &str, template: &str, needles: &[&str]) {
    let (code, stderr) = check(key, template);
    assert_eq!(code, 2, "{template}: {stderr}");
    for needle in ["siren.toml", &format!("integrations[grafana-hook].{key}")]
        .iter()
        .copied()
        .chain(needles.iter().copied())
    {
        assert!(
            stderr.contains(needle),
            "{template}: stderr lacks {needle:?}: {stderr}"
        );
    }
}

#[test]
fn unknown_helper_is_rejected_with_file_integration_and_helper() {
    assert_rejected(
        "title",
        "{{uppercse data.title}}",
        &["unknown helper \"uppercse\"", "did you mean \"uppercase\""],
    );
    assert_rejected(
        "description",
        "{{#each data.alerts}}{{frobnicate this}}{{/each}}",
        &["unknown helper \"frobnicate\""],
    );
    // A helper of the out-of-scope categories (fs) is unknown too.
    assert_rejected(
        "title",
        "{{read \"notes.md\"}}",
        &["unknown helper \"read\""],
    );
}

#[test]
fn date_format_that_prints_itself_is_rejected() {
    // A moment-style format given to the strftime helper.
    assert_rejected(
        "title",
        "{{formatDate data.startsAt \"YYYY-MM-DD HH:mm\"}}",
        &["formatDate", "would print itself literally"],
    );
    assert_rejected(
        "title",
        "{{now \"today\"}}",
        &["now", "would print itself literally"],
    );
    // moment-style helpers with a strftime format, or one that holds no token.
    assert_rejected(
        "description",
        "{{date data.startsAt \"%Y-%m-%d\"}}",
        &["date", "strftime-style"],
    );
    assert_rejected(
        "title",
        "{{moment data.startsAt \"[at] \"}}",
        &["moment", "would print itself literally"],
    );
}

#[test]
fn unknown_time_zone_is_rejected() {
    assert_rejected(
        "title",
        "{{date data.startsAt \"HH:mm\" tz=\"Mars/Olympus\"}}",
        &["date", "unknown time zone \"Mars/Olympus\""],
    );
}

#[test]
fn working_helpers_and_formats_pass() {
    for template in [
        "{{formatDate data.startsAt \"%Y-%m-%d %H:%M\"}}",
        "{{date data.startsAt \"YYYY-MM-DD HH:mm\" tz=\"Europe/Paris\"}}",
        "{{formatDate data.startsAt \"%H:%M %Z\" tz=\"+02:00\"}}",
        "{{#startsWith \"PROBLEM\" data.title}}down{{/startsWith}} {{matchRegex data.title \"^x\"}}",
        "{{#withFirst data.alerts}}{{labels.alertname}}{{/withFirst}}",
    ] {
        let (code, stderr) = check("title", template);
        assert_eq!(code, 0, "{template}: {stderr}");
    }
}
