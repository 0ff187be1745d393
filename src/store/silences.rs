//! Silences (maintenance windows): stored durably, and kept compiled in memory by the writer's
//! handles, which mark every input they commit with the silence in force that matches it. A
//! silenced input is still logged and aggregated, but its alert is `dropped` and its changes
//! notify no destination (`txn.rs`). A silence stops by itself at its `ends_at`; `DELETE` ends
//! it early (its `ends_at` becomes now), and it stays listed.
//!
//! | key               | value                       |
//! |-------------------|-----------------------------|
//! | `Y` silence id    | the silence record (JSON)   |

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::engine::Engine;
use super::jobs::Answer;
use super::view::Read;
use super::writes::Writes;
use super::{Error, Page, SledStore, WriterHandle, rfc3339_ms, u64_at, unix_ms};

const SILENCE: u8 = b'Y';
/// Silences in force (not yet ended) at most: each is tried against every input.
pub const SILENCES_MAX: usize = 1000;
/// The longest `comment` and `created_by`, and the most matchers.
const TEXT_MAX: usize = 1024;
const MATCHERS_MAX: usize = 32;

/// A silence as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Record {
    id: u64,
    matchers: BTreeMap<String, String>,
    starts_ms: u64,
    ends_ms: u64,
    comment: String,
    created_by: String,
    created_ms: u64,
}

/// A silence as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    pub id: String,
    pub matchers: BTreeMap<String, String>,
    pub starts_at: String,
    pub ends_at: String,
    pub comment: String,
    pub created_by: String,
    pub created_at: String,
    /// `pending` (not started), `active`, or `expired` (ended, or ended early).
    pub state: String,
}

impl Record {
    pub(super) fn id(&self) -> u64 {
        self.id
    }

    pub(super) fn ends_ms(&self) -> u64 {
        self.ends_ms
    }

    /// The silence as the API shows it at `now`.
    pub(super) fn view(&self, now: u64) -> Silence {
        let state = if now < self.starts_ms {
            "pending"
        } else if now < self.ends_ms {
            "active"
        } else {
            "expired"
        };
        Silence {
            id: self.id.to_string(),
            matchers: self.matchers.clone(),
            starts_at: rfc3339_ms(self.starts_ms),
            ends_at: rfc3339_ms(self.ends_ms),
            comment: self.comment.clone(),
            created_by: self.created_by.clone(),
            created_at: rfc3339_ms(self.created_ms),
            state: state.into(),
        }
    }
}

/// A silence to create, as `POST /api/v1/silences` takes it: every matcher optional, all must
/// match; `starts_at` defaults to now.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSilence {
    #[serde(default)]
    pub matchers: BTreeMap<String, String>,
    pub starts_at: Option<String>,
    pub ends_at: String,
    #[serde(default)]
    pub comment: String,
    #[serde(default)]
    pub created_by: String,
}

/// A checked [`NewSilence`], ready for [`WriterHandle::create_silence`].
#[derive(Debug, Clone)]
pub struct SilenceSpec(Record);

impl NewSilence {
    /// Checks the silence at `now`, with `in_force` silences not yet ended; the error says
    /// what is wrong, for a 400.
    pub fn check(self, now: SystemTime, in_force: usize) -> Result<SilenceSpec, String> {
        let now = unix_ms(now);
        let time = |key: &str, value: &str| {
            humantime::parse_rfc3339_weak(value)
                .map(unix_ms)
                .map_err(|_| format!("{key} \"{value}\" is not an RFC 3339 time"))
        };
        let starts_ms = match &self.starts_at {
            Some(s) => time("starts_at", s)?,
            None => now,
        };
        let ends_ms = time("ends_at", &self.ends_at)?;
        if ends_ms <= now {
            return Err("ends_at is in the past".into());
        }
        if ends_ms <= starts_ms {
            return Err("ends_at must be after starts_at".into());
        }
        if self.comment.len() > TEXT_MAX || self.created_by.len() > TEXT_MAX {
            return Err(format!(
                "comment and created_by take at most {TEXT_MAX} bytes"
            ));
        }
        if self.matchers.len() > MATCHERS_MAX {
            return Err(format!("at most {MATCHERS_MAX} matchers"));
        }
        if in_force >= SILENCES_MAX {
            return Err(format!(
                "{SILENCES_MAX} silences are in force already; end one first"
            ));
        }
        compile(&self.matchers)?;
        Ok(SilenceSpec(Record {
            id: 0,
            matchers: self.matchers,
            starts_ms,
            ends_ms,
            comment: self.comment,
            created_by: self.created_by,
            created_ms: now,
        }))
    }
}

