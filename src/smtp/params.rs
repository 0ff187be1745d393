//! The arguments of MAIL, RCPT and HELO/EHLO: parsed here, before mailin sees the line, into
//! the path Siren records and the form mailin's parser accepts. Pure: no I/O, no replies (the
//! session maps each [`Error`] to its reply).

/// Why a MAIL or RCPT line was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The line is not `MAIL FROM:` / `RCPT TO:` at all.
    NotRecognized,
    /// No `<path>`, stray brackets or spaces in it.
    Syntax,
    /// A parameter Siren does not implement, or a malformed `SIZE=`.
    Unsupported,
    /// `SIZE=` over `smtp.max_message_size`.
    TooBig,
    /// A control character or NUL in the path.
    Control,
    /// A local part over 64 octets (RFC 5321 4.5.3.1.1).
    LocalPartTooLong,
    /// A path over 256 octets, brackets included (RFC 5321 4.5.3.1.3).
    PathTooLong,
}

/// A `MAIL FROM:` command as Siren understood it.
#[derive(Debug, PartialEq)]
pub struct Mail {
    /// The reverse path; empty for the null sender `<>`.
    pub from: String,
    /// What `SIZE=` declared.
    pub size: Option<u64>,
    /// The line to hand mailin: its parser needs a non-empty path and knows no SIZE.
    pub line: Vec<u8>,
}

/// A `RCPT TO:` command as Siren understood it.
#[derive(Debug, PartialEq)]
pub struct Rcpt {
    pub to: String,
    /// The line to hand mailin, without the spaces its parser refuses.
    pub line: Vec<u8>,
}

/// `MAIL FROM:<path> [params]`. SIZE is checked here (552 before any data is sent); BODY is
/// kept; others are refused.
pub fn mail(line: &[u8], max_size: usize) -> Result<Mail, Error> {
    let (path, params) = split_path(line, b"MAIL FROM:")?;
    let mut body = None;
    let mut declared = None;
    for p in params.split(|&b| b == b' ').filter(|p| !p.is_empty()) {
        let upper = p.to_ascii_uppercase();
        if let Some(size) = upper.strip_prefix(b"SIZE=") {
            let size: u64 = std::str::from_utf8(size)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or(Error::Unsupported)?;
            if size > max_size as u64 {
                return Err(Error::TooBig);
            }
            declared = Some(size);
        } else if upper == b"BODY=8BITMIME" || upper == b"BODY=7BIT" {
            body = Some(upper);
        } else {
            return Err(Error::Unsupported);
        }
    }
    // mailin's parser needs a non-empty path; Siren records the null sender as "".
    let handed: &[u8] = if path.is_empty() {
        b"MAILER-DAEMON@null.invalid"
    } else {
        path.as_bytes()
    };
    let mut out = b"MAIL FROM:<".to_vec();
    out.extend_from_slice(handed);
    out.push(b'>');
    if let Some(b) = body {
        out.push(b' ');
        out.extend_from_slice(&b);
    }
    out.extend_from_slice(b"\r\n");
    Ok(Mail {
        from: path.to_string(),
        size: declared,
        line: out,
    })
}

/// `RCPT TO:<path>` with optional spaces after the colon; parameters are refused.
pub fn rcpt(line: &[u8]) -> Result<Rcpt, Error> {
    let (path, params) = split_path(line, b"RCPT TO:")?;
    if !params.iter().all(|&b| b == b' ') {
        return Err(Error::Unsupported);
    }
    if path.is_empty() {
        return Err(Error::Syntax);
    }
    let mut out = b"RCPT TO:<".to_vec();
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b">\r\n");
    Ok(Rcpt {
        to: path.to_string(),
        line: out,
    })
}

/// The domain of a `HELO`/`EHLO` line that mailin accepted (so it is one word).
pub fn helo_domain(line: &[u8]) -> String {
    let arg = line.get(4..).unwrap_or_default().trim_ascii();
    String::from_utf8_lossy(arg).into_owned()
}

