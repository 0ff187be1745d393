//! `siren check-config` on broken files: exit code 2, and stderr names the offending key and says
//! what is allowed. One test per kind of mistake, generated from a table by `rejected!`.

use std::path::Path;
use std::process::{Command, Output};

fn check_config(path: &Path, dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_siren"))
        .args(["check-config", "--config"])
        .arg(path)
        .current_dir(dir)
        .output()
        .expect("run siren check-config")
}

/// Writes `toml` to `siren.toml` in a fresh directory, runs `siren check-config` on it and
/// answers its exit code and stderr.
fn check(toml: &str) -> (i32, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("siren.toml");
    std::fs::write(&path, toml).expect("write config");
    let out = check_config(&path, dir.path());
    let code = out.status.code().unwrap_or(-1);
    (code, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Asserts that `toml` is refused with exit code 2 and that stderr names the file and contains
/// every one of `needles` (the key, and what is allowed).
fn assert_rejected(case: &str, toml: &str, needles: &[&str]) {
    let (code, stderr) = check(toml);
    let context = format!("case `{case}`\n--- config ---\n{toml}\n--- stderr ---\n{stderr}");
    assert_eq!(code, 2, "exit code; {context}");
    assert!(
        stderr.contains("siren.toml"),
        "stderr does not name the file; {context}"
    );
    assert!(!stderr.contains("panicked"), "siren panicked; {context}");
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "stderr lacks {needle:?}; {context}"
        );
    }
}

/// `name: toml => [needle, ...];` becomes `#[test] fn name()` asserting the file is rejected.
macro_rules! rejected {
    ($($name:ident: $toml:expr => [$($needle:expr),+ $(,)?];)+) => {
        $(
            #[test]
            fn $name() {
                assert_rejected(stringify!($name), $toml, &[$($needle),+]);
            }
        )+
    };
}

