//! Where a value sits in the file, and the checks every table shares. A [`Key`] carries the
//! file and the key path (`integrations[ops].rules[0].subject`); each check is a method on it,
//! so the path is built once, as the validator walks down, and every error names it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::ConfigError;
use crate::domain::Secret;

/// Window values (`aggregate`, `auto_resolve`) must lie in this range.
const WINDOW_MIN: Duration = Duration::from_secs(15 * 60);
const WINDOW_MAX: Duration = Duration::from_secs(30 * 24 * 3600);

/// A key path in one configuration file.
#[derive(Clone)]
pub(super) struct Key<'a> {
    file: &'a Path,
    path: String,
}

impl<'a> Key<'a> {
    /// The top of `file`.
    pub fn root(file: &'a Path) -> Self {
        Key {
            file,
            path: String::new(),
        }
    }

    /// The key `name` inside this table: `smtp` -> `smtp.listen`.
    pub fn at(&self, name: &str) -> Key<'a> {
        let path = if self.path.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.path)
        };
        Key {
            file: self.file,
            path,
        }
    }

    /// One element of this array, by its position or its id: `integrations[ops]`.
    pub fn item(&self, which: impl std::fmt::Display) -> Key<'a> {
        Key {
            file: self.file,
            path: format!("{}[{which}]", self.path),
        }
    }

    /// The sibling key with `suffix` appended to the name: `token` -> `token_file`.
    pub fn suffixed(&self, suffix: &str) -> Key<'a> {
        Key {
            file: self.file,
            path: format!("{}{suffix}", self.path),
        }
    }

    /// The last name of the path (`integrations[ops].token` -> `token`).
    pub fn name(&self) -> &str {
        self.path.rsplit('.').next().unwrap_or(&self.path)
    }

    /// The error for this key: the file, the key and `reason` (what is wrong, what is allowed).
    pub fn err(&self, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.file.to_owned(),
            key: self.path.clone(),
            reason: reason.into(),
        }
    }

    /// A path from the file, relative to the file's directory.
    pub fn relative(&self, path: &Path) -> PathBuf {
        if path.is_relative() {
            self.file.parent().unwrap_or(Path::new(".")).join(path)
        } else {
            path.to_owned()
        }
    }

    pub fn identifier(&self, id: &str) -> Result<(), ConfigError> {
        let ok = !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if ok {
            Ok(())
        } else {
            Err(self.err(format!(
                "\"{id}\" is not allowed; use 1-64 characters of [a-z0-9_-]"
            )))
        }
    }

    /// An address claim, normalized: `local@domain` or `*@domain`, lower case.
    pub fn address(&self, raw: &str) -> Result<String, ConfigError> {
        let a = raw.trim().to_ascii_lowercase();
        let valid = match a.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.is_empty()
                    && !domain.contains('@')
                    && (local == "*" || !local.contains('*'))
                    && !a.contains(char::is_whitespace)
                    && !a.contains(['<', '>'])
            }
            None => false,
        };
        if valid {
            Ok(a)
        } else {
            Err(self.err(format!(
                "\"{raw}\" is not an address; use local@domain or *@domain"
            )))
        }
    }

    pub fn url(&self, raw: &str) -> Result<reqwest::Url, ConfigError> {
        match reqwest::Url::parse(raw) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(u),
            _ => Err(self.err(format!("\"{raw}\" is not an http:// or https:// URL"))),
        }
    }

    pub fn socket_addr(&self, raw: &str) -> Result<SocketAddr, ConfigError> {
        raw.parse().map_err(|_| {
            self.err(format!(
                "\"{raw}\" is not an IP address with a port, e.g. \"127.0.0.1:2525\""
            ))
        })
    }

    pub fn positive(&self, v: i64, max: usize) -> Result<usize, ConfigError> {
        if v >= 1 && (v as u64) <= max as u64 {
            Ok(v as usize)
        } else {
            Err(self.err(format!("{v} is out of range; allowed: 1 to {max}")))
        }
    }

    /// A size in bytes between `min` and `max`.
    pub fn size_in(&self, v: i64, min: u64, max: u64) -> Result<u64, ConfigError> {
        match u64::try_from(v) {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(self.err(format!("{v} is out of range; allowed: {min} to {max}"))),
        }
    }

    pub fn duration(&self, raw: &str) -> Result<Duration, ConfigError> {
        match humantime::parse_duration(raw) {
            Ok(d) if !d.is_zero() => Ok(d),
            Ok(_) => Err(self.err("must be longer than zero")),
            Err(e) => Err(self.err(format!(
                "\"{raw}\" is not a duration ({e}); use e.g. \"30s\", \"5m\", \"2h\""
            ))),
        }
    }

    /// An `aggregate` or `auto_resolve` window: a duration from 15m to 30d.
    pub fn window(&self, raw: &str) -> Result<Duration, ConfigError> {
        let d = self.duration(raw)?;
        if (WINDOW_MIN..=WINDOW_MAX).contains(&d) {
            Ok(d)
        } else {
            Err(self.err(format!("\"{raw}\" is out of range; allowed: 15m to 30d")))
        }
    }

    /// A secret given inline, in a file (`<key>_file`, relative to the configuration file,
    /// trailing newline trimmed) or in an environment variable (`<key>_env` names it); at most
    /// one of the three.
    pub fn secret(
        &self,
        inline: Option<String>,
        file: Option<PathBuf>,
        env: Option<String>,
    ) -> Result<Option<Secret>, ConfigError> {
        let value = match (inline, file, env) {
            (None, None, None) => return Ok(None),
            (Some(v), None, None) => v,
            (None, Some(f), None) => {
                let f = self.relative(&f);
                std::fs::read_to_string(&f)
                    .map_err(|e| {
                        self.suffixed("_file")
                            .err(format!("cannot read {}: {e}", f.display()))
                    })?
                    .trim_end_matches(['\r', '\n'])
                    .to_string()
            }
            (None, None, Some(var)) => std::env::var(&var).map_err(|e| {
                self.suffixed("_env")
                    .err(format!("environment variable {var} cannot be used: {e}"))
            })?,
            _ => {
                let name = self.name();
                return Err(self.err(format!(
                    "set only one of {name}, {name}_file and {name}_env"
                )));
            }
        };
        if value.is_empty() {
            return Err(self.err("must not be empty"));
        }
        Ok(Some(Secret::new(value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(e: ConfigError) -> String {
        match e {
            ConfigError::Invalid { key, .. } => key,
            other => panic!("not an Invalid error: {other}"),
        }
    }

    #[test]
    fn key_paths_compose_as_the_file_reads() {
        let file = Path::new("/etc/siren/siren.toml");
        let root = Key::root(file);
        let rule = root.at("integrations").item("ops").at("rules").item(0);
        assert_eq!(
            key_of(rule.at("headers").at("X-Status").err("r")),
            "integrations[ops].rules[0].headers.X-Status"
        );
        let token = root.at("integrations").item("hook").at("token");
        assert_eq!(token.name(), "token");
        assert_eq!(
            key_of(token.suffixed("_file").err("r")),
            "integrations[hook].token_file"
        );
        assert_eq!(
            root.at("smtp").relative(Path::new("tls.crt")),
            Path::new("/etc/siren/tls.crt")
        );
        let e = root
            .at("smtp")
            .at("max_sessions")
            .positive(0, 10)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/siren/siren.toml: smtp.max_sessions: 0 is out of range; allowed: 1 to 10"
        );
    }

    #[test]
    fn a_secret_is_given_one_way_only() {
        let at = Key::root(Path::new("s.toml")).at("http").at("api_token");
        assert_eq!(at.secret(None, None, None).unwrap(), None);
        assert_eq!(
            at.secret(Some("t".into()), None, None).unwrap().as_deref(),
            Some("t")
        );
        let both = at
            .secret(Some("t".into()), Some("f".into()), None)
            .unwrap_err();
        assert!(
            both.to_string()
                .contains("set only one of api_token, api_token_file and api_token_env")
        );
        let missing = at
            .secret(None, Some("/nonexistent/token".into()), None)
            .unwrap_err();
        assert_eq!(key_of(missing), "http.api_token_file");
        assert!(
            at.secret(Some(String::new()), None, None)
                .unwrap_err()
                .to_string()
                .contains("must not be empty")
        );
    }
}
