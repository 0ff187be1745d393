//! A session's byte-level I/O: bounded line reads, the queue of replies not yet written, and
//! the lingering close. Knows nothing of SMTP commands.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, timeout_at};

use crate::metrics::Metrics;

/// Why a line could not be read.
pub enum ReadError {
    TooLong,
    Closed,
    Io(std::io::Error),
}

/// Reads one line ending in `\n` into `buf` (cleared first), never holding more than `max` bytes.
pub async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> Result<(), ReadError> {
    buf.clear();
    loop {
        let avail = r.fill_buf().await.map_err(ReadError::Io)?;
        if avail.is_empty() {
            return Err(ReadError::Closed);
        }
        let (take, done) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (avail.len(), false),
        };
        if buf.len() + take > max {
            return Err(ReadError::TooLong);
        }
        buf.extend_from_slice(&avail[..take]);
        r.consume(take);
        if done {
            return Ok(());
        }
    }
}

/// Replies queued but not yet written: pipelining lets several queue up, and they are written
/// together when the client has sent all it had.
pub struct Output {
    buf: Vec<u8>,
    /// When each final dot whose 250 is queued but not yet written was read (real time, for
    /// the latency histogram; paused test clocks do not apply).
    unwritten_250s: Vec<std::time::Instant>,
    metrics: Arc<Metrics>,
}

impl Output {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            buf: Vec::with_capacity(512),
            unwritten_250s: Vec::new(),
            metrics,
        }
    }

    pub fn push(&mut self, text: &[u8]) {
        self.buf.extend_from_slice(text);
    }

    /// Queues the 250 for a message whose final dot was read at `dot`; it is counted as
    /// accepted once written.
    pub fn push_accepted(&mut self, text: &[u8], dot: std::time::Instant) {
        self.buf.extend_from_slice(text);
        self.unwritten_250s.push(dot);
    }

    /// Writes everything queued, or fails when the client does not read it by `deadline`.
    pub async fn flush<W: AsyncWrite + Unpin>(
        &mut self,
        wr: &mut W,
        deadline: Instant,
    ) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let write = async {
            wr.write_all(&self.buf).await?;
            wr.flush().await
        };
        match timeout_at(deadline, write).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "client does not read replies",
                ));
            }
        }
        self.buf.clear();
        for dot in self.unwritten_250s.drain(..) {
            self.metrics.smtp_accepted(dot.elapsed());
        }
        Ok(())
    }
}

/// Ends a connection after the last reply: our FIN, then a lingering close.
pub async fn finish<R, W>(mut rd: R, mut wr: W)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let _ = wr.shutdown().await;
    linger(&mut rd).await;
}

/// Lingering close: after our last reply and FIN, read and discard what the client still
/// sends, for a short while, before closing. Closing a socket with unread input makes the
/// kernel send a reset, which can destroy the reply (a 500 or 521) before the client reads it.
async fn linger<R: AsyncRead + Unpin>(rd: &mut R) {
    const MAX_TIME: Duration = Duration::from_secs(2);
    const MAX_BYTES: usize = 1 << 20;
    let mut sink = [0u8; 8192];
    let mut drained = 0;
    let drain = async {
        while drained < MAX_BYTES {
            match tokio::io::AsyncReadExt::read(rd, &mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(n) => drained += n,
            }
        }
    };
    let _ = tokio::time::timeout(MAX_TIME, drain).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::BufReader;

    /// Lines split across reads, a line at the limit and one past it, and EOF.
    #[tokio::test]
    async fn read_line_is_bounded() {
        let input: &[u8] = b"HELO a\r\n12345678\r\n123456789\r\n";
        // A tiny buffer, so lines arrive in several pieces.
        let mut r = BufReader::with_capacity(3, input);
        let mut buf = Vec::new();
        assert!(read_line(&mut r, &mut buf, 10).await.is_ok());
        assert_eq!(buf, b"HELO a\r\n");
        assert!(read_line(&mut r, &mut buf, 10).await.is_ok());
        assert_eq!(buf, b"12345678\r\n");
        assert!(matches!(
            read_line(&mut r, &mut buf, 10).await,
            Err(ReadError::TooLong)
        ));
        let mut r = BufReader::new(&b"no newline"[..]);
        assert!(matches!(
            read_line(&mut r, &mut buf, 100).await,
            Err(ReadError::Closed)
        ));
    }
}