rejected! {
    require_auth_without_tls: "[smtp]\nrequire_auth = true\n"
        => ["smtp.require_auth", "smtp.tls_cert"];
    smtp_users_without_tls: "[smtp]\n[[smtp.users]]\nname = \"am\"\npassword = \"pw\"\n"
        => ["smtp.users", "STARTTLS", "smtp.tls_cert"];
    smtp_user_without_password: "[[smtp.users]]\nname = \"am\"\n"
        => ["smtp.users[am].password", "password_file"];
    smtp_user_twice: "[[smtp.users]]\nname = \"am\"\npassword = \"a\"\n[[smtp.users]]\nname = \"am\"\npassword = \"b\"\n"
        => ["smtp.users[1].name", "used twice"];
    webhook_without_token_off_loopback: "[http]\nlisten = \"0.0.0.0:8025\"\napi_token = \"a\"\n[[integrations]]\nid = \"hook\"\ntype = \"webhook\"\n"
        => ["integrations[hook].token", "loopback"];
    toml_syntax_error: "[smtp]\nlisten = [\"127.0.0.1:2525\"\nhostname = \"x\"\n"
        => ["TOML parse error at line 3", "expected `,`"];
    unknown_top_level_key: "bogus = 1\n"
        => ["unknown field `bogus`", "expected one of `smtp`", "`integrations`", "`destinations`"];
    unknown_smtp_key: "[smtp]\nlisten_addr = [\"127.0.0.1:2525\"]\n"
        => ["unknown field `listen_addr`", "expected one of `listen`"];
    unknown_integration_key: r#"
        [[integrations]]
        id = "ops"
        type = "email"
        addresses = ["ops@alerts.localhost"]
        aggregation = "1h"
    "# => ["unknown field `aggregation`", "`aggregate`", "`auto_resolve`"];
    string_where_integer_expected: "[smtp]\nmax_message_size = \"big\"\n"
        => ["max_message_size = \"big\"", "expected an integer"];
    integer_where_duration_expected: "[smtp]\nidle_timeout = 300\n"
        => ["idle_timeout = 300", "expected a string"];
    smtp_listen_not_an_address: "[smtp]\nlisten = [\"localhost:2525\"]\n"
        => ["smtp.listen", "\"localhost:2525\"", "IP address with a port"];
    smtp_listen_empty: "[smtp]\nlisten = []\n"
        => ["smtp.listen", "at least one address"];
    http_listen_without_port: "[http]\nlisten = \"127.0.0.1\"\n"
        => ["http.listen", "\"127.0.0.1\"", "IP address with a port"];
    max_message_size_zero: "[smtp]\nmax_message_size = 0\n"
        => ["smtp.max_message_size", "0 is out of range", "allowed: 1 to"];
    max_message_size_negative: "[smtp]\nmax_message_size = -5\n"
        => ["smtp.max_message_size", "-5 is out of range", "allowed: 1 to"];
    idle_timeout_bad_duration: "[smtp]\nidle_timeout = \"5 minutes please\"\n"
        => ["smtp.idle_timeout", "is not a duration", "\"5m\""];
    idle_timeout_zero: "[smtp]\nidle_timeout = \"0s\"\n"
        => ["smtp.idle_timeout", "longer than zero"];
    trusted_client_not_a_network: "[smtp]\ntrusted_clients = [\"127.0.0.1/33\"]\n"
        => ["smtp.trusted_clients", "\"127.0.0.1/33\"", "is not an IP network", "127.0.0.1/32"];
    max_sessions_per_client_zero: "[smtp]\nmax_sessions_per_client = 0\n"
        => ["smtp.max_sessions_per_client", "allowed: 1 to"];
    connection_rate_negative: "[smtp]\nmax_connection_rate_per_client = -1\n"
        => ["smtp.max_connection_rate_per_client", "allowed: 0 (no limit) to"];
    auth_errors_wait_too_long: "[smtp]\nauth_errors_wait = \"2m\"\n"
        => ["smtp.auth_errors_wait", "allowed: 0s to 1m"];
    rcpt_errors_wait_not_a_duration: "[smtp]\nrcpt_errors_wait = \"soon\"\n"
        => ["smtp.rcpt_errors_wait", "is not a duration"];
    inflight_below_message_size: "[smtp]\nmax_message_size = 2000000\nmax_inflight_bytes = 1000000\n"
        => ["smtp.max_inflight_bytes", "at least smtp.max_message_size (2000000)"];
    aggregate_too_short: r#"
        [[integrations]]
        id = "ops"
        type = "email"
        addresses = ["ops@alerts.localhost"]
        aggregate = "5m"
    "# => ["integrations[ops].aggregate", "\"5m\"", "allowed: 15m to 30d"];
    aggregate_too_long: r#"
        [[integrations]]
        id = "ops"
        type = "email"
        addresses = ["ops@alerts.localhost"]
        aggregate = "60d"
    "# => ["integrations[ops].aggregate", "\"60d\"", "allowed: 15m to 30d"];
    auto_resolve_not_a_duration: r#"
        [[integrations]]
        id = "ops"
        type = "email"
        addresses = ["ops@alerts.localhost"]
        auto_resolve = "soon"
    "# => ["integrations[ops].auto_resolve", "\"soon\" is not a duration", "\"5m\""];
    integration_id_uppercase: r#"
        [[integrations]]
        id = "Ops"
        type = "email"
        addresses = ["ops@alerts.localhost"]
    "# => ["integrations[0].id", "\"Ops\"", "[a-z0-9_-]"];
    integration_id_with_spaces: r#"
        [[integrations]]
        id = "my ops"
        type = "email"
        addresses = ["ops@alerts.localhost"]
    "# => ["integrations[0].id", "\"my ops\"", "[a-z0-9_-]"];
    integration_id_duplicate: r#"
        [[integrations]]
        id = "ops"
        type = "email"
        addresses = ["ops@alerts.localhost"]

        [[integrations]]
        id = "ops"
        type = "email"
        addresses = ["db@alerts.localhost"]
    "# => ["integrations[1].id", "\"ops\" is used twice"];
    integration_type_unknown: r#"
        [[integrations]]
        id = "ops"
        type = "sms"
    "# => ["type = \"sms\"", "unknown variant `sms`", "`email`, `webhook`, `alertmanager`"];
    email_integration_without_addresses: r#"
        [[integrations]]
        id = "ops"
        type = "email"
    "# => ["integrations[ops].addresses", "at least one address"];
    webhook_integration_with_addresses: r#"
        [[integrations]]
        id = "hook"
        type = "webhook"
        addresses = ["ops@alerts.localhost"]
    "# => ["integrations[hook].addresses", "only email integrations"];
    address_syntax_invalid: r#"
        [[integrations]]
        id = "ops"
        type = "email"
        addresses = ["not-an-address"]
    "# => ["integrations[ops].addresses", "\"not-an-address\"", "local@domain or *@domain"];
    address_claimed_twice: r#"
        [[integrations]]
        id = "ops"
        type = "email"
        addresses = ["ops@alerts.localhost"]

        [[integrations]]
        id = "db"
        type = "email"
        addresses = ["OPS@Alerts.Localhost"]
    "# => ["integrations[db].addresses", "already claimed by integration \"ops\""];
    integration_destination_unknown: r#"
        [[integrations]]
        id = "ops"
        type = "email"
        addresses = ["ops@alerts.localhost"]
        destinations = ["nowhere"]
    "# => ["integrations[ops].destinations", "\"nowhere\""];
    webhook_destination_without_url: r#"
        [[destinations]]
        id = "hook"
        type = "webhook"
    "# => ["destinations[hook].url", "required for type webhook"];
    command_destination_without_command: r#"
        [[destinations]]
        id = "pager"
        type = "command"
        command = []
    "# => ["destinations[pager].command", "required for type command"];
    destination_url_not_http: r#"
        [[destinations]]
        id = "hook"
        type = "webhook"
        url = "ftp://127.0.0.1/x"
    "# => ["destinations[hook].url", "not an http:// or https:// URL"];
    destination_smarthost_without_port: r#"
        [[destinations]]
        id = "mail"
        type = "email"
        smarthost = "127.0.0.1:"
        from = "siren@example.com"
        to = ["oncall@example.com"]
    "# => ["destinations[mail].smarthost", "is not host:port"];
    destination_to_not_an_address: r#"
        [[destinations]]
        id = "mail"
        type = "email"
        smarthost = "127.0.0.1:25"
        from = "siren@example.com"
        to = ["oncall"]
    "# => ["destinations[mail].to", "\"oncall\" is not an e-mail address"];
    destination_event_unknown: r#"
        [[destinations]]
        id = "hook"
        type = "webhook"
        url = "http://127.0.0.1:9000/"
        events = ["explode"]
    "# => ["explode", "`create`, `acknowledge`, `resolve`, `aggregate`"];
    destination_retry_max_below_initial: r#"
        [[destinations]]
        id = "hook"
        type = "webhook"
        url = "http://127.0.0.1:9000/"
        retry_initial = "1m"
        retry_max = "1s"
    "# => ["destinations[hook].retry_max", "not be shorter than retry_initial"];
    destination_type_unknown: r#"
        [[destinations]]
        id = "hook"
        type = "pigeon"
    "# => ["type = \"pigeon\"", "`webhook`, `slack`, `email`, `command`"];
    urgency_unknown: r#"
        [[integrations]]
        id = "ops"
        type = "email"
        addresses = ["ops@alerts.localhost"]
        urgency = "urgent"
    "# => ["urgency = \"urgent\"", "`low`, `medium`, `high`, `critical`"];
    template_block_without_argument: r#"
        [[integrations]]
        id = "ops"
        type = "email"
        addresses = ["ops@alerts.localhost"]
        title = "{{#if}}"
    "# => ["integrations[ops].title", "template does not compile at line 1", "{{/block}}"];
    template_block_unclosed: r#"
        [[integrations]]
        id = "ops"
        type = "email"
        addresses = ["ops@alerts.localhost"]
        description = "{{#if data.x}}open"
    "# => ["integrations[ops].description", "template does not compile at line 1"];
    token_and_token_file: r#"
        [[integrations]]
        id = "hook"
        type = "webhook"
        token = "secret"
        token_file = "token"
    "# => ["integrations[hook].token", "only one of token, token_file and token_env"];
    token_file_missing: r#"
        [[integrations]]
        id = "hook"
        type = "webhook"
        token_file = "no-such-token"
    "# => ["integrations[hook].token_file", "cannot read", "no-such-token"];
    api_token_and_api_token_file: "[http]\napi_token = \"a\"\napi_token_file = \"t\"\n"
        => ["http.api_token", "only one of api_token, api_token_file and api_token_env"];
    token_env_unset: r#"
        [[integrations]]
        id = "hook"
        type = "webhook"
        token_env = "SIREN_TEST_SURELY_UNSET_VARIABLE"
    "# => ["integrations[hook].token_env", "SIREN_TEST_SURELY_UNSET_VARIABLE cannot be used"];
    http_off_loopback_without_api_token: "[http]\nlisten = \"0.0.0.0:8025\"\n"
        => ["http.api_token", "not a loopback address", "api_token_file"];
    rule_regex_invalid: r#"
        [[integrations]]
        id = "ops"
        type = "email"
        addresses = ["ops@alerts.localhost"]
        [[integrations.rules]]
        subject = "^PROBLEM"
        action = "create"
        [[integrations.rules]]
        subject = "^RECOVERY ("
        action = "resolve"
    "# => ["integrations[ops].rules[1].subject", "invalid regular expression \"^RECOVERY (\"", "unclosed group"];
    rule_header_regex_invalid: r#"
        [[integrations]]
        id = "ops"
        type = "email"
        addresses = ["ops@alerts.localhost"]
        [[integrations.rules]]
        headers.X-Status = "[resolved"
        action = "resolve"
    "# => ["integrations[ops].rules[0].headers.X-Status", "invalid regular expression"];
    rule_header_given_twice: r#"
        [[integrations]]
        id = "ops"
        type = "email"
        addresses = ["ops@alerts.localhost"]
        [[integrations.rules]]
        headers.X-Status = "a"
        headers.x-status = "b"
        action = "resolve"
    "# => ["integrations[ops].rules[0].headers.x-status", "given twice", "ignore case"];
    rule_action_unknown: r#"
        [[integrations]]
        id = "ops"
        type = "email"
        addresses = ["ops@alerts.localhost"]
        [[integrations.rules]]
        subject = "OK"
        action = "close"
    "# => ["unknown variant `close`", "`create`, `resolve`, `acknowledge`, `drop`, `ignore`"];
    rule_without_action: r#"
        [[integrations]]
        id = "ops"
        type = "email"
        addresses = ["ops@alerts.localhost"]
        [[integrations.rules]]
        subject = "OK"
    "# => ["missing field `action`"];
    rule_unknown_matcher: r#"
        [[integrations]]
        id = "ops"
        type = "email"
        addresses = ["ops@alerts.localhost"]
        [[integrations.rules]]
        body = "OK"
        action = "resolve"
    "# => ["unknown field `body`", "`subject`", "`message`", "`text`", "`headers`"];
    rule_without_matchers: r#"
        [[integrations]]
        id = "ops"
        type = "email"
        addresses = ["ops@alerts.localhost"]
        [[integrations.rules]]
        action = "drop"
    "# => ["integrations[ops].rules[0]:", "at least one matcher"];
    rule_with_two_id_groups: r#"
        [[integrations]]
        id = "ops"
        type = "email"
        addresses = ["ops@alerts.localhost"]
        [[integrations.rules]]
        subject = "(?P<id>\\S+) is down"
        text = "Host: (?P<id>\\S+)"
        action = "create"
    "# => ["integrations[ops].rules[0].text", "and so has subject", "only one matcher"];
    rules_on_a_webhook_integration: r#"
        [[integrations]]
        id = "hook"
        type = "webhook"
        [[integrations.rules]]
        subject = "x"
        action = "drop"
    "# => ["integrations[hook].rules", "only email integrations"];
    unknown_integration_type: "[[integrations]]\nid = \"g\"\ntype = \"grafna\"\n"
        => ["unknown variant `grafna`", "`email`, `webhook`, `alertmanager`, `grafana`"];
    grafana_with_addresses: "[[integrations]]\nid = \"g\"\ntype = \"grafana\"\naddresses = [\"g@x\"]\n"
        => ["integrations[g].addresses", "only email integrations claim addresses"];
    grafana_without_token_off_loopback: "[http]\nlisten = \"0.0.0.0:8025\"\napi_token = \"a\"\n[[integrations]]\nid = \"g\"\ntype = \"grafana\"\n"
        => ["integrations[g].token", "grafana", "loopback"];
    group_by_unknown_value: "[[integrations]]\nid = \"am\"\ntype = \"alertmanager\"\ngroup_by = \"instance\"\n"
        => ["unknown variant `instance`", "expected `alert` or `group`"];
    group_by_on_a_webhook_integration: "[[integrations]]\nid = \"hook\"\ntype = \"webhook\"\ngroup_by = \"group\"\n"
        => ["integrations[hook].group_by", "only alertmanager integrations"];
    spam_header_without_spam_pass: "[[integrations]]\nid = \"ops\"\ntype = \"email\"\naddresses = [\"ops@x\"]\nspam_header = \"X-Spam-Flag\"\n"
        => ["integrations[ops].spam_pass", "is required with spam_header", "regular expression"];
    spam_pass_without_spam_header: "[[integrations]]\nid = \"ops\"\ntype = \"email\"\naddresses = [\"ops@x\"]\nspam_pass = \"^NO$\"\n"
        => ["integrations[ops].spam_header", "is required with spam_pass"];
    spam_pass_invalid_regex: "[[integrations]]\nid = \"ops\"\ntype = \"email\"\naddresses = [\"ops@x\"]\nspam_header = \"X-Spam-Flag\"\nspam_pass = \"(NO\"\n"
        => ["integrations[ops].spam_pass", "invalid regular expression"];
    spam_header_not_a_header_name: "[[integrations]]\nid = \"ops\"\ntype = \"email\"\naddresses = [\"ops@x\"]\nspam_header = \"X Spam:\"\nspam_pass = \"^NO$\"\n"
        => ["integrations[ops].spam_header", "is not a header name"];
    spam_check_on_a_webhook_integration: "[[integrations]]\nid = \"hook\"\ntype = \"webhook\"\nspam_header = \"X-Spam-Flag\"\nspam_pass = \"^NO$\"\n"
        => ["integrations[hook].spam_header", "only email integrations"];
}

