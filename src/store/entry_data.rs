//! An integration log entry's data as stored, before packing (`packed.rs` compresses it):
//! the JSON of the data, or for e-mail what rebuilds it from the raw message, which is stored
//! anyway. Bytes in, bytes out; no sled.

use serde::{Deserialize, Serialize};

use super::Error;
use super::logs::NewLog;

/// What an e-mail log entry's `data` is rebuilt from when it is read, instead of being stored:
/// the raw message (stored anyway), parsed again with the envelope it arrived with, then the
/// routing's part. Parsing is a pure function of these, so the rebuilt data is what the
/// pipeline saw; storing the message once instead of three times (raw, `message`, `text`)
/// halves what each e-mail writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmailSource {
    /// The envelope as the message was parsed with (every recipient).
    pub envelope: crate::email::Envelope,
    /// The recipients routed to this entry's integration.
    pub rcpt_to: Vec<String>,
    pub tag: Option<String>,
    /// The index of the e-mail rule that matched.
    pub rule: Option<usize>,
}

impl EmailSource {
    /// The e-mail data of the entry whose raw message is `raw`.
    pub fn rebuild(&self, raw: &[u8]) -> serde_json::Value {
        let mut data = crate::email::parse(raw, self.envelope.clone());
        data.tag = self.tag.clone();
        data.envelope.rcpt_to = self.rcpt_to.clone();
        data.rule = self.rule;
        serde_json::to_value(&data).unwrap_or_default()
    }
}

/// An entry's data as stored (packed) under `L` or `V`.
#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum StoredData {
    Data(serde_json::Value),
    Email(EmailSource),
}

/// [`StoredData`] as written, borrowing what it holds.
#[derive(Serialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum StoredDataRef<'a> {
    Data(&'a serde_json::Value),
}

/// The first byte of an e-mail entry's data when it is a [`PackedEmail`]; data in JSON (any
/// other input's, and e-mail entries written before) starts with `{`.
const PACKED_EMAIL: u8 = 0;

/// [`EmailSource`] as an entry's data holds it: postcard, so no field names; the client
/// address only when it is not the entry's `remote_addr`, the routed recipients only when they
/// are not all of the envelope's. For an `smtp-source` message to one recipient: 48 bytes
/// before compression instead of 183 of JSON, and 31 after instead of 120 (the addresses are
/// in the raw message, which is the dictionary).
#[derive(Serialize, Deserialize)]
struct PackedEmail {
    mail_from: String,
    rcpt_to: Vec<String>,
    helo: String,
    client_addr: Option<String>,
    routed: Option<Vec<String>>,
    tag: Option<String>,
    rule: Option<u64>,
}

/// What an entry's data is before packing: the JSON of the data, or for e-mail what rebuilds
/// it from the raw input ([`PackedEmail`]).
pub(super) fn data_bytes(log: &NewLog) -> Result<Vec<u8>, Error> {
    let Some(email) = &log.email else {
        return serde_json::to_vec(&StoredDataRef::Data(&log.data)).map_err(|source| {
            Error::Corrupt {
                key: "log data".into(),
                source,
            }
        });
    };
    let envelope = &email.envelope;
    let packed = PackedEmail {
        mail_from: envelope.mail_from.clone(),
        rcpt_to: envelope.rcpt_to.clone(),
        helo: envelope.helo.clone(),
        client_addr: (envelope.client_addr != log.remote_addr)
            .then(|| envelope.client_addr.clone()),
        routed: (email.rcpt_to != envelope.rcpt_to).then(|| email.rcpt_to.clone()),
        tag: email.tag.clone(),
        rule: email.rule.map(|r| r as u64),
    };
    // Strings and integers into a vector: serializing cannot fail.
    Ok(postcard::to_extend(&packed, vec![PACKED_EMAIL]).unwrap_or_default())
}

/// An entry's data as [`data_bytes`] made it (or as JSON, before [`PackedEmail`]);
/// `remote_addr` is the entry's.
pub(super) fn stored_data(bytes: &[u8], remote_addr: &str, id: u64) -> Result<StoredData, Error> {
    let Some((&PACKED_EMAIL, rest)) = bytes.split_first() else {
        return serde_json::from_slice(bytes).map_err(super::logs::corrupt("log data", id));
    };
    let p: PackedEmail = postcard::from_bytes(rest)
        .map_err(|e| super::packed::invalid(&format!("log data {id}"), e))?;
    let envelope = crate::email::Envelope {
        mail_from: p.mail_from,
        client_addr: p.client_addr.unwrap_or_else(|| remote_addr.to_string()),
        helo: p.helo,
        rcpt_to: p.rcpt_to,
    };
    Ok(StoredData::Email(EmailSource {
        rcpt_to: p.routed.unwrap_or_else(|| envelope.rcpt_to.clone()),
        envelope,
        tag: p.tag,
        rule: p.rule.map(|r| r as usize),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Source;
    use serde_json::json;
    use std::sync::Arc;
    use std::time::SystemTime;

    /// An e-mail entry's data packs without field names, leaves out what the entry already
    /// says, and comes back whole; e-mail data stored as JSON before still reads.
    #[test]
    fn e_mail_data_packs_small_and_comes_back() {
        let envelope = crate::email::Envelope {
            mail_from: "nagios@example.com".into(),
            rcpt_to: vec!["ops@alerts.localhost".into(), "db@alerts.localhost".into()],
            client_addr: "127.0.0.1:4000".into(),
            helo: "mon.example.com".into(),
        };
        let log = |email: EmailSource, remote_addr: &str| NewLog {
            integration: "ops".into(),
            received_at: SystemTime::UNIX_EPOCH,
            source: Source::Smtp,
            remote_addr: remote_addr.into(),
            data: serde_json::Value::Null,
            alert: None,
            outcome: None,
            error: None,
            raw: Arc::from(&b""[..]),
            email: Some(email),
        };
        let every = EmailSource {
            envelope: envelope.clone(),
            rcpt_to: envelope.rcpt_to.clone(),
            tag: None,
            rule: None,
        };
        let some = EmailSource {
            rcpt_to: vec!["db@alerts.localhost".into()],
            tag: Some("db".into()),
            rule: Some(2),
            ..every.clone()
        };
        for (email, remote_addr) in [
            (&every, "127.0.0.1:4000"),
            (&some, "127.0.0.1:4000"),
            (&some, "127.0.0.2:25"),
        ] {
            let bytes = data_bytes(&log(email.clone(), remote_addr)).unwrap();
            assert_eq!(bytes[0], PACKED_EMAIL);
            let json = serde_json::to_vec(&json!({ "email": email })).unwrap();
            assert!(bytes.len() * 3 < json.len() * 2, "{} bytes", bytes.len());
            let StoredData::Email(back) = stored_data(&bytes, remote_addr, 1).unwrap() else {
                panic!("not e-mail data");
            };
            assert_eq!(&back, email);
            let StoredData::Email(old) = stored_data(&json, remote_addr, 1).unwrap() else {
                panic!("not e-mail data");
            };
            assert_eq!(&old, email);
        }
    }
}
