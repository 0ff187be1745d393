//! Fair sharing of SMTP sessions between client addresses (issue 12 item 2), on real sockets:
//! clients bound to 127.0.0.2 and 127.0.0.3 play other hosts. A client over its share of
//! sessions or connections gets `421 4.7.0` while others are served; trusted clients are
//! exempt; over 80% of `max_sessions`, idle timeouts shorten to 10 s (stress mode).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::TcpSocket;

use crate::helpers::{Daemon, Smtp, deliver, message};
use crate::hostile::raise_open_file_limit;

/// A client connecting from `ip` (a loopback address other than 127.0.0.1 plays another host).
pub async fn connect_from(ip: &str, addr: SocketAddr) -> Smtp {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(ip.parse::<IpAddr>().unwrap(), 0))
        .unwrap();
    Smtp::from_stream(socket.connect(addr).await.unwrap())
}

async fn metric(d: &Daemon, series: &str) -> f64 {
    let text = reqwest::get(format!("http://{}/metrics", d.http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let prefix = format!("{series} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no series {series}"))
        .parse()
        .unwrap()
}

fn rejected(reason: &str) -> String {
    format!("siren_messages_rejected_total{{protocol=\"smtp\",reason=\"{reason}\"}}")
}

#[tokio::test]
async fn a_client_over_its_share_gets_421_and_others_are_still_served() {
    let d = Daemon::start_with("max_sessions_per_client = 3").await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = connect_from("127.0.0.2", d.smtp).await;
        c.expect("220").await;
        held.push(c);
    }
    let mut over = connect_from("127.0.0.2", d.smtp).await;
    let r = over
        .expect("421 4.7.0 Error: too many connections from your address")
        .await;
    assert!(r.contains("try again later"), "{r}");
    assert!(over.closed().await);
    // Another host, and this one, are served meanwhile.
    let mut other = connect_from("127.0.0.3", d.smtp).await;
    other.expect("220").await;
    deliver(d.smtp, &["ops@alerts.localhost"], &message("m", "fair@x")).await;
    // A session of the greedy client ends: its slot is its own again.
    held[0].cmd("QUIT", "221").await;
    assert!(held[0].closed().await);
    drop(held.remove(0));
    let mut served = false;
    for _ in 0..100 {
        let mut c = connect_from("127.0.0.2", d.smtp).await;
        let r = c.reply().await;
        if r.starts_with("220") {
            served = true;
            break;
        }
        assert!(r.starts_with("421 4.7.0"), "{r}");
        tokio::task::yield_now().await;
    }
    assert!(served, "the client's slot did not come back");
    assert!(metric(&d, &rejected("client_sessions")).await >= 1.0);
    d.stop().await;
}

#[tokio::test]
async fn trusted_clients_are_exempt_from_the_share() {
    let d = Daemon::start_with(
        "max_sessions_per_client = 2\nmax_connection_rate_per_client = 2\ntrusted_clients = [\"127.0.0.3/32\", \"10.0.0.0/8\"]",
    )
    .await;
    let mut trusted = Vec::new();
    for _ in 0..6 {
        let mut c = connect_from("127.0.0.3", d.smtp).await;
        c.expect("220").await;
        trusted.push(c);
    }
    // An untrusted client still has its share (here two sessions, two connections a minute).
    let mut a1 = connect_from("127.0.0.2", d.smtp).await;
    a1.expect("220").await;
    let mut a2 = connect_from("127.0.0.2", d.smtp).await;
    a2.expect("220").await;
    let mut a3 = connect_from("127.0.0.2", d.smtp).await;
    a3.expect("421 4.7.0").await;
    trusted[5].cmd("NOOP", "250").await;
    d.stop().await;
}

#[tokio::test]
async fn new_connections_per_minute_are_capped_per_client() {
    let d = Daemon::start_with("max_connection_rate_per_client = 3").await;
    for _ in 0..3 {
        let mut c = connect_from("127.0.0.2", d.smtp).await;
        c.expect("220").await;
        c.cmd("QUIT", "221").await;
    }
    let mut c = connect_from("127.0.0.2", d.smtp).await;
    c.expect("421 4.7.0 Error: too many connections from your address this minute")
        .await;
    assert!(c.closed().await);
    // Refused connections count too: the client stays refused while it keeps trying.
    connect_from("127.0.0.2", d.smtp)
        .await
        .expect("421 4.7.0")
        .await;
    // Another host is not affected.
    let mut other = connect_from("127.0.0.3", d.smtp).await;
    other.expect("220").await;
    assert_eq!(metric(&d, &rejected("client_rate")).await, 2.0);
    d.stop().await;
}

/// The target, with the default configuration: a client at 127.0.0.2 tries to hold
/// 1,500 idle sessions; it gets its 50, the rest `421 4.7.0`, and a client at 127.0.0.1 still
/// delivers. The latency is printed, not asserted (bench/storm-smtp measures it in release).
#[tokio::test]
async fn fifteen_hundred_idle_connections_from_one_address_leave_room_for_others() {
    raise_open_file_limit(8192);
    let d = Daemon::start().await;
    let (mut held, mut refused) = (Vec::new(), 0);
    for _ in 0..1500 {
        let mut c = connect_from("127.0.0.2", d.smtp).await;
        let r = c.reply().await;
        if r.starts_with("220") {
            held.push(c);
        } else {
            assert!(r.starts_with("421 4.7.0"), "{r}");
            refused += 1;
        }
    }
    assert_eq!((held.len(), refused), (50, 1450));
    let t = std::time::Instant::now();
    let mut c = Smtp::greeted(d.smtp).await;
    let r = c
        .mail(
            "monitor@example.com",
            &["ops@alerts.localhost"],
            &message("busy", "busy@x"),
        )
        .await;
    let latency = t.elapsed();
    println!(
        "1,500 idle from 127.0.0.2 (50 held): 127.0.0.1 got {} in {latency:?}",
        r.trim_end()
    );
    assert!(r.starts_with("250 2.0.0"), "{r}");
    held[49].cmd("NOOP", "250").await;
    d.stop().await;
}

/// Over 80% of `max_sessions`, waits shorten to 10 s, also one that began before: the first
/// session was idle with a 5-minute deadline when stress mode began.
#[tokio::test(start_paused = true)]
async fn stress_mode_shortens_idle_timeouts_and_is_counted() {
    let d = Daemon::start_with("max_sessions = 10\nidle_timeout = \"5m\"").await;
    let mut first = Smtp::greeted(d.smtp).await;
    first.cmd("EHLO client.test", "250").await;
    let mut others = Vec::new();
    for _ in 0..8 {
        others.push(Smtp::greeted(d.smtp).await);
    }
    let stressed = tokio::time::Instant::now();
    first.expect("421 4.4.2").await;
    let waited = stressed.elapsed();
    assert!(waited <= Duration::from_secs(10), "cut after {waited:?}");
    for c in &mut others {
        c.expect("421 4.4.2").await;
    }
    tokio::time::resume();
    assert_eq!(metric(&d, "siren_smtp_stress_entered_total").await, 1.0);
    drop((first, others));
    d.stop().await;
}