/// A silence's matchers compiled: the integration by id, the title and `data.<path>` fields by
/// regular expression (the same bounded regexes as rules).
#[derive(Debug)]
struct Compiled {
    id: u64,
    starts_ms: u64,
    ends_ms: u64,
    integration: Option<String>,
    title: Option<Regex>,
    data: Vec<(Vec<String>, Regex)>,
}

fn compile(matchers: &BTreeMap<String, String>) -> Result<Compiled, String> {
    let mut c = Compiled {
        id: 0,
        starts_ms: 0,
        ends_ms: 0,
        integration: None,
        title: None,
        data: Vec::new(),
    };
    for (key, value) in matchers {
        let regex =
            || crate::template::build_regex(value).map_err(|e| format!("matchers.{key}: {e}"));
        match key.as_str() {
            "integration" => c.integration = Some(value.clone()),
            "title" => c.title = Some(regex()?),
            path => match path.strip_prefix("data.") {
                Some(rest) if !rest.is_empty() && rest.split('.').all(|s| !s.is_empty()) => {
                    c.data
                        .push((rest.split('.').map(str::to_string).collect(), regex()?));
                }
                _ => {
                    return Err(format!(
                        "matchers.{key}: unknown matcher; use integration, title or data.<field>"
                    ));
                }
            },
        }
    }
    Ok(c)
}

impl Compiled {
    fn matches(&self, integration: &str, title: &str, data: &Value, now: u64) -> bool {
        (self.starts_ms..self.ends_ms).contains(&now)
            && self.integration.as_deref().is_none_or(|i| i == integration)
            && self.title.as_ref().is_none_or(|re| re.is_match(title))
            && self.data.iter().all(|(path, re)| {
                let value = path.iter().try_fold(data, |v, seg| v.as_object()?.get(seg));
                match value {
                    Some(Value::String(s)) => re.is_match(s),
                    Some(Value::Null) | None => false,
                    Some(v) => re.is_match(&v.to_string()),
                }
            })
    }
}

/// The silences not yet ended, compiled; shared by the writer's handles.
#[derive(Clone, Default)]
pub(crate) struct Silences(Arc<ArcSwap<Vec<Arc<Compiled>>>>);

impl Silences {
    pub fn load(tree: &sled::Tree) -> Result<Silences, Error> {
        let now = unix_ms(crate::clock::now());
        let mut list = Vec::new();
        for kv in tree.scan_prefix([SILENCE]) {
            let (k, v) = kv?;
            let r = decode(&k, &v)?;
            if r.ends_ms > now
                && let Ok(c) = compiled(&r)
            {
                list.push(Arc::new(c));
            }
        }
        Ok(Silences(Arc::new(ArcSwap::from_pointee(list))))
    }

    /// The stored silences `list` (those not ended), compiled: what a PostgreSQL node loads
    /// from the database, at start and every few seconds after (other nodes add and end them).
    pub fn set(&self, list: Vec<Record>) {
        let now = unix_ms(crate::clock::now());
        let compiled: Vec<Arc<Compiled>> = list
            .iter()
            .filter(|r| r.ends_ms > now)
            .filter_map(|r| compiled(r).ok().map(Arc::new))
            .collect();
        self.0.store(Arc::new(compiled));
    }

