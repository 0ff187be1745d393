//! Aggregation keys that survive noise (`normalize = true`): what changes between repeats of
//! one problem is masked before the exact-title window compares keys, so "Disk 91% full on
//! db01" and "Disk 93% full on db01" fold into one alert.
//!
//! The key is cut into words (at whitespace and at brackets, quotes, `=`, `,`, `;` and `|`,
//! and before a closing `:` or `.`). A word that is wholly a value is masked: a number (sign,
//! decimals, exponent, a percent sign or a byte unit), a range or fraction (`10-20`, `3/5`),
//! a duration (`46s`, `1h30m`), a date, time or timestamp, a UUID, a hex id (`0x…`, or eight
//! or more hex digits with a digit and a letter), an IPv4 address (with port or prefix) or an
//! IPv6 address. Any other word with a letter is a name and stays whole: the digits in `db01`,
//! `web-02`, `sda1` or `ip-10-0-1-7` name something. Masks separated only by spaces or
//! `-`, `/`, `,`, `:` become one (`12m 3s` -> `#`). Pure: no I/O.

use std::sync::LazyLock;

use regex::Regex;

/// What a masked value becomes; a word that is the mask stays one, so masking is idempotent.
const MASK: char = '#';

/// Whole-word value patterns (anchored).
static VALUES: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    [
        // Numbers, with sign, thousands separators, decimals, exponent, percent or byte unit.
        r"[-+]?\d[\d_]*(?:\.\d+)?(?:[eE][-+]?\d+)?(?:%|[kKmMgGtTpP]i?[bB]|[bB])?",
        // Ranges, fractions, and dotted dates: 10-20, 3/5, 2024.03.12.
        r"\d+(?:[-/.]\d+)+",
        // Durations: 46s, 250ms, 12m, 1h30m, 3.5s.
        r"\d+(?:\.\d+)?(?:ms|us|µs|ns|s|m|h|d|w)(?:\d+(?:\.\d+)?(?:ms|us|µs|ns|s|m|h|d|w))*",
        // RFC 3339 / ISO 8601 dates and date-times, and times of day.
        r"\d{4}-\d{2}-\d{2}(?:[T_]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?",
        r"\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?",
        r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
        r"0[xX][0-9a-fA-F]+",
        r"\d{1,3}(?:\.\d{1,3}){3}(?::\d+|/\d+)?",
        // IPv6, `::` shortening included (a time of day matches too, and is masked anyway).
        r"(?:[0-9a-fA-F]{0,4}:){2,7}[0-9a-fA-F]{0,4}",
    ]
    .iter()
    .map(|p| Regex::new(&format!("^(?:{p})$")).expect("normalize pattern compiles"))
    .collect()
});

