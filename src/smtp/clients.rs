//! What SMTP clients share, counted per client address as Postfix's anvil does: concurrent
//! sessions, new connections per minute, and failed AUTH attempts across sessions (a leaky
//! bucket that drains over time); and the memory all messages in flight may hold. Only
//! counts: the accept loop and the session choose the replies.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::SmtpLimits;
use crate::metrics::Metrics;

/// The window of `max_connection_rate_per_client`.
const MINUTE: Duration = Duration::from_secs(60);

/// One failed AUTH attempt in the bucket's units: a bucket that drains `rate` per minute
/// drains `rate` units per millisecond, so integer arithmetic stays exact.
const FAILURE: u64 = 60_000;

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Over `smtp.max_sessions_per_client`.
    Sessions,
    /// Over `smtp.max_connection_rate_per_client`.
    Rate,
}

/// Every client address Siren is counting.
pub struct Clients {
    max_sessions: usize,
    max_rate: usize,
    auth_rate: u64,
    trusted: Vec<ipnet::IpNet>,
    table: Mutex<Table>,
}

struct Table {
    map: HashMap<IpAddr, Client>,
    /// The size at which entries with nothing left to count are dropped (amortized O(1)).
    prune_at: usize,
}

#[derive(Default)]
struct Client {
    sessions: usize,
    /// The current minute of connections: when it began, and how many came in it.
    window: Option<Instant>,
    connections: usize,
    /// Failed AUTH attempts not yet drained (in [`FAILURE`] units), as of `drained_at`.
    auth: u64,
    drained_at: Option<Instant>,
    /// Refused since its last admitted connection (so that a flood is logged once).
    refusing: bool,
}

/// An admitted connection's place in its client's session count, given back on drop.
pub struct Admitted {
    clients: Arc<Clients>,
    /// `None` for a trusted client, which is not counted.
    ip: Option<IpAddr>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Some(ip) = self.ip {
            let mut table = self.clients.table.lock().expect("clients lock");
            if let Some(c) = table.map.get_mut(&ip) {
                c.sessions = c.sessions.saturating_sub(1);
            }
        }
    }
}

/// A refused connection; `first` when the client was admitted before this one (log it once).
pub struct Refused {
    pub why: Refusal,
    pub first: bool,
}

impl Clients {
    pub fn new(limits: &SmtpLimits) -> Self {
        Self {
            max_sessions: limits.max_sessions_per_client,
            max_rate: limits.max_connection_rate_per_client,
            auth_rate: limits.max_auth_error_rate_per_client as u64,
            trusted: limits.trusted_clients.clone(),
            table: Mutex::new(Table {
                map: HashMap::new(),
                prune_at: 1024,
            }),
        }
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|n| n.contains(&ip))
    }

    /// A new connection from `ip`: counted against its rate (refused ones too, so a client
    /// that hammers stays refused until it slows down) and, if admitted, its sessions.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, Refused> {
        let ip = ip.to_canonical();
        if self.trusted(ip) {
            return Ok(Admitted {
                clients: self.clone(),
                ip: None,
            });
        }
        let now = Instant::now();
        let mut table = self.table.lock().expect("clients lock");
        let c = table.map.entry(ip).or_default();
        if c.window.is_none_or(|start| now - start >= MINUTE) {
            c.window = Some(now);
            c.connections = 0;
        }
        c.connections += 1;
        let why = if self.max_rate > 0 && c.connections > self.max_rate {
            Some(Refusal::Rate)
        } else if c.sessions >= self.max_sessions {
            Some(Refusal::Sessions)
        } else {
            None
        };
        if let Some(why) = why {
            let first = !std::mem::replace(&mut c.refusing, true);
            return Err(Refused { why, first });
        }
        c.sessions += 1;
        c.refusing = false;
        table.prune(now, self.auth_rate);
        Ok(Admitted {
            clients: self.clone(),
            ip: Some(ip),
        })
    }

    /// Before checking credentials from `ip`: takes one failure in advance (so that parallel
    /// sessions cannot all pass a full bucket), or false when the bucket is full.
    pub fn auth_attempt(&self, ip: IpAddr) -> bool {
        if self.auth_rate == 0 {
            return true;
        }
        let now = Instant::now();
        let mut table = self.table.lock().expect("clients lock");
        let c = table.map.entry(ip.to_canonical()).or_default();
        c.drain(now, self.auth_rate);
        if c.auth + FAILURE > self.auth_rate * FAILURE {
            return false;
        }
        c.auth += FAILURE;
        true
    }

    /// The credentials were right: gives back what [`Clients::auth_attempt`] took.
    pub fn auth_succeeded(&self, ip: IpAddr) {
        let mut table = self.table.lock().expect("clients lock");
        if let Some(c) = table.map.get_mut(&ip.to_canonical()) {
            c.auth = c.auth.saturating_sub(FAILURE);
        }
    }
}

impl Client {
    fn drain(&mut self, now: Instant, rate: u64) {
        if let Some(at) = self.drained_at {
            let ms = (now - at).as_millis().min(u128::from(u64::MAX)) as u64;
            self.auth = self.auth.saturating_sub(ms.saturating_mul(rate));
        }
        self.drained_at = Some(now);
    }

    /// Nothing left to count: no session, no connection in the current minute, an empty bucket.
    fn idle(&mut self, now: Instant, rate: u64) -> bool {
        self.drain(now, rate);
        self.sessions == 0 && self.window.is_none_or(|s| now - s >= MINUTE) && self.auth == 0
    }
}

impl Table {
    fn prune(&mut self, now: Instant, rate: u64) {
        if self.map.len() < self.prune_at {
            return;
        }
        self.map.retain(|_, c| !c.idle(now, rate));
        self.prune_at = (2 * self.map.len()).max(1024);
    }
}