    /// The id of the first silence in force at `now` that matches the input.
    pub fn matching(&self, integration: &str, title: &str, data: &Value, now: u64) -> Option<u64> {
        let list = self.0.load();
        list.iter()
            .find(|c| c.matches(integration, title, data, now))
            .map(|c| c.id)
    }

    /// How many silences have not ended at `now`.
    pub fn in_force(&self, now: u64) -> usize {
        self.0.load().iter().filter(|c| c.ends_ms > now).count()
    }

    /// Puts the stored `r` in force (or ends it), dropping those that ended.
    fn update(&self, r: &Record) {
        let now = unix_ms(crate::clock::now());
        let Ok(new) = compiled(r).map(Arc::new) else {
            return;
        };
        self.0.rcu(|list| {
            let mut next: Vec<Arc<Compiled>> = list
                .iter()
                .filter(|c| c.id != r.id && c.ends_ms > now)
                .cloned()
                .collect();
            if new.ends_ms > now {
                next.push(new.clone());
            }
            next
        });
    }
}

fn compiled(r: &Record) -> Result<Compiled, String> {
    Ok(Compiled {
        id: r.id,
        starts_ms: r.starts_ms,
        ends_ms: r.ends_ms,
        ..compile(&r.matchers)?
    })
}

fn key(id: u64) -> [u8; 9] {
    let mut k = [0; 9];
    k[0] = SILENCE;
    k[1..].copy_from_slice(&id.to_be_bytes());
    k
}

fn decode(k: &[u8], v: &[u8]) -> Result<Record, Error> {
    serde_json::from_slice(v).map_err(|source| Error::Corrupt {
        key: format!("silence {}", u64_at(&k[1..])),
        source,
    })
}

fn encode(r: &Record) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(r).map_err(|source| Error::Corrupt {
        key: format!("silence {}", r.id),
        source,
    })
}

/// What a writer request does to the silences.
pub(super) enum SilenceOp {
    Create(Record),
    End { id: u64, now: SystemTime },
}

/// Applies a silence request in the group; answers the stored silence (`None`: no silence
/// `id` to end).
pub(super) fn apply<E: Engine>(e: &mut E, op: &SilenceOp) -> Result<Answer, Error> {
    let record = match op {
        SilenceOp::Create(r) => Record {
            id: e.generate_id()?,
            ..r.clone()
        },
        SilenceOp::End { id, now } => {
            let Some(mut r) = e.silence(*id)? else {
                return Ok(Answer::Silence(None));
            };
            r.ends_ms = r.ends_ms.min(unix_ms(*now));
            r.starts_ms = r.starts_ms.min(r.ends_ms);
            r
        }
    };
    e.put_silence(&record)?;
    Ok(Answer::Silence(Some(Box::new(record))))
}

/// A stored silence (sled).
pub(super) fn read(tree: &impl Read, id: u64) -> Result<Option<Record>, Error> {
    match tree.get(key(id))? {
        Some(v) => decode(&key(id), &v).map(Some),
        None => Ok(None),
    }
}

/// Stores a silence in a sled batch.
pub(super) fn write(writes: &mut Writes, r: &Record) -> Result<(), Error> {
    writes.insert(&key(r.id)[..], encode(r)?);
    Ok(())
}

impl WriterHandle {
    /// Stores a new silence durably and puts it in force; answers it with its id.
    pub async fn create_silence(&self, spec: SilenceSpec) -> Result<Silence, Error> {
        self.silence(SilenceOp::Create(spec.0))
            .await?
            .ok_or(Error::Stopped)
    }

    /// Ends silence `id` at `now` (one not started yet never starts); `None` when there is no
    /// such silence.
    pub async fn end_silence(&self, id: u64, now: SystemTime) -> Result<Option<Silence>, Error> {
        self.silence(SilenceOp::End { id, now }).await
    }

    /// How many silences have not ended yet.
    pub fn silences_in_force(&self) -> usize {
        self.folding.silences.in_force(unix_ms(crate::clock::now()))
    }

