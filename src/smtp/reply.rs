//! Every SMTP reply Siren sends, with its enhanced status code (RFC 3463). The one place that
//! decides code and wording; the log gets the detail, the client a short generic text.

use std::borrow::Cow;

use mailin::Response;

pub fn greeting(host: &str) -> String {
    format!("220 {host} ESMTP Siren\r\n")
}

pub fn ehlo(host: &str, helo: &str, max_size: usize, starttls: bool, auth: bool) -> String {
    let starttls = if starttls { "250-STARTTLS\r\n" } else { "" };
    let auth = if auth { "250-AUTH PLAIN LOGIN\r\n" } else { "" };
    format!(
        "250-{host} Hello {helo}\r\n250-PIPELINING\r\n250-SIZE {max_size}\r\n250-8BITMIME\r\n{starttls}{auth}250 ENHANCEDSTATUSCODES\r\n"
    )
}

pub const START_TLS: &str = "220 2.0.0 Ready to start TLS\r\n";

pub fn helo(host: &str) -> String {
    format!("250 {host}\r\n")
}

pub const MAIL_OK: &str = "250 2.1.0 Ok\r\n";
pub const RCPT_OK: &str = "250 2.1.5 Ok\r\n";
pub const TOO_MANY_RECIPIENTS: &str = "452 4.5.3 Error: too many recipients\r\n";

pub fn no_integration(address: &str) -> String {
    format!(
        "550 5.1.1 <{address}>: Recipient address rejected: no integration claims this address\r\n"
    )
}

pub fn queued(id: u64) -> String {
    format!("250 2.0.0 Ok: queued as {id}\r\n")
}

pub const TOO_MANY_SESSIONS: &str = "421 4.3.2 Too many connections, try again later\r\n";
pub const SHUTTING_DOWN: &str = "421 4.3.0 Service shutting down, try again later\r\n";
pub const LINE_TOO_LONG: &str = "500 5.5.2 Error: line too long\r\n";
pub const BARE_LF: &str =
    "521 5.5.2 Error: bare <LF> received in message data, use <CR><LF> line endings\r\n";
pub const MESSAGE_TOO_BIG: &str =
    "552 5.3.4 Error: message size exceeds fixed maximum message size\r\n";
pub const STORE_FAILED: &str = "451 4.3.0 Error: local error in processing, try again later\r\n";
pub const TOO_MANY_ERRORS: &str = "421 4.7.0 Error: too many errors\r\n";
pub const UNSUPPORTED_PARAMETER: &str = "555 5.5.4 Error: unsupported MAIL or RCPT parameter\r\n";
pub const NOT_RECOGNIZED: &str = "500 5.5.2 Error: command not recognized\r\n";
pub const BARE_LF_COMMAND: &str = "500 5.5.2 Error: command lines must end with <CR><LF>\r\n";
pub const BAD_ADDRESS_SYNTAX: &str = "501 5.1.7 Error: bad address syntax\r\n";

// Addresses over RFC 5321's limits: X.1.3 is a recipient's, X.1.7 the sender's.
pub fn address_control(recipient: bool) -> &'static str {
    if recipient {
        "501 5.1.3 Error: control character in address\r\n"
    } else {
        "501 5.1.7 Error: control character in address\r\n"
    }
}

pub fn path_too_long(recipient: bool) -> &'static str {
    if recipient {
        "501 5.1.3 Error: path too long (at most 256 octets)\r\n"
    } else {
        "501 5.1.7 Error: path too long (at most 256 octets)\r\n"
    }
}

pub fn local_part_too_long(recipient: bool) -> &'static str {
    if recipient {
        "553 5.1.3 Error: local part too long (at most 64 octets)\r\n"
    } else {
        "553 5.1.7 Error: local part too long (at most 64 octets)\r\n"
    }
}

// Fair sharing and budgets.
pub const TOO_MANY_CLIENT_SESSIONS: &str =
    "421 4.7.0 Error: too many connections from your address, try again later\r\n";
pub const CLIENT_RATE: &str =
    "421 4.7.0 Error: too many connections from your address this minute, try again later\r\n";
pub const TOO_MANY_AUTH_ERRORS: &str =
    "421 4.7.0 Error: too many failed authentication attempts\r\n";