/// `key` with every noisy value masked, whitespace collapsed.
pub fn normalize(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    // Where the last mask written ends in `out`.
    let mut last_mask: Option<usize> = None;
    for piece in pieces(key) {
        match piece {
            Piece::Word(word) if is_value(word) => {
                let joins = last_mask.is_some_and(|end| {
                    out[end..]
                        .chars()
                        .all(|c| c.is_whitespace() || matches!(c, '-' | '/' | ',' | ':'))
                });
                match last_mask {
                    Some(end) if joins => out.truncate(end),
                    _ => {
                        out.push(MASK);
                        last_mask = Some(out.len());
                    }
                }
            }
            Piece::Word(text) | Piece::Gap(text) => out.push_str(text),
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn is_value(word: &str) -> bool {
    word.chars().all(|c| c == MASK)
        || (word.chars().any(|c| c.is_ascii_digit()) && VALUES.iter().any(|re| re.is_match(word)))
        || is_hex_id(word)
}

/// Eight or more hex digits with at least one digit and one letter: a commit, container or
/// trace id, never a word.
fn is_hex_id(word: &str) -> bool {
    word.len() >= 8
        && word.chars().all(|c| c.is_ascii_hexdigit())
        && word.chars().any(|c| c.is_ascii_digit())
        && word.chars().any(|c| c.is_ascii_alphabetic())
}

enum Piece<'a> {
    Word(&'a str),
    Gap(&'a str),
}

/// The words of `text` and what lies between them, in order.
fn pieces(text: &str) -> Vec<Piece<'_>> {
    let gap = |c: char| {
        c.is_whitespace()
            || matches!(
                c,
                '(' | ')' | '[' | ']' | '{' | '}' | '<' | '>' | '"' | '\'' | '=' | ',' | ';' | '|'
            )
    };
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let start = rest.find(|c: char| !gap(c)).unwrap_or(rest.len());
        if start > 0 {
            out.push(Piece::Gap(&rest[..start]));
        }
        rest = &rest[start..];
        let end = rest.find(gap).unwrap_or(rest.len());
        let (word, after) = rest.split_at(end);
        // A closing `:`, `.`, `!` or `?` ends a sentence or a label, not the word.
        let core = word.trim_end_matches([':', '.', '!', '?']);
        if !core.is_empty() {
            out.push(Piece::Word(core));
        }
        if core.len() < word.len() {
            out.push(Piece::Gap(&word[core.len()..]));
        }
        rest = after;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn masks_what_changes_between_repeats() {
        #[rustfmt::skip]
        let cases: &[(&str, &str)] = &[
            ("Disk 91% full on db01", "Disk # full on db01"),
            ("Disk 93% full on db01", "Disk # full on db01"),
            ("Disk 7.8% free on /var", "Disk # free on /var"),
            ("load 12.25 on web-02", "load # on web-02"),
            ("CPU at -3 degrees", "CPU at # degrees"),
            ("Backup of db01 failed after 46s", "Backup of db01 failed after #"),
            ("Backup of db01 failed after 1h30m.", "Backup of db01 failed after #."),
            ("Resolved in 12m 3s: High CPU", "Resolved in #: High CPU"),
            ("slow query 250 ms on db02", "slow query # ms on db02"),
            ("job 7f3a9c22e1b4 failed", "job # failed"),
            ("object 0xdeadbeef leaked", "object # leaked"),
            ("request 6f1c2a4e-9b3d-4f7a-8e21-0c5d7b9a3e18 timed out", "request # timed out"),
            ("ping 192.0.2.21 lost", "ping # lost"),
            ("connect to 192.0.2.21:5432 refused", "connect to # refused"),
            ("route 10.0.0.0/8 withdrawn", "route # withdrawn"),
            ("neighbor 2001:db8::1 down", "neighbor # down"),
            ("fe80::1ff:fe23:4567:890a unreachable", "# unreachable"),
            ("at 2024-03-12T03:14:22Z disk full", "at # disk full"),
            ("at 2024-03-12 03:14:22.123 +0000 disk full", "at # disk full"),
            ("Problem started at 03:14:22 on 2024.03.12", "Problem started at # on #"),
            ("queue 1,204 messages", "queue # messages"),
            ("4.5GB free, 12 GiB used", "# free, # GiB used"),
            ("exit status 1 (pid 48213)", "exit status # (pid #)"),
            ("pid=48213 rss=512MB", "pid=# rss=#"),
            ("3/5 disks failed, range 10-20", "# disks failed, range #"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize(input), *want, "{input}");
        }
    }

    #[test]
    fn digits_inside_names_stay() {
        #[rustfmt::skip]
        let names = [
            "db01", "web-02", "sda1", "/dev/sdb", "eth0.5", "v2", "node-exporter-7", "deadbeef",
            "k8s", "ip-10-0-1-7", "Cron <root@db01> /usr/local/bin/backup.sh", "IPv6", "x86_64",
            "https://grafana.example.com/d/abc", "2nd", "disk /var on db01",
        ];
        for name in names {
            assert_eq!(normalize(name), name, "{name}");
        }
        // Two problems on two hosts stay apart.
        assert_ne!(
            normalize("Disk 91% full on db01"),
            normalize("Disk 91% full on db02")
        );
    }

    #[test]
    fn masking_is_idempotent_and_collapses_runs() {
        for s in [
            "Disk 91% full on db01",
            "between 10 and 20",
            "took 1h 5m 3s",
            "  a   b  ",
        ] {
            let once = normalize(s);
            assert_eq!(normalize(&once), once, "{s}");
        }
        assert_eq!(normalize("took 1h 5m 3s"), "took #");
        assert_eq!(normalize("took 5m"), normalize("took 1h 5m"));
        assert_eq!(normalize("  a   b  "), "a b");
        assert_eq!(normalize(""), "");
    }
}
