//! URL helpers of handlebars-helpers: percent-encoding as `encodeURIComponent` does, decoding,
//! resolving, parsing (into Node's legacy `url.parse` fields) and stripping parts.

use serde_json::{Map, Value};

use crate::template::registry::{Call, Spec, spec};

fn nonempty(v: &Value) -> Option<&str> {
    v.as_str().filter(|s| !s.is_empty())
}

/// `encodeURIComponent`: everything but `A-Z a-z 0-9 - _ . ! ~ * ' ( )` as UTF-8 `%XX`.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `decodeURIComponent`: malformed escapes are an error, as there.
fn decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or("URI malformed")?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| "URI malformed")?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "URI malformed".to_string())
}

fn encode_arg(c: &Call<'_>) -> Result<Value, String> {
    Ok(nonempty(c.arg(0)).map_or(Value::Null, |s| encode(s).into()))
}

fn decode_arg(c: &Call<'_>) -> Result<Value, String> {
    match nonempty(c.arg(0)) {
        Some(s) => Ok(decode(s)?.into()),
        None => Ok(Value::Null),
    }
}

/// Node's legacy `url.parse` fields.
fn parse(s: &str) -> Map<String, Value> {
    let mut m = Map::new();
    let (rest, hash) = match s.find('#') {
        Some(i) => (&s[..i], Some(&s[i..])),
        None => (s, None),
    };
    let scheme_end = rest.find(':').filter(|&i| {
        i > 0
            && rest[..i].starts_with(|c: char| c.is_ascii_alphabetic())
            && rest[..i]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    });
    let (protocol, rest) = match scheme_end {
        Some(i) => (Some(rest[..=i].to_lowercase()), &rest[i + 1..]),
        None => (None, rest),
    };
    let slashes = rest.starts_with("//");
    let (host, rest) = if slashes {
        let r = &rest[2..];
        let end = r.find(['/', '?']).unwrap_or(r.len());
        (Some(r[..end].to_lowercase()), &r[end..])
    } else {
        (None, rest)
    };
    let (auth, host) = match host {
        Some(h) => match h.rfind('@') {
            Some(i) => (Some(h[..i].to_string()), Some(h[i + 1..].to_string())),
            None => (None, Some(h)),
        },
        None => (None, None),
    };
    let (pathname, search) = match rest.find('?') {
        Some(i) => (&rest[..i], Some(&rest[i..])),
        None => (rest, None),
    };
    let (hostname, port) = match &host {
        Some(h) => match h.rsplit_once(':') {
            Some((n, p)) if p.chars().all(|c| c.is_ascii_digit()) && !p.is_empty() => {
                (Some(n.to_string()), Some(p.to_string()))
            }
            _ => (Some(h.clone()), None),
        },
        None => (None, None),
    };
    let pathname = if pathname.is_empty() && slashes {
        "/"
    } else {
        pathname
    };
    let opt = |v: Option<String>| v.map_or(Value::Null, Value::from);
    m.insert("protocol".into(), opt(protocol.clone()));
    m.insert(
        "slashes".into(),
        if slashes { true.into() } else { Value::Null },
    );
    m.insert("auth".into(), opt(auth));
    m.insert("host".into(), opt(host.clone()));
    m.insert("port".into(), opt(port));
    m.insert("hostname".into(), opt(hostname));
    m.insert("hash".into(), opt(hash.map(str::to_string)));
    m.insert("search".into(), opt(search.map(str::to_string)));
    m.insert("query".into(), opt(search.map(|q| q[1..].to_string())));
    m.insert(
        "pathname".into(),
        if pathname.is_empty() {
            Value::Null
        } else {
            pathname.into()
        },
    );
    let path = format!("{pathname}{}", search.unwrap_or(""));
    m.insert(
        "path".into(),
        if path.is_empty() {
            Value::Null
        } else {
            path.into()
        },
    );
    let host_part = host.map(|h| format!("//{h}")).unwrap_or_default();
    let href = format!(
        "{}{host_part}{pathname}{}{}",
        protocol.unwrap_or_default(),
        search.unwrap_or(""),
        hash.unwrap_or("")
    );
    m.insert("href".into(), href.into());
    m
}

fn resolve(base: &str, href: &str) -> String {
    match url::Url::parse(base).and_then(|b| b.join(href)) {
        Ok(u) => u.to_string(),
        Err(_) => match url::Url::parse(href) {
            Ok(u) => u.to_string(),
            Err(_) => {
                let dir = base.rfind('/').map_or("", |i| &base[..=i]);
                format!("{dir}{href}")
            }
        },
    }
}

pub(in crate::template) const HELPERS: &[Spec] = &[
    spec("encodeURI", 1, 1, encode_arg).missing_ok().doc(
        "text percent-encoded as a URI component",
        "{{encodeURI data.labels.instance}}",
        "db-1%3A9100",
    ),
    spec("escape", 1, 1, encode_arg).missing_ok().doc(
        "text percent-encoded as a query-string value",
        "{{escape \"disk full\"}}",
        "disk%20full",
    ),
    spec("decodeURI", 1, 1, decode_arg).missing_ok().doc(
        "percent-encoding decoded",
        "{{decodeURI \"disk%20full\"}}",
        "disk full",
    ),
    spec("url_encode", 1, 1, encode_arg).missing_ok().doc(
        "`encodeURI` by another name",
        "{{url_encode \"a&b\"}}",
        "a%26b",
    ),
    spec("url_decode", 1, 1, decode_arg).missing_ok().doc(
        "`decodeURI` by another name",
        "{{url_decode \"a%26b\"}}",
        "a&b",
    ),
    spec("urlResolve", 2, 2, |c| {
        Ok(resolve(&super::js::string(c.arg(0)), &super::js::string(c.arg(1))).into())
    })
    .missing_ok()
    .doc(
        "`href` resolved against `base`",
        "{{urlResolve \"https://grafana.example/d/abc/\" \"../xyz\"}}",
        "https://grafana.example/d/xyz",
    ),
    spec("urlParse", 1, 1, |c| Ok(Value::Object(parse(&super::js::string(c.arg(0))))))
        .missing_ok()
        .doc(
            "a URL's parts: `protocol`, `host`, `hostname`, `port`, `pathname`, `search`, `query`, `hash`…",
            "{{get \"hostname\" (urlParse \"https://grafana.example:3000/d/abc?orgId=1\")}}",
            "grafana.example",
        ),
    spec("stripQuerystring", 1, 1, |c| {
        Ok(nonempty(c.arg(0)).map_or(Value::Null, |s| s.split('?').next().unwrap_or("").into()))
    })
    .missing_ok()
    .doc(
        "a URL without its query string",
        "{{stripQuerystring \"https://grafana.example/d/abc?orgId=1\"}}",
        "https://grafana.example/d/abc",
    ),
    spec("stripProtocol", 1, 1, |c| {
        let Some(s) = nonempty(c.arg(0)) else {
            return Ok(Value::Null);
        };
        let mut m = parse(s);
        let href = m.remove("href").and_then(|h| h.as_str().map(str::to_string)).unwrap_or_default();
        let protocol = m.get("protocol").and_then(Value::as_str).unwrap_or("").to_string();
        let rest = &href[protocol.len()..];
        Ok(rest.to_string().into())
    })
    .missing_ok()
    .doc(
        "a URL without its scheme",
        "{{stripProtocol \"https://grafana.example/d/abc\"}}",
        "//grafana.example/d/abc",
    ),
];
