//! The label values Siren's metrics take: why an input was refused, who changed an alert,
//! how a delivery ended. Plain types of their own, so that the metrics depend on no other
//! module (the store and the front ends convert into them).

/// Why SMTP intake refused something: a message, a recipient, a command or a whole session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpRejection {
    /// `552 5.3.4`: over `smtp.max_message_size` (declared with SIZE= or sent).
    Size,
    /// `500 5.5.2`: a line over `smtp.max_line_length`; the session is closed.
    LineLength,
    /// `452 4.5.3`: over `smtp.max_recipients`.
    Recipients,
    /// `550 5.1.1`: no integration claims the address.
    UnknownRecipient,
    /// `521 5.5.2` in DATA (SMTP smuggling), or a command line ending in a bare LF.
    BareLf,
    /// `421 4.4.2`: idle or whole-session timeout.
    Timeout,
    /// `421 4.3.2`: over `smtp.max_sessions`.
    SessionCap,
    /// `451 4.3.0`: the commit failed; the sender retries.
    StoreFailure,
    /// Syntax errors, bad command order, unsupported parameters.
    Protocol,
    /// `421 4.7.0`: the session reached the protocol-error limit and was cut off.
    TooManyErrors,
    /// `421 4.3.0`: the daemon is stopping.
    Shutdown,
    /// The TLS handshake after STARTTLS failed or timed out.
    TlsHandshake,
    /// `538 5.7.11`: AUTH before STARTTLS.
    EncryptionRequired,
    /// `530 5.7.0`: MAIL without AUTH while `smtp.require_auth` is on.
    AuthRequired,
    /// `535 5.7.8`: wrong user name or password.
    AuthFailed,
    /// `421 4.7.0`: over `smtp.max_sessions_per_client`.
    ClientSessions,
    /// `421 4.7.0`: over `smtp.max_connection_rate_per_client`.
    ClientRate,
    /// `454 4.7.0`: AUTH while the client address is over `smtp.max_auth_error_rate_per_client`.
    AuthThrottled,
    /// `421 4.7.0`: past `smtp.junk_commands_max` NOOP/RSET/VRFY/HELP... commands.
    JunkCommands,
    /// A line that looks like HTTP (`GET `, `POST `, `CONNECT `...); the session is closed.
    HttpCommand,
    /// `452 4.3.1`: the messages in flight hold `smtp.max_inflight_bytes`.
    Inflight,
}

impl SmtpRejection {
    pub const ALL: [SmtpRejection; 21] = [
        Self::Size,
        Self::LineLength,
        Self::Recipients,
        Self::UnknownRecipient,
        Self::BareLf,
        Self::Timeout,
        Self::SessionCap,
        Self::StoreFailure,
        Self::Protocol,
        Self::TooManyErrors,
        Self::Shutdown,
        Self::TlsHandshake,
        Self::EncryptionRequired,
        Self::AuthRequired,
        Self::AuthFailed,
        Self::ClientSessions,
        Self::ClientRate,
        Self::AuthThrottled,
        Self::JunkCommands,
        Self::HttpCommand,
        Self::Inflight,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Size => "size",
            Self::LineLength => "line_length",
            Self::Recipients => "recipients",
            Self::UnknownRecipient => "unknown_recipient",
            Self::BareLf => "bare_lf",
            Self::Timeout => "timeout",
            Self::SessionCap => "session_cap",
            Self::StoreFailure => "store_failure",
            Self::Protocol => "protocol",
            Self::TooManyErrors => "too_many_errors",
            Self::Shutdown => "shutdown",
            Self::TlsHandshake => "tls_handshake",
            Self::EncryptionRequired => "encryption_required",
            Self::AuthRequired => "auth_required",
            Self::AuthFailed => "auth_failed",
            Self::ClientSessions => "client_sessions",
            Self::ClientRate => "client_rate",
            Self::AuthThrottled => "auth_throttled",
            Self::JunkCommands => "junk_commands",
            Self::HttpCommand => "http_command",
            Self::Inflight => "inflight",
        }
    }
}

/// Why the HTTP port refused a webhook request or a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpRejection {
    /// 400: the body is not JSON.
    BadJson,
    /// 400: JSON the integration's adapter cannot read, or a bad query string.
    BadPayload,
    /// 401: missing or wrong token.
    Unauthorized,
    /// 404: no webhook integration with that id.
    NotFound,
    /// 413: over `http.max_body_size`.
    TooLarge,
    /// 415: not `application/json`.
    UnsupportedMediaType,
    /// 503: the commit failed.
    StoreFailure,
    /// 413: more alerts than `http.max_alerts_per_request`.
    TooManyAlerts,
    /// 408: the body came slower than `http.body_timeout` and `http.body_min_rate` allow.
    BodyTimeout,
    /// The headers did not arrive within `http.header_timeout`; the connection was closed.
    HeaderTimeout,
    /// 503 and close: over `http.max_connections`.
    ConnectionCap,
}

impl HttpRejection {
    pub const ALL: [HttpRejection; 11] = [
        Self::BadJson,
        Self::BadPayload,
        Self::Unauthorized,
        Self::NotFound,
        Self::TooLarge,
        Self::UnsupportedMediaType,
        Self::StoreFailure,
        Self::TooManyAlerts,
        Self::BodyTimeout,
        Self::HeaderTimeout,
        Self::ConnectionCap,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadJson => "bad_json",
            Self::BadPayload => "bad_payload",
            Self::Unauthorized => "unauthorized",
            Self::NotFound => "not_found",
            Self::TooLarge => "too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::StoreFailure => "store_failure",
            Self::TooManyAlerts => "too_many_alerts",
            Self::BodyTimeout => "body_timeout",
            Self::HeaderTimeout => "header_timeout",
            Self::ConnectionCap => "connection_cap",
        }
    }
}

/// Who changed an alert's status: a label of `siren_alerts_resolved` and
/// `siren_alerts_acknowledged`. The store converts its own `resolved_by` into this, so that
/// metrics depend on nothing above them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    Integration,
    Auto,
    User,
}

impl Actor {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Integration => "integration",
            Self::Auto => "auto",
            Self::User => "user",
        }
    }
}

/// A durable change to an alert, counted once its group commit is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertChange {
    Created,
    /// Created with status `dropped` (a rule dropped it).
    Dropped,
    Aggregated,
    Resolved(Actor),
    /// By the integration (an acknowledge event) or a user (the API).
    Acknowledged(Actor),
}

/// How one delivery attempt to a destination ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The destination took it (2xx, exit status 0, 250): never sent again.
    Delivered,
    /// It failed and will be retried.
    Failed,
    /// It failed for the last time and was dead-lettered.
    Dead,
}

impl DeliveryOutcome {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::Dead => "dead",
        }
    }
}