/// Splits `PREFIX <path> params\r\n` into path and params. Anything else is bad syntax.
fn split_path<'a>(line: &'a [u8], prefix: &[u8]) -> Result<(&'a str, &'a [u8]), Error> {
    if line.len() < prefix.len() || !line[..prefix.len()].eq_ignore_ascii_case(prefix) {
        return Err(Error::NotRecognized);
    }
    let rest = line[prefix.len()..]
        .strip_suffix(b"\r\n")
        .ok_or(Error::Syntax)?;
    let rest = rest.trim_ascii_start();
    let rest = rest.strip_prefix(b"<").ok_or(Error::Syntax)?;
    let close = rest.iter().position(|&b| b == b'>').ok_or(Error::Syntax)?;
    let path = &rest[..close];
    if path.iter().any(|&b| b == b'<' || b == b' ' || b == b'\t') {
        return Err(Error::Syntax);
    }
    if path.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err(Error::Control);
    }
    if path.len() + 2 > 256 {
        return Err(Error::PathTooLong);
    }
    if path
        .iter()
        .rposition(|&b| b == b'@')
        .is_some_and(|at| at > 64)
    {
        return Err(Error::LocalPartTooLong);
    }
    // mailin's parser takes UTF-8 only; routing compares text.
    let path = std::str::from_utf8(path).map_err(|_| Error::Syntax)?;
    Ok((path, &rest[close + 1..]))
}