    /// Runs the request on a task of its own, so that the silences in force follow the store
    /// even when the caller stops waiting.
    async fn silence(&self, op: SilenceOp) -> Result<Option<Silence>, Error> {
        let handle = self.clone();
        tokio::spawn(async move {
            let stored = handle.silence_request(op).await?;
            if let Some(r) = &stored {
                handle.folding.silences.update(r);
            }
            let now = unix_ms(crate::clock::now());
            Ok(stored.map(|r| r.view(now)))
        })
        .await
        .map_err(|_| Error::Stopped)?
    }
}

impl SledStore {
    /// Silences, newest first, starting after `cursor`.
    pub fn silences(&self, limit: usize, cursor: Option<u64>) -> Result<Page<Silence>, Error> {
        let tree = self.tree()?;
        let now = unix_ms(crate::clock::now());
        let end = match cursor {
            Some(c) => key(c).to_vec(),
            None => vec![SILENCE + 1],
        };
        let mut items = Vec::new();
        for kv in tree.range(vec![SILENCE]..end).rev() {
            let (k, v) = kv?;
            if items.len() == limit {
                let next = items.last().map(|s: &Silence| s.id.clone());
                return Ok(Page { items, next });
            }
            items.push(decode(&k, &v)?.view(now));
        }
        Ok(Page { items, next: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn spec(matchers: Value, ends_in: u64) -> Result<SilenceSpec, String> {
        let now = crate::clock::now();
        let ends = super::super::rfc3339(now + Duration::from_secs(ends_in));
        let new: NewSilence = serde_json::from_value(json!({
            "matchers": matchers, "ends_at": ends, "comment": "maintenance"
        }))
        .unwrap();
        new.check(now, 0)
    }

    #[test]
    fn matchers_by_table() {
        let data = json!({"host": "db01", "labels": {"severity": "critical"}, "load": 7.5});
        #[rustfmt::skip]
        let cases: &[(Value, bool)] = &[
            (json!({}), true),
            (json!({"integration": "ops"}), true),
            (json!({"integration": "op"}), false),
            (json!({"title": "^Disk .* db01$"}), true),
            (json!({"title": "db02"}), false),
            (json!({"data.host": "^db0[12]$"}), true),
            (json!({"data.labels.severity": "critical"}), true),
            (json!({"data.load": "^7\\.5$"}), true),
            (json!({"data.missing": ".*"}), false),
            (json!({"integration": "ops", "data.host": "db01", "title": "nope"}), false),
        ];
        for (matchers, want) in cases {
            let SilenceSpec(r) = spec(matchers.clone(), 3600).unwrap();
            let c = compiled(&r).unwrap();
            let now = r.starts_ms + 1;
            assert_eq!(
                c.matches("ops", "Disk 91% full on db01", &data, now),
                *want,
                "{matchers}"
            );
            assert!(!c.matches("ops", "Disk 91% full on db01", &data, r.starts_ms - 1));
            // Not before it starts, not after it ends.
            assert!(!c.matches("ops", "Disk 91% full on db01", &data, r.ends_ms));
        }
    }

    #[test]
    fn bad_silences_say_why() {
        let err = |m: Value, ends_in: u64| spec(m, ends_in).unwrap_err();
        assert_eq!(
            err(json!({"host": "x"}), 60),
            "matchers.host: unknown matcher; use integration, title or data.<field>"
        );
        assert!(err(json!({"title": "("}), 60).starts_with("matchers.title: "));
        assert_eq!(err(json!({}), 0), "ends_at is in the past");
        let new: NewSilence = serde_json::from_value(json!({"ends_at": "tomorrow"})).unwrap();
        assert_eq!(
            new.check(crate::clock::now(), 0).unwrap_err(),
            "ends_at \"tomorrow\" is not an RFC 3339 time"
        );
        let new: NewSilence =
            serde_json::from_value(json!({"ends_at": "2999-01-01T00:00:00Z"})).unwrap();
        assert!(
            new.check(crate::clock::now(), SILENCES_MAX)
                .unwrap_err()
                .contains("in force")
        );
    }
}
