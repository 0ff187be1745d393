//! The `email` integration type: every message is a `create`. Its third-party id is the
//! Message-ID, except that a reply takes the id of its thread's first message (References,
//! then In-Reply-To), so a thread aggregates into the alert of the original message.

use super::{Event, random_id};
use crate::email::EmailData;
use crate::store::Action;

pub fn adapt(data: &EmailData) -> Event {
    let thirdparty_id = data
        .references
        .first()
        .or(data.in_reply_to.as_ref())
        .or(data.message_id.as_ref())
        .filter(|id| !id.trim().is_empty())
        .cloned()
        .unwrap_or_else(random_id);
    Event {
        action: Action::Create,
        thirdparty_id,
        data: serde_json::to_value(data).unwrap_or_default(),
        urgency: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::email::{Envelope, parse};

    fn data(headers: &str) -> EmailData {
        let raw = format!("From: a@b\r\nTo: ops@x\r\nSubject: s\r\n{headers}\r\nbody\r\n");
        parse(raw.as_bytes(), Envelope::default())
    }

    #[test]
    fn thirdparty_id_by_table() {
        let cases = [
            ("Message-ID: <m1@x>\r\n", Some("m1@x")),
            (
                "Message-ID: <m2@x>\r\nIn-Reply-To: <m1@x>\r\n",
                Some("m1@x"),
            ),
            (
                "Message-ID: <m3@x>\r\nIn-Reply-To: <m2@x>\r\nReferences: <m1@x> <m2@x>\r\n",
                Some("m1@x"),
            ),
            ("", None),
        ];
        for (headers, want) in cases {
            let e = adapt(&data(headers));
            assert_eq!(e.action, Action::Create);
            match want {
                Some(id) => assert_eq!(e.thirdparty_id, id, "{headers}"),
                None => assert_eq!(
                    e.thirdparty_id.len(),
                    36,
                    "a random id when there is no Message-ID"
                ),
            }
        }
        assert_ne!(
            adapt(&data("")).thirdparty_id,
            adapt(&data("")).thirdparty_id
        );
    }
}
