//! systemd's notification protocol (sd_notify(3)) for `Type=notify`: `READY=1` once the
//! listeners are bound and the store is open, `STOPPING=1` when the drain begins, and
//! `WATCHDOG=1` every half `WATCHDOG_USEC`. Without `NOTIFY_SOCKET` (not under systemd) every
//! call does nothing. It never blocks or fails the daemon: a lost notification is logged.

use std::io;
use std::os::linux::net::SocketAddrExt as _;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Arc;
use std::time::Duration;

/// The service manager's socket, read once from the environment at start.
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`, then removes them from the
    /// environment, so that programs Siren starts do not inherit them and notify as Siren.
    ///
    /// # Safety
    /// It changes the environment: call it while the process has only one thread.
    pub unsafe fn from_env() -> Notifier {
        let socket = std::env::var_os("NOTIFY_SOCKET");
        let usec = std::env::var("WATCHDOG_USEC").ok();
        let pid = std::env::var("WATCHDOG_PID").ok();
        for key in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
            // SAFETY: the caller guarantees that no other thread reads the environment.
            unsafe { std::env::remove_var(key) };
        }
        let target = socket.and_then(|s| match open(s.as_encoded_bytes()) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!(socket = ?s, error = %e, "NOTIFY_SOCKET is unusable; systemd will not hear from Siren");
                None
            }
        });
        let watchdog = target
            .as_ref()
            .and_then(|_| watchdog_interval(usec.as_deref(), pid.as_deref(), std::process::id()));
        Notifier { target, watchdog }
    }

    /// `READY=1`, with the bound addresses as the status `systemctl status` shows.
    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}\n"));
    }

    /// `STOPPING=1`: the drain has begun.
    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=Draining sessions\n");
    }

    /// Pings the watchdog at its interval, forever; returns at once when none is set. It runs
    /// as a task on the daemon's runtime, so a stalled runtime stops the pings.
    pub async fn keep_alive(self: Arc<Self>) {
        let Some(every) = self.watchdog else { return };
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            self.send("WATCHDOG=1\n");
        }
    }

    fn send(&self, message: &str) {
        let Some((socket, addr)) = &self.target else {
            return;
        };
        if let Err(e) = socket.send_to_addr(message.as_bytes(), addr) {
            let what = message.lines().next().unwrap_or_default();
            tracing::warn!(error = %e, "could not send {what} to systemd");
        }
    }
}

/// An unbound, non-blocking datagram socket and the address `NOTIFY_SOCKET` names: a path,
/// or `@name` for the abstract namespace. One socket serves every message, so a watchdog
/// ping is one `sendto`; non-blocking, so a full queue drops a message instead of stalling a
/// runtime worker.
fn open(socket: &[u8]) -> io::Result<(UnixDatagram, SocketAddr)> {
    let addr = match socket {
        [b'@', name @ ..] => SocketAddr::from_abstract_name(name)?,
        [b'/', ..] => SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(socket))?,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "neither an absolute path nor an @abstract name",
            ));
        }
    };
    let datagram = UnixDatagram::unbound()?;
    datagram.set_nonblocking(true)?;
    Ok((datagram, addr))
}

/// Half the watchdog timeout, as sd_watchdog_enabled(3) advises; `None` when `WATCHDOG_USEC`
/// is absent, zero or not a number, or `WATCHDOG_PID` names another process.
fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    if pid.is_some_and(|p| p.parse::<u32>() != Ok(me)) {
        return None;
    }
    let usec = usec?.parse::<u64>().ok().filter(|u| *u > 0)?;
    Some(Duration::from_micros(usec / 2).max(Duration::from_millis(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_interval_is_half_the_timeout_for_this_process_only() {
        let half = Some(Duration::from_secs(15));
        for (usec, pid, want) in [
            (Some("30000000"), None, half),
            (Some("30000000"), Some("42"), half),
            (Some("30000000"), Some("43"), None),
            (Some("30000000"), Some("x"), None),
            (Some("0"), None, None),
            (Some("soon"), None, None),
            (None, Some("42"), None),
            (Some("1"), None, Some(Duration::from_millis(1))),
        ] {
            assert_eq!(watchdog_interval(usec, pid, 42), want, "{usec:?} {pid:?}");
        }
    }

    #[test]
    fn notify_socket_names_a_path_or_an_abstract_socket() {
        let (_, addr) = open(b"/run/systemd/notify").unwrap();
        assert_eq!(
            addr.as_pathname(),
            Some(std::path::Path::new("/run/systemd/notify"))
        );
        let (_, addr) = open(b"@siren/notify").unwrap();
        assert_eq!(addr.as_abstract_name(), Some(&b"siren/notify"[..]));
        assert!(open(b"relative/notify").is_err());
        assert!(open(b"").is_err());
    }
}