/// A line that starts like an HTTP request: a browser or a cross-protocol attack (a form or
/// a proxy made to talk to the SMTP port), which the session closes at once.
pub fn looks_like_http(line: &[u8]) -> bool {
    const METHODS: [&[u8]; 9] = [
        b"GET ",
        b"POST ",
        b"PUT ",
        b"HEAD ",
        b"DELETE ",
        b"OPTIONS ",
        b"PATCH ",
        b"TRACE ",
        b"CONNECT ",
    ];
    METHODS.iter().any(|m| line.starts_with(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1000;

    /// A line and what it should parse to: the recorded path and the line mailin gets.
    type Case = (&'static str, Result<(String, String), Error>);

    #[test]
    fn mail_lines() {
        let ok = |from: &str, handed: &str| Ok((from.to_string(), handed.to_string()));
        let cases: &[Case] = &[
            ("MAIL FROM:<a@b>\r\n", ok("a@b", "MAIL FROM:<a@b>\r\n")),
            ("mail from:<a@b>\r\n", ok("a@b", "MAIL FROM:<a@b>\r\n")),
            ("MAIL FROM: <a@b>\r\n", ok("a@b", "MAIL FROM:<a@b>\r\n")),
            (
                "MAIL FROM:<>\r\n",
                ok("", "MAIL FROM:<MAILER-DAEMON@null.invalid>\r\n"),
            ),
            (
                "MAIL FROM:<a@b> body=8bitmime\r\n",
                ok("a@b", "MAIL FROM:<a@b> BODY=8BITMIME\r\n"),
            ),
            (
                "MAIL FROM:<a@b> BODY=7BIT SIZE=1000\r\n",
                ok("a@b", "MAIL FROM:<a@b> BODY=7BIT\r\n"),
            ),
            ("MAIL FROM:<a@b> SIZE=1001\r\n", Err(Error::TooBig)),
            ("MAIL FROM:<a@b> SIZE=lots\r\n", Err(Error::Unsupported)),
            ("MAIL FROM:<a@b> SIZE=-1\r\n", Err(Error::Unsupported)),
            ("MAIL FROM:<a@b> SMTPUTF8\r\n", Err(Error::Unsupported)),
            (
                "MAIL FROM:<a@b> BODY=BINARYMIME\r\n",
                Err(Error::Unsupported),
            ),
            ("MAIL FROM:a@b\r\n", Err(Error::Syntax)),
            ("MAIL FROM:<a@b\r\n", Err(Error::Syntax)),
            ("MAIL FROM:<<a@b>>\r\n", Err(Error::Syntax)),
            ("MAIL FROM:<a b@c>\r\n", Err(Error::Syntax)),
            ("MAIL FROM:<a@b>\n", Err(Error::Syntax)),
            ("MAIL TO:<a@b>\r\n", Err(Error::NotRecognized)),
            ("MAIL\r\n", Err(Error::NotRecognized)),
        ];
        for (line, want) in cases {
            let got =
                mail(line.as_bytes(), MAX).map(|m| (m.from, String::from_utf8(m.line).unwrap()));
            assert_eq!(&got, want, "{line:?}");
        }
    }

    #[test]
    fn address_limits() {
        let local = |n: usize| format!("{}@x.example", "l".repeat(n));
        let long = |n: usize| format!("a@{}", "d".repeat(n - 2));
        let cases: &[(String, Result<(), Error>)] = &[
            (local(64), Ok(())),
            (local(65), Err(Error::LocalPartTooLong)),
            (long(254), Ok(())),
            (long(255), Err(Error::PathTooLong)),
            ("a\u{0}b@x".into(), Err(Error::Control)),
            ("a\u{1b}[31m@x".into(), Err(Error::Control)),
            ("a\u{7f}@x".into(), Err(Error::Control)),
            ("a\rb@x".into(), Err(Error::Control)),
            ("\"a@b\"@x".into(), Ok(())),
        ];
        for (path, want) in cases {
            let rcpt_line = format!("RCPT TO:<{path}>\r\n");
            assert_eq!(&rcpt(rcpt_line.as_bytes()).map(|_| ()), want, "{path:?}");
            let mail_line = format!("MAIL FROM:<{path}>\r\n");
            assert_eq!(
                &mail(mail_line.as_bytes(), MAX).map(|_| ()),
                want,
                "{path:?}"
            );
        }
    }

    #[test]
    fn http_request_lines() {
        for (line, http) in [
            ("GET / HTTP/1.1\r\n", true),
            ("POST /webhooks/x HTTP/1.1\r\n", true),
            ("CONNECT 127.0.0.1:25 HTTP/1.1\r\n", true),
            ("HELP\r\n", false),
            ("get / HTTP/1.1\r\n", false),
            ("EHLO GET\r\n", false),
        ] {
            assert_eq!(looks_like_http(line.as_bytes()), http, "{line:?}");
        }
    }

    #[test]
    fn declared_size_is_kept() {
        let m = mail(b"MAIL FROM:<a@b> SIZE=999\r\n", MAX).unwrap();
        assert_eq!(m.size, Some(999));
        assert_eq!(mail(b"MAIL FROM:<a@b>\r\n", MAX).unwrap().size, None);
    }

    #[test]
    fn paths_must_be_utf8() {
        assert_eq!(mail(b"MAIL FROM:<\xff@x>\r\n", MAX), Err(Error::Syntax));
        assert_eq!(rcpt(b"RCPT TO:<a\xc3\x28@x>\r\n"), Err(Error::Syntax));
    }

    #[test]
    fn rcpt_lines() {
        let ok = |to: &str, handed: &str| Ok((to.to_string(), handed.to_string()));
        let cases: &[Case] = &[
            ("RCPT TO:<x@y>\r\n", ok("x@y", "RCPT TO:<x@y>\r\n")),
            ("rcpt to:  <x@y>  \r\n", ok("x@y", "RCPT TO:<x@y>\r\n")),
            ("RCPT TO:<>\r\n", Err(Error::Syntax)),
            ("RCPT TO:<x@y> NOTIFY=NEVER\r\n", Err(Error::Unsupported)),
            ("RCPT TO:<<<>>>\r\n", Err(Error::Syntax)),
            ("RCPT TO:x@y\r\n", Err(Error::Syntax)),
            ("RCPT FROM:<x@y>\r\n", Err(Error::NotRecognized)),
        ];
        for (line, want) in cases {
            let got = rcpt(line.as_bytes()).map(|r| (r.to, String::from_utf8(r.line).unwrap()));
            assert_eq!(&got, want, "{line:?}");
        }
    }

    #[test]
    fn helo_domains() {
        for (line, want) in [
            ("EHLO client.test\r\n", "client.test"),
            ("helo  x\r\n", "x"),
            ("EHLO [127.0.0.1]\r\n", "[127.0.0.1]"),
        ] {
            assert_eq!(helo_domain(line.as_bytes()), want, "{line:?}");
        }
    }
}
