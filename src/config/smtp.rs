//! `[smtp]`: listeners, limits, timeouts, STARTTLS and the AUTH users.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;

use super::key::Key;
use super::raw::{RawSmtp, RawSmtpUser};
use super::{ConfigError, SmtpConfig, SmtpLimits, SmtpUser};

pub(super) fn smtp(at: &Key, raw: RawSmtp) -> Result<SmtpConfig, ConfigError> {
    let max_message_size = at
        .at("max_message_size")
        .positive(raw.max_message_size, 1 << 30)?;
    let limits = limits(at, &raw, max_message_size)?;
    let listen = listen(&at.at("listen"), &raw.listen)?;
    let hostname = raw.hostname.trim().to_string();
    if hostname.is_empty() || hostname.contains(char::is_whitespace) {
        return Err(at.at("hostname").err("must be a host name without spaces"));
    }
    let tls = match (raw.tls_cert, raw.tls_key) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some(tls(at, &cert, &key)?),
        (Some(_), None) => return Err(at.at("tls_key").err("is required when tls_cert is set")),
        (None, Some(_)) => return Err(at.at("tls_cert").err("is required when tls_key is set")),
    };
    let users = users(&at.at("users"), raw.users)?;
    auth(at, tls.is_some(), raw.require_auth, &users)?;
    let max_line_length = at
        .at("max_line_length")
        .positive(raw.max_line_length, 1 << 24)?;
    if max_line_length < 1002 {
        return Err(at
            .at("max_line_length")
            .err("must be at least 1002 (RFC 5321 allows 1000-byte lines plus CRLF)"));
    }
    let (tls, tls_chain) = tls.unzip();
    Ok(SmtpConfig {
        listen,
        hostname,
        max_message_size,
        max_recipients: at
            .at("max_recipients")
            .positive(raw.max_recipients, 100_000)?,
        max_sessions: at
            .at("max_sessions")
            .positive(raw.max_sessions, 1_000_000)?,
        max_line_length,
        idle_timeout: at.at("idle_timeout").duration(&raw.idle_timeout)?,
        session_timeout: at.at("session_timeout").duration(&raw.session_timeout)?,
        drain_timeout: at.at("drain_timeout").duration(&raw.drain_timeout)?,
        tls,
        tls_chain: tls_chain.unwrap_or_default(),
        users,
        require_auth: raw.require_auth,
        limits,
    })
}

/// The per-client shares, error budgets and in-flight budget.
fn limits(at: &Key, raw: &RawSmtp, max_message_size: usize) -> Result<SmtpLimits, ConfigError> {
    let inflight = at.at("max_inflight_bytes");
    let max_inflight_bytes = inflight.positive(raw.max_inflight_bytes, 1 << 40)?;
    if max_inflight_bytes < max_message_size {
        return Err(inflight.err(format!(
            "must be at least smtp.max_message_size ({max_message_size}), or no message of that size could be received"
        )));
    }
    let trusted = at.at("trusted_clients");
    Ok(SmtpLimits {
        max_sessions_per_client: at
            .at("max_sessions_per_client")
            .positive(raw.max_sessions_per_client, 1_000_000)?,
        max_connection_rate_per_client: zero_or_up_to(
            &at.at("max_connection_rate_per_client"),
            raw.max_connection_rate_per_client,
            1_000_000,
        )?,
        trusted_clients: raw
            .trusted_clients
            .iter()
            .map(|n| network(&trusted, n))
            .collect::<Result<_, _>>()?,
        auth_errors_max: at
            .at("auth_errors_max")
            .positive(raw.auth_errors_max, 1000)?,
        auth_errors_wait: wait(&at.at("auth_errors_wait"), &raw.auth_errors_wait)?,
        max_auth_error_rate_per_client: zero_or_up_to(
            &at.at("max_auth_error_rate_per_client"),
            raw.max_auth_error_rate_per_client,
            1_000_000,
        )?,
        rcpt_errors_max: at
            .at("rcpt_errors_max")
            .positive(raw.rcpt_errors_max, 100_000)?,
        rcpt_errors_wait: wait(&at.at("rcpt_errors_wait"), &raw.rcpt_errors_wait)?,
        junk_commands_max: at
            .at("junk_commands_max")
            .positive(raw.junk_commands_max, 1_000_000)?,
        max_inflight_bytes,
    })
}