/// The bytes of message data all sessions hold, within `smtp.max_inflight_bytes`.
pub struct Inflight {
    used: AtomicUsize,
    max: usize,
    metrics: Arc<Metrics>,
}

impl Inflight {
    pub fn new(max: usize, metrics: Arc<Metrics>) -> Self {
        Self {
            used: AtomicUsize::new(0),
            max,
            metrics,
        }
    }

    fn give_back(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
        self.metrics.smtp_inflight(-(n as i64));
    }

    /// Whether `more` bytes would still fit now.
    pub fn has_room(&self, more: u64) -> bool {
        (self.used.load(Ordering::Relaxed) as u64).saturating_add(more) <= self.max as u64
    }

    /// An empty share of the budget, which grows as a message arrives.
    pub fn hold(self: &Arc<Self>) -> Held {
        Held {
            budget: self.clone(),
            bytes: 0,
        }
    }
}

/// One message's share of the in-flight budget, given back on drop.
pub struct Held {
    budget: Arc<Inflight>,
    bytes: usize,
}

impl Held {
    /// Takes `n` more bytes, or false (and nothing) when the budget has no room.
    pub fn grow(&mut self, n: usize) -> bool {
        let max = self.budget.max;
        let taken = self
            .budget
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&u| u <= max)
            });
        if taken.is_ok() {
            self.bytes += n;
            self.budget.metrics.smtp_inflight(n as i64);
        }
        taken.is_ok()
    }
}

impl Held {
    /// Gives back everything held (the message was dropped before its end).
    pub fn clear(&mut self) {
        self.budget.give_back(std::mem::take(&mut self.bytes));
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.budget.give_back(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clients(extra: &str) -> Arc<Clients> {
        let text = format!("[smtp]\n{extra}\n");
        let config = crate::Config::parse(&text, std::path::Path::new("t.toml")).unwrap();
        Arc::new(Clients::new(&config.smtp.limits))
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[tokio::test(start_paused = true)]
    async fn sessions_per_client_and_trusted_networks() {
        let c = clients("max_sessions_per_client = 2\ntrusted_clients = [\"192.0.2.2/32\"]");
        let a1 = c.admit(A).ok().unwrap();
        let _a2 = c.admit(A).ok().unwrap();
        let refused = c.admit(A).err().unwrap();
        assert_eq!((refused.why, refused.first), (Refusal::Sessions, true));
        assert!(!c.admit(A).err().unwrap().first, "a flood is logged once");
        drop(a1);
        let _a3 = c.admit(A).ok().unwrap();
        let trusted: Vec<_> = (0..10).map(|_| c.admit(B).ok().unwrap()).collect();
        assert_eq!(trusted.len(), 10);
        // An IPv4-mapped IPv6 address is the same client.
        let mapped = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(c.admit(mapped).err().unwrap().why, Refusal::Sessions);
    }

    #[tokio::test(start_paused = true)]
    async fn connection_rate_counts_refused_connections_and_resets_each_minute() {
        let c = clients("max_connection_rate_per_client = 3");
        for _ in 0..3 {
            drop(c.admit(A).ok().unwrap());
        }
        assert_eq!(c.admit(A).err().unwrap().why, Refusal::Rate);
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(c.admit(A).err().unwrap().why, Refusal::Rate);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(c.admit(A).is_ok());
        assert!(c.admit(B).is_ok(), "another address has its own count");
    }

    #[tokio::test(start_paused = true)]
    async fn auth_failures_drain_at_the_configured_rate() {
        let c = clients("max_auth_error_rate_per_client = 10");
        for _ in 0..10 {
            assert!(c.auth_attempt(A));
        }
        assert!(!c.auth_attempt(A), "a burst of 10, then the bucket is full");
        assert!(c.auth_attempt(B));
        // 10 a minute: one more every 6 s.
        tokio::time::advance(Duration::from_millis(5999)).await;
        assert!(!c.auth_attempt(A));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(c.auth_attempt(A));
        assert!(!c.auth_attempt(A));
        // A success gives its attempt back.
        c.auth_succeeded(A);
        assert!(c.auth_attempt(A));
        let off = clients("max_auth_error_rate_per_client = 0");
        assert!((0..1000).all(|_| off.auth_attempt(A)));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_clients_are_pruned() {
        let c = clients("");
        for i in 0..3000u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            drop(c.admit(ip).ok().unwrap());
        }
        tokio::time::advance(MINUTE).await;
        let _keep = c.admit(A).ok().unwrap();
        for i in 0..1100u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0b00_0000 + i));
            drop(c.admit(ip).ok().unwrap());
        }
        let len = c.table.lock().unwrap().map.len();
        assert!(len < 2200, "{len} entries kept");
    }

    #[test]
    fn the_inflight_budget_is_given_back() {
        let metrics = Arc::new(Metrics::new());
        let budget = Arc::new(Inflight::new(100, metrics.clone()));
        let mut a = budget.hold();
        assert!(a.grow(60));
        let mut b = budget.hold();
        assert!(!b.grow(41));
        assert!(b.grow(40));
        assert!(!budget.has_room(1));
        assert!(metrics.encode().contains("siren_smtp_inflight_bytes 100\n"));
        drop(a);
        assert!(budget.has_room(60) && !budget.has_room(61));
        assert!(metrics.encode().contains("siren_smtp_inflight_bytes 40\n"));
        b.clear();
        assert!(budget.has_room(100));
        drop(b);
        assert!(budget.has_room(100));
        assert!(metrics.encode().contains("siren_smtp_inflight_bytes 0\n"));
    }
}