#[test]
fn missing_config_file_names_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("absent.toml");
    let out = check_config(&path, dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        stderr.contains(&*path.to_string_lossy()),
        "stderr: {stderr}"
    );
}

#[test]
fn valid_file_exits_zero_and_says_ok() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("siren.toml");
    std::fs::write(&path, "[[integrations]]\nid = \"ops\"\ntype = \"email\"\naddresses = [\"ops@alerts.localhost\"]\n")
        .expect("write config");
    let out = check_config(&path, dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    assert!(stdout.contains("ok"), "stdout: {stdout}");
}

#[test]
fn token_file_is_read_relative_to_the_config_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("token"), "s3cret\n").expect("write token");
    let path = dir.path().join("siren.toml");
    std::fs::write(
        &path,
        "[[integrations]]\nid = \"hook\"\ntype = \"webhook\"\ntoken_file = \"token\"\n",
    )
    .expect("write config");
    // Run from elsewhere: the relative token_file must resolve beside the config file.
    let out = check_config(&path, Path::new("/"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
}

#[test]
fn repository_example_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/siren.toml");
    let out = check_config(&path, Path::new(env!("CARGO_MANIFEST_DIR")));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
}

// The storm limits (issue 12): each key named, with what it allows.
rejected! {
    max_alerts_per_request_zero: "[http]\nmax_alerts_per_request = 0\n"
        => ["http.max_alerts_per_request", "allowed: 1 to 1000000"];
    header_timeout_not_a_duration: "[http]\nheader_timeout = \"soon\"\n"
        => ["http.header_timeout", "is not a duration"];
    body_timeout_zero: "[http]\nbody_timeout = \"0s\"\n"
        => ["http.body_timeout", "longer than zero"];
    body_min_rate_negative: "[http]\nbody_min_rate = -1\n"
        => ["http.body_min_rate", "allowed: 1 to"];
    keepalive_timeout_not_a_duration: "[http]\nkeepalive_timeout = 5\n"
        => ["keepalive_timeout", "string"];
    max_connections_zero: "[http]\nmax_connections = 0\n"
        => ["http.max_connections", "allowed: 1 to 1048576"];
    cache_size_too_small: "[store]\ncache_size = 1024\n"
        => ["store.cache_size", "allowed: 1048576 to"];
}
