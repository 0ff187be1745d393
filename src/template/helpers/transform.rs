//! Text transforms behind the string helpers, as handlebars-helpers writes them with
//! JavaScript's regexes (`\w` is ASCII only) and UTF-16 lengths.

use super::js;

/// JavaScript's `\w`: ASCII letters, digits and `_` only.
pub(super) fn word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// handlebars-helpers' `utils.chop`: trimmed, without leading and trailing non-word runs.
pub(super) fn chop(s: &str) -> String {
    let t = s.trim();
    let sep = |c: char| !c.is_ascii_alphanumeric();
    t.trim_start_matches(sep).trim_end_matches(sep).to_string()
}

/// handlebars-helpers' `utils.changecase`: chopped, lower-cased, and every run of separators
/// with the word character after it replaced by `f(char)`.
pub(super) fn changecase(s: &str, f: impl Fn(char) -> String) -> String {
    if s.encode_utf16().count() == 1 {
        return s.to_lowercase();
    }
    let lower = chop(s).to_lowercase();
    let mut out = String::new();
    let mut chars = lower.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
            continue;
        }
        while chars.peek().is_some_and(|&n| !n.is_ascii_alphanumeric()) {
            chars.next();
        }
        match chars.next() {
            Some(n) => out.push_str(&f(n)),
            None => out.push_str(&f('\0').replace('\0', "")),
        }
    }
    out
}

pub(super) fn capitalize(s: &str) -> String {
    let units: Vec<u16> = s.encode_utf16().collect();
    match units.first() {
        None => String::new(),
        Some(&u) => {
            let head = String::from_utf16_lossy(&[u]).to_uppercase();
            head + &String::from_utf16_lossy(&units[1..])
        }
    }
}

pub(super) fn upper_first(c: char) -> String {
    c.to_uppercase().collect()
}

/// JavaScript's `trim`: whitespace and line terminators, including U+FEFF.
pub(super) fn js_trim(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}')
}

/// `s.slice(0, limit - suffix.length) + suffix`.
pub(super) fn truncate_to(s: &str, limit: f64, suffix: &str) -> String {
    let end = limit - js::len16(suffix) as f64;
    format!("{}{suffix}", js::slice16(s, 0.0, Some(end)))
}

pub(super) fn capitalize_all(s: &str) -> String {
    // /\w\S*/g: a word character and the non-spaces after it.
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find(word) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let end = tail.find(char::is_whitespace).unwrap_or(tail.len());
        out.push_str(&capitalize(&tail[..end]));
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

pub(super) fn titleize(s: &str) -> String {
    let mut spaced = String::new();
    let mut in_run = false;
    for ch in s.chars() {
        if matches!(ch, '-' | ' ' | '_') {
            if !in_run {
                spaced.push(' ');
            }
            in_run = true;
        } else {
            spaced.push(ch);
            in_run = false;
        }
    }
    spaced
        .split(' ')
        .map(capitalize)
        .collect::<Vec<_>>()
        .join(" ")
}

/// /((?:\S[^\.\?\!]*)[\.\?\!]*)/g, each match capitalized and the rest lower-cased.
pub(super) fn sentence(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.char_indices().peekable();
    while let Some((_, ch)) = chars.next() {
        if ch.is_whitespace() {
            out.push(ch);
            continue;
        }
        let mut part = String::from(ch);
        while let Some(&(_, n)) = chars.peek() {
            if matches!(n, '.' | '?' | '!') {
                break;
            }
            part.push(n);
            chars.next();
        }
        while let Some(&(_, n)) = chars.peek() {
            if !matches!(n, '.' | '?' | '!') {
                break;
            }
            part.push(n);
            chars.next();
        }
        let units: Vec<u16> = part.encode_utf16().collect();
        out.push_str(&String::from_utf16_lossy(&units[..1]).to_uppercase());
        out.push_str(&String::from_utf16_lossy(&units[1..]).to_lowercase());
    }
    out
}

pub(super) fn escape_mustaches(body: &str) -> String {
    let mut out = String::new();
    let mut prev = None;
    let mut rest = body;
    while let Some(i) = rest.find("{{") {
        let before = &rest[..i];
        let last = before.chars().last().or(prev);
        out.push_str(before);
        if last != Some('\\') {
            out.push('\\');
        }
        out.push_str("{{");
        prev = Some('{');
        rest = &rest[i + 2..];
    }
    out.push_str(rest);
    out
}
