//! AUTH (RFC 4954) PLAIN and LOGIN, which Siren handles itself: mailin's AUTH, once enabled,
//! makes it mandatory for every session, answers AUTH before TLS with 503 rather than 538 and
//! has no `*` cancel. Offered and accepted only inside TLS and only for `[[smtp.users]]`.
//! Failures are budgeted per session and per client address (see `Driver::charge`, `clients`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::reply;
use super::session::{Answer, Driver};
use crate::http::constant_time_eq;
use crate::metrics::SmtpRejection;

/// Where the session stands with AUTH.
#[derive(PartialEq)]
pub enum Auth {
    None,
    /// A 334 challenge was sent: the next line is the client's answer, not a command.
    Pending {
        mechanism: Mechanism,
        username: Option<Vec<u8>>,
    },
    Done,
}

#[derive(Clone, Copy, PartialEq)]
pub enum Mechanism {
    Plain,
    Login,
}

impl Mechanism {
    fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "plain",
            Mechanism::Login => "login",
        }
    }
}

impl Driver {
    /// `AUTH mechanism [initial-response]`: PLAIN or LOGIN, only inside TLS, only for
    /// configured users, outside a mail transaction, once per session.
    pub(super) fn auth_command(&mut self, line: &[u8]) -> Answer {
        if self.ctx.config.smtp.users.is_empty() {
            return Answer::refuse(SmtpRejection::Protocol, reply::AUTH_NOT_ENABLED);
        }
        if !self.tls_active {
            return Answer::refuse(
                SmtpRejection::EncryptionRequired,
                reply::ENCRYPTION_REQUIRED,
            );
        }
        let sequence = if self.helo.is_none() {
            Some(reply::SEND_EHLO_FIRST)
        } else if self.tx.is_some() {
            Some(reply::AUTH_IN_TRANSACTION)
        } else if self.auth == Auth::Done {
            Some(reply::ALREADY_AUTHENTICATED)
        } else {
            None
        };
        if let Some(text) = sequence {
            return Answer::refuse(SmtpRejection::Protocol, text);
        }
        let args = line.get(4..).unwrap_or_default();
        let mut words = args
            .trim_ascii()
            .split(|&b| b == b' ')
            .filter(|w| !w.is_empty());
        let (Some(mechanism), initial, None) = (words.next(), words.next(), words.next()) else {
            return Answer::refuse(SmtpRejection::Protocol, reply::AUTH_SYNTAX);
        };
        let mechanism = match mechanism.to_ascii_uppercase().as_slice() {
            b"PLAIN" => Mechanism::Plain,
            b"LOGIN" => Mechanism::Login,
            _ => return Answer::refuse(SmtpRejection::Protocol, reply::AUTH_MECHANISM),
        };
        let Some(initial) = initial else {
            self.auth = Auth::Pending {
                mechanism,
                username: None,
            };
            return Answer::ok(match mechanism {
                Mechanism::Plain => reply::AUTH_CHALLENGE,
                Mechanism::Login => reply::AUTH_USERNAME,
            });
        };
        // RFC 4954: "=" is an initial response of zero length.
        let decoded = if initial == b"=" {
            Ok(Vec::new())
        } else {
            BASE64.decode(initial)
        };
        match decoded {
            Ok(decoded) => self.auth_step(mechanism, None, decoded),
            Err(_) => Answer::refuse(SmtpRejection::Protocol, reply::AUTH_BAD_BASE64),
        }
    }

    /// The client's answer to a 334 challenge.
    pub(super) fn auth_response(
        &mut self,
        mechanism: Mechanism,
        username: Option<Vec<u8>>,
        line: &[u8],
    ) -> Answer {
        let Some(answer) = line.strip_suffix(b"\r\n") else {
            return Answer::refuse(SmtpRejection::BareLf, reply::BARE_LF_COMMAND);
        };
        if answer == b"*" {
            return Answer::refuse(SmtpRejection::Protocol, reply::AUTH_ABORTED);
        }
        match BASE64.decode(answer) {
            Ok(decoded) => self.auth_step(mechanism, username, decoded),
            Err(_) => Answer::refuse(SmtpRejection::Protocol, reply::AUTH_BAD_BASE64),
        }
    }

    /// One decoded SASL message: PLAIN's `authzid NUL authcid NUL password`, or LOGIN's user
    /// name and then its password.
    fn auth_step(
        &mut self,
        mechanism: Mechanism,
        username: Option<Vec<u8>>,
        decoded: Vec<u8>,
    ) -> Answer {
        match (mechanism, username) {
            (Mechanism::Login, None) => {
                self.auth = Auth::Pending {
                    mechanism,
                    username: Some(decoded),
                };
                Answer::ok(reply::AUTH_PASSWORD)
            }
            (Mechanism::Login, Some(user)) => self.authenticate(mechanism, &user, &decoded),
            (Mechanism::Plain, _) => {
                let mut fields = decoded.splitn(3, |&b| b == 0);
                match (fields.next(), fields.next(), fields.next()) {
                    // Siren does not act on behalf of another identity: authzid is empty or
                    // the user's own name.
                    (Some(authz), Some(user), Some(password))
                        if authz.is_empty() || authz == user =>
                    {
                        self.authenticate(mechanism, user, password)
                    }
                    _ => self.authenticate(mechanism, b"", b""),
                }
            }
        }
    }

    /// Checks the credentials against every configured user, in constant time per comparison
    /// and without stopping at a match, so timing tells neither names nor passwords.
    /// A client address over its failure budget gets 454 without its credentials being looked
    /// at, so that guessing from one address is held to `max_auth_error_rate_per_client`.
    fn authenticate(&mut self, mechanism: Mechanism, user: &[u8], password: &[u8]) -> Answer {
        let ip = self.peer.ip();
        if !self.ctx.clients.auth_attempt(ip) {
            tracing::info!(peer = %self.peer, "AUTH refused: too many failures from this address");
            return Answer::refuse(SmtpRejection::AuthThrottled, reply::AUTH_THROTTLED);
        }
        let ok = self.ctx.config.smtp.users.iter().fold(false, |found, u| {
            let name = constant_time_eq(user, u.name.as_bytes());
            let pass = constant_time_eq(password, u.password.as_bytes());
            found | (name & pass)
        });
        self.ctx.metrics.smtp_auth(mechanism.name(), ok);
        let user = String::from_utf8_lossy(user);
        if ok {
            tracing::info!(peer = %self.peer, %user, mechanism = mechanism.name(), "authenticated");
            self.auth = Auth::Done;
            self.ctx.clients.auth_succeeded(ip);
            Answer::ok(reply::AUTH_OK)
        } else {
            tracing::info!(peer = %self.peer, %user, mechanism = mechanism.name(), "authentication failed");
            Answer::refuse(SmtpRejection::AuthFailed, reply::AUTH_FAILED)
        }
    }
}
