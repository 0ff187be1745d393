//! The envelope: MAIL and RCPT over the session's [`Transaction`] (Stalwart's `mail.rs` and
//! `rcpt.rs`), and the check at DATA that the messages in flight leave room for one more.
//! Siren decides each before mailin sees it, so mailin's state only ever holds what Siren took.

use std::sync::Arc;

use super::params;
use super::reply;
use super::session::{Answer, Driver, mailin_error};
use crate::config::Config;
use crate::metrics::SmtpRejection;
use crate::route::Route;

/// The mail transaction: from an accepted MAIL to the reply to the final dot.
pub(super) struct Transaction {
    pub mail_from: String,
    /// What MAIL declared with `SIZE=`.
    pub size: Option<u64>,
    pub rcpt_to: Vec<String>,
    /// Each integration the message goes to, once, with the recipients that route there.
    pub routes: Vec<(Route, Vec<String>)>,
    /// The configuration this transaction routes and ingests with, taken at MAIL: a reload
    /// in the middle never mixes two configurations in one message.
    pub config: Arc<Config>,
}

impl Transaction {
    fn add(&mut self, to: String, route: Route) {
        match self
            .routes
            .iter_mut()
            .find(|(r, _)| r.integration == route.integration)
        {
            Some((_, rcpts)) => rcpts.push(to.clone()),
            None => self.routes.push((route, vec![to.clone()])),
        }
        self.rcpt_to.push(to);
    }
}

impl Driver {
    /// DATA, unless the messages in flight leave no room (for what SIZE= declared, if it did).
    pub(super) fn data_command(&mut self, line: &[u8]) -> Answer {
        if let Some(tx) = &self.tx
            && !tx.rcpt_to.is_empty()
            && !self.ctx.inflight.has_room(tx.size.unwrap_or(1))
        {
            tracing::info!(peer = %self.peer, "no room for another message in flight; answered 452");
            return Answer::refuse_uncharged(SmtpRejection::Inflight, reply::NO_ROOM);
        }
        self.via_mailin(line, b"DATA")
    }

    pub(super) fn mail(&mut self, line: &[u8]) -> Answer {
        // Before HELO/EHLO, mailin's 503 says what is missing first.
        if self.needs_auth() {
            return Answer::refuse(SmtpRejection::AuthRequired, reply::AUTH_REQUIRED);
        }
        let mail = match params::mail(line, self.ctx.config.smtp.max_message_size) {
            Ok(mail) => mail,
            Err(e) => return refused(e, false),
        };
        let res = self.mailin.process(&mail.line);
        if res.code != 250 {
            return mailin_error(&res);
        }
        self.tx = Some(Transaction {
            mail_from: mail.from,
            size: mail.size,
            rcpt_to: Vec::new(),
            routes: Vec::new(),
            config: self.ctx.live.get(),
        });
        Answer::ok(reply::MAIL_OK)
    }

    /// Checks the recipient's limit and route first and hands mailin only a recipient Siren
    /// takes, so mailin's "no valid recipient yet" (503 to DATA) stays right.
    pub(super) fn rcpt(&mut self, line: &[u8]) -> Answer {
        let rcpt = match params::rcpt(line) {
            Ok(rcpt) => rcpt,
            Err(e) => return refused(e, true),
        };
        let Some(tx) = &self.tx else {
            // No transaction: mailin answers with its 503.
            return self.via_mailin(&rcpt.line, b"RCPT");
        };
        if tx.rcpt_to.iter().any(|r| r.eq_ignore_ascii_case(&rcpt.to)) {
            // Named twice: accepted again, kept once (one copy, one place of max_recipients).
            return Answer::ok(reply::RCPT_OK);
        }
        if tx.rcpt_to.len() >= self.ctx.config.smtp.max_recipients {
            return Answer::refuse(SmtpRejection::Recipients, reply::TOO_MANY_RECIPIENTS);
        }
        let Some(route) = tx.config.router.route(&rcpt.to) else {
            return Answer::refuse(
                SmtpRejection::UnknownRecipient,
                reply::no_integration(&rcpt.to),
            );
        };
        let res = self.mailin.process(&rcpt.line);
        if res.code != 250 {
            return mailin_error(&res);
        }
        if let Some(tx) = &mut self.tx {
            tx.add(rcpt.to, route);
        }
        Answer::ok(reply::RCPT_OK)
    }
}

/// The reply to a MAIL (`recipient` false) or RCPT line that did not parse.
fn refused(e: params::Error, recipient: bool) -> Answer {
    let protocol = |text| Answer::refuse(SmtpRejection::Protocol, text);
    match e {
        params::Error::Control => protocol(reply::address_control(recipient)),
        params::Error::PathTooLong => protocol(reply::path_too_long(recipient)),
        params::Error::LocalPartTooLong => protocol(reply::local_part_too_long(recipient)),
        params::Error::NotRecognized => {
            Answer::refuse(SmtpRejection::Protocol, reply::NOT_RECOGNIZED)
        }
        params::Error::Syntax => Answer::refuse(SmtpRejection::Protocol, reply::BAD_ADDRESS_SYNTAX),
        params::Error::Unsupported => {
            Answer::refuse(SmtpRejection::Protocol, reply::UNSUPPORTED_PARAMETER)
        }
        params::Error::TooBig => Answer::refuse(SmtpRejection::Size, reply::MESSAGE_TOO_BIG),
    }
}