/// A count where 0 means "no limit".
fn zero_or_up_to(at: &Key, v: i64, max: usize) -> Result<usize, ConfigError> {
    if v >= 0 && (v as u64) <= max as u64 {
        Ok(v as usize)
    } else {
        Err(at.err(format!(
            "{v} is out of range; allowed: 0 (no limit) to {max}"
        )))
    }
}

/// A delay before an error reply: "0s" to "1m".
fn wait(at: &Key, raw: &str) -> Result<Duration, ConfigError> {
    match humantime::parse_duration(raw) {
        Ok(d) if d <= Duration::from_secs(60) => Ok(d),
        Ok(_) => Err(at.err(format!("\"{raw}\" is out of range; allowed: 0s to 1m"))),
        Err(e) => Err(at.err(format!(
            "\"{raw}\" is not a duration ({e}); use e.g. \"0s\", \"1s\", \"5s\""
        ))),
    }
}

/// A CIDR network, or one address (as /32 or /128).
fn network(at: &Key, raw: &str) -> Result<ipnet::IpNet, ConfigError> {
    let raw = raw.trim();
    raw.parse::<ipnet::IpNet>()
        .or_else(|_| raw.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map(|n| n.trunc())
        .map_err(|_| {
            at.err(format!(
                "\"{raw}\" is not an IP network; use e.g. \"127.0.0.1/32\", \"10.0.0.0/8\" or \"::1/128\""
            ))
        })
}

fn listen(at: &Key, raw: &[String]) -> Result<Vec<std::net::SocketAddr>, ConfigError> {
    if raw.is_empty() {
        return Err(at.err("needs at least one address, e.g. \"127.0.0.1:2525\""));
    }
    raw.iter().map(|a| at.socket_addr(a)).collect()
}

/// AUTH is offered only inside TLS, and `require_auth` needs someone to authenticate.
fn auth(at: &Key, tls: bool, require_auth: bool, users: &[SmtpUser]) -> Result<(), ConfigError> {
    if !tls {
        if require_auth {
            return Err(at.at("require_auth").err(
                "needs STARTTLS, since AUTH is offered only over TLS: set smtp.tls_cert and smtp.tls_key",
            ));
        }
        if !users.is_empty() {
            return Err(at
                .at("users")
                .err("AUTH is offered only after STARTTLS: set smtp.tls_cert and smtp.tls_key"));
        }
    }
    if require_auth && users.is_empty() {
        return Err(at
            .at("require_auth")
            .err("needs at least one [[smtp.users]] entry to authenticate"));
    }
    Ok(())
}

/// `[[smtp.users]]`: unique names a SASL exchange can carry, each with a password.
fn users(at: &Key, raw: Vec<RawSmtpUser>) -> Result<Vec<SmtpUser>, ConfigError> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, u) in raw.into_iter().enumerate() {
        let name = u.name;
        if name.is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
            return Err(at
                .item(i)
                .at("name")
                .err("must be 1 to 255 bytes without control characters"));
        }
        if !seen.insert(name.clone()) {
            return Err(at
                .item(i)
                .at("name")
                .err(format!("\"{name}\" is used twice")));
        }
        let key = at.item(&name).at("password");
        let password = key
            .secret(u.password, u.password_file, u.password_env)?
            .ok_or_else(|| key.err("is required (set password, password_file or password_env)"))?;
        out.push(SmtpUser { name, password });
    }
    Ok(out)
}

/// Loads the PEM certificate chain and private key for STARTTLS; the chain also tells a reload
/// whether the certificate changed.
fn tls(
    at: &Key,
    cert: &Path,
    key: &Path,
) -> Result<(Arc<rustls::ServerConfig>, Vec<CertificateDer<'static>>), ConfigError> {
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;
    let (cert_key, key_key) = (at.at("tls_cert"), at.at("tls_key"));
    let (cert, key) = (at.relative(cert), at.relative(key));
    let certs = CertificateDer::pem_file_iter(&cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            cert_key.err(format!(
                "cannot read a PEM certificate chain from {}: {e}",
                cert.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(cert_key.err(format!("{} holds no certificate", cert.display())));
    }
    let key = PrivateKeyDer::from_pem_file(&key).map_err(|e| {
        key_key.err(format!(
            "cannot read a PEM private key from {}: {e}",
            key.display()
        ))
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs.clone(), key))
        .map_err(|e| {
            key_key.err(format!(
                "the certificate and key do not make a TLS configuration: {e}"
            ))
        })?;
    Ok((Arc::new(config), certs))
}
