//! DATA: collecting the message after `354` (dot-unstuffing, the bare-LF check, the size cap),
//! then the commit and the reply to the final dot, `250` only once the commit is durable.
//! Message lines never go through mailin: it is handed only the final dot.

use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use tokio_util::sync::CancellationToken;

use super::clients::Held;
use super::envelope::Transaction;
use super::reply;
use super::session::{Answer, Driver, Next};
use crate::clock;
use crate::email::Envelope;
use crate::ingest;
use crate::metrics::SmtpRejection;

/// What the lines up to the final dot made.
enum Body {
    Complete(Vec<u8>),
    /// Over `smtp.max_message_size`: read to the dot and dropped.
    TooBig,
    /// Over what `smtp.max_inflight_bytes` left: read to the dot and dropped.
    NoRoom,
    /// The session ends without a final dot; its closing reply (if any) is queued.
    Cut,
}

impl Driver {
    /// Collects the message of `tx`, then commits it and queues the reply.
    pub(super) async fn data<R, W>(
        &mut self,
        tx: Transaction,
        rd: &mut BufReader<R>,
        wr: &mut W,
        line: &mut Vec<u8>,
        abort: &CancellationToken,
    ) -> std::io::Result<Next>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        // The message's share of smtp.max_inflight_bytes, given back once it is committed.
        let mut held = self.ctx.inflight.hold();
        let body = self.collect(rd, wr, line, abort, &mut held).await?;
        let dot = std::time::Instant::now();
        if let Body::Cut = body {
            return Ok(Next::Close);
        }
        // mailin only needs to see the dot to return to its ready state; the reply is ours.
        self.mailin_dot();
        let body = match body {
            Body::Complete(body) => body,
            Body::TooBig | Body::Cut => {
                let max = self.ctx.config.smtp.max_message_size;
                tracing::info!(peer = %self.peer, max, "message too big; rejected");
                let answer = Answer::refuse_uncharged(SmtpRejection::Size, reply::MESSAGE_TOO_BIG);
                return Ok(self.answer(answer));
            }
            Body::NoRoom => {
                tracing::info!(peer = %self.peer, "no room for the message in flight; answered 452");
                let answer = Answer::refuse_uncharged(SmtpRejection::Inflight, reply::NO_ROOM);
                return Ok(self.answer(answer));
            }
        };
        let helo = self.helo.as_deref().unwrap_or_default();
        let envelope = Envelope::new(&tx.mail_from, tx.rcpt_to, self.peer, helo);
        let received = ingest::email(
            &tx.config,
            &self.ctx.writer,
            envelope,
            body,
            &tx.routes,
            clock::now(),
        )
        .await;
        match received {
            Ok(receipts) => {
                let first = receipts.first().map(|r| r.log_id).unwrap_or_default();
                self.out.push_accepted(reply::queued(first).as_bytes(), dot);
                self.spent.junk = 0;
                Ok(Next::Continue)
            }
            Err(e) => {
                tracing::error!(peer = %self.peer, error = %e, "message not stored; answered 451");
                let answer =
                    Answer::refuse_uncharged(SmtpRejection::StoreFailure, reply::STORE_FAILED);
                Ok(self.answer(answer))
            }
        }
    }

    /// Reads message lines up to the final dot, un-stuffing them into one buffer.
    async fn collect<R, W>(
        &mut self,
        rd: &mut BufReader<R>,
        wr: &mut W,
        line: &mut Vec<u8>,
        abort: &CancellationToken,
        held: &mut Held,
    ) -> std::io::Result<Body>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let max = self.ctx.config.smtp.max_message_size;
        let mut body = Vec::new();
        let (mut oversize, mut no_room) = (false, false);
        loop {
            if !self.next_line(rd, wr, line, abort, None).await? {
                tracing::info!(peer = %self.peer, "message not received completely; nothing stored");
                return Ok(Body::Cut);
            }
            if !line.ends_with(b"\r\n") {
                tracing::info!(peer = %self.peer, "bare LF in message data; rejected");
                let answer = Answer::refuse_uncharged(SmtpRejection::BareLf, reply::BARE_LF);
                self.answer(answer.then(Next::Close));
                return Ok(Body::Cut);
            }
            if line.as_slice() == b".\r\n" {
                break;
            }
            let content = line.strip_prefix(b".").unwrap_or(line);
            if oversize || body.len() + content.len() > max {
                oversize = true;
                body = Vec::new();
                held.clear();
            } else if no_room || !held.grow(content.len()) {
                no_room = true;
                body = Vec::new();
                held.clear();
            } else {
                body.extend_from_slice(content);
            }
        }
        Ok(match (oversize, no_room) {
            (true, _) => Body::TooBig,
            (false, true) => Body::NoRoom,
            (false, false) => Body::Complete(body),
        })
    }
}