pub const AUTH_THROTTLED: &str = "454 4.7.0 Error: too many failed authentication attempts from your address, try again later\r\n";
pub const TOO_MANY_RCPT_ERRORS: &str = "421 4.7.0 Error: too many refused recipients\r\n";
pub const TOO_MANY_JUNK_COMMANDS: &str = "421 4.7.0 Error: too many commands without a message\r\n";
pub const HTTP_COMMAND: &str = "500 5.5.1 Error: this is an SMTP server, not HTTP\r\n";
pub const NO_ROOM: &str = "452 4.3.1 Error: insufficient system storage, try again later\r\n";

// AUTH (RFC 4954).
pub const AUTH_NOT_ENABLED: &str = "503 5.5.1 Error: authentication not enabled\r\n";
pub const ENCRYPTION_REQUIRED: &str =
    "538 5.7.11 Encryption required for requested authentication mechanism\r\n";
pub const SEND_EHLO_FIRST: &str = "503 5.5.1 Error: send HELO/EHLO first\r\n";
pub const AUTH_IN_TRANSACTION: &str = "503 5.5.1 Error: MAIL transaction in progress\r\n";
pub const ALREADY_AUTHENTICATED: &str = "503 5.5.1 Error: already authenticated\r\n";
pub const AUTH_SYNTAX: &str = "501 5.5.4 Syntax: AUTH mechanism [initial-response]\r\n";
pub const AUTH_MECHANISM: &str = "504 5.5.4 Error: unsupported authentication mechanism\r\n";
/// PLAIN's empty challenge; LOGIN's are "Username:" and "Password:" in base64.
pub const AUTH_CHALLENGE: &str = "334 \r\n";
pub const AUTH_USERNAME: &str = "334 VXNlcm5hbWU6\r\n";
pub const AUTH_PASSWORD: &str = "334 UGFzc3dvcmQ6\r\n";
pub const AUTH_ABORTED: &str = "501 5.7.0 Error: authentication aborted\r\n";
pub const AUTH_BAD_BASE64: &str = "501 5.5.2 Error: cannot decode the response\r\n";
pub const AUTH_OK: &str = "235 2.7.0 Authentication successful\r\n";
pub const AUTH_FAILED: &str = "535 5.7.8 Error: authentication failed\r\n";
pub const AUTH_REQUIRED: &str = "530 5.7.0 Authentication required\r\n";

pub fn idle_timeout(host: &str) -> String {
    format!("421 4.4.2 {host} Error: timeout exceeded\r\n")
}

pub fn session_timeout(host: &str) -> String {
    format!("421 4.4.2 {host} Error: session time limit exceeded\r\n")
}

/// Renders a response of mailin's state machine, adding the enhanced status code its fixed
/// texts lack. A response that already carries one passes unchanged.
pub fn render(res: &Response) -> Cow<'static, str> {
    let buf = res.buffer().unwrap_or_default();
    let own = || Cow::Owned(String::from_utf8_lossy(&buf).into_owned());
    if has_enhanced_code(&buf) {
        return own();
    }
    let text: &str = match res.code {
        221 => "221 2.0.0 Bye\r\n",
        250 => "250 2.0.0 Ok\r\n",
        252 => "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery\r\n",
        354 => "354 End data with <CR><LF>.<CR><LF>\r\n",
        421 => "421 4.3.0 Error: internal error, closing connection\r\n",
        500 => NOT_RECOGNIZED,
        502 => "501 5.5.4 Syntax error in parameters or arguments\r\n",
        503 => "503 5.5.1 Error: bad sequence of commands\r\n",
        530 => "530 5.7.0 Authentication required\r\n",
        535 => "535 5.7.8 Error: authentication failed\r\n",
        _ => return own(),
    };
    Cow::Borrowed(text)
}

/// True when the first line reads `ddd x.y.z ...`.
fn has_enhanced_code(buf: &[u8]) -> bool {
    let rest = match buf.get(4..) {
        Some(r) => r,
        None => return false,
    };
    let end = rest
        .iter()
        .position(|&b| b == b' ' || b == b'\r')
        .unwrap_or(rest.len());
    let parts: Vec<&[u8]> = rest[..end].split(|&b| b == b'.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.iter().all(u8::is_ascii_digit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enhanced_codes_added_once() {
        assert_eq!(render(&mailin::response::OK), "250 2.0.0 Ok\r\n");
        let custom = Response::custom(550, "5.1.1 <x@y>: no".into());
        assert_eq!(render(&custom), "550 5.1.1 <x@y>: no\r\n");
    }
}
