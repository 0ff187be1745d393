//! The HTTP port's limits on real sockets (issue 12, item 4): an early 413 for a declared body
//! over `http.max_body_size`, the header, body-rate and keep-alive timeouts, and the connection
//! cap. Timeouts run on paused time: tokio moves the clock to the next deadline whenever the
//! runtime is idle.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::helpers::{Daemon, http_get};

async fn daemon(http: &str) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[smtp]\nlisten = [\"127.0.0.1:0\"]\n[http]\nlisten = \"127.0.0.1:0\"\nmax_body_size = 65536\n{http}\n\
         [store]\npath = \"{}\"\n[[integrations]]\nid = \"custom\"\ntype = \"webhook\"\ntoken = \"change-me\"\n",
        dir.path().join("store").display()
    );
    let config = siren::Config::parse(&text, std::path::Path::new("t.toml")).unwrap();
    let mut d = Daemon::start_config(config).await;
    d.dir = Some(dir);
    d
}

/// Reads until the server closes; returns what it sent.
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code and JSON body of a raw HTTP/1.1 response.
fn parse(response: &str) -> (u16, Value) {
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn webhook_head(content_length: u64) -> String {
    format!(
        "POST /webhooks/custom HTTP/1.1\r\nHost: siren\r\nAuthorization: Bearer change-me\r\n\
         Content-Type: application/json\r\nContent-Length: {content_length}\r\n\r\n"
    )
}

async fn rejected(d: &Daemon, reason: &str) -> f64 {
    let text = reqwest::get(format!("http://{}/metrics", d.http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = format!("siren_messages_rejected_total{{protocol=\"http\",reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

#[tokio::test]
async fn a_declared_body_over_max_body_size_gets_413_before_any_of_it_is_sent() {
    let d = daemon("").await;
    let mut c = TcpStream::connect(d.http).await.unwrap();
    c.write_all(webhook_head(50_000_000).as_bytes())
        .await
        .unwrap();
    // No body follows: the answer comes from the headers alone, and the connection closes.
    let (status, body) = parse(&read_to_close(&mut c).await);
    assert_eq!(status, 413, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("http.max_body_size"),
        "{body}"
    );
    let logs = d.logs("custom").await;
    assert_eq!(logs.len(), 1);
    assert_eq!(
        (&logs[0]["outcome"], &logs[0]["size"], &logs[0]["raw"]),
        (&Value::from("rejected"), &Value::from(0), &Value::from("")),
        "a rejected entry without the body"
    );
    d.stop().await;
}

#[tokio::test(start_paused = true)]
async fn slow_header_senders_are_closed_at_the_header_timeout_while_healthz_answers() {
    let d = daemon("header_timeout = \"30s\"").await;
    let started = Instant::now();
    let mut slow = Vec::new();
    for _ in 0..50 {
        let mut c = TcpStream::connect(d.http).await.unwrap();
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: si")
            .await
            .unwrap();
        slow.push(c);
    }
    let (status, body) = http_get(d.http, "/healthz").await;
    assert_eq!((status, &body["status"]), (200, &Value::from("ok")));
    for c in &mut slow {
        read_to_close(c).await;
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(30) && waited < Duration::from_secs(40),
        "closed after {waited:?}"
    );
    tokio::time::resume();
    assert_eq!(rejected(&d, "header_timeout").await, 50.0);
    assert_eq!(http_get(d.http, "/healthz").await.0, 200);
    d.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_trickled_body_gets_408_at_the_body_deadline() {
    let d = daemon("body_timeout = \"10s\"\nbody_min_rate = 1000").await;
    let started = Instant::now();
    let mut c = TcpStream::connect(d.http).await.unwrap();
    c.write_all(webhook_head(30_000).as_bytes()).await.unwrap();
    // 2000 bytes earn 2 s more: the deadline is 12 s after the body began.
    c.write_all(&[b' '; 2000]).await.unwrap();
    let (status, body) = parse(&read_to_close(&mut c).await);
    assert_eq!(status, 408, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("http.body_min_rate"),
        "{body}"
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(12) && waited < Duration::from_secs(13),
        "{waited:?}"
    );
    tokio::time::resume();
    assert_eq!(rejected(&d, "body_timeout").await, 1.0);
    d.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_idle_kept_alive_connection_is_closed_after_the_keepalive_timeout() {
    let d = daemon("keepalive_timeout = \"5s\"").await;
    let mut c = TcpStream::connect(d.http).await.unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: siren\r\n\r\n")
        .await
        .unwrap();
    let mut first = vec![0; 4096];
    let n = c.read(&mut first).await.unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    let answered = Instant::now();
    // Kept alive, then closed once idle for 5 s (well before the 30 s header timeout).
    read_to_close(&mut c).await;
    let idle = answered.elapsed();
    assert!(
        idle >= Duration::from_secs(5) && idle < Duration::from_secs(6),
        "{idle:?}"
    );
    d.stop().await;
}

#[tokio::test]
async fn connections_over_the_cap_get_503_and_the_port_serves_again_once_they_close() {
    let d = daemon("max_connections = 2").await;
    let idle: Vec<TcpStream> = vec![
        TcpStream::connect(d.http).await.unwrap(),
        TcpStream::connect(d.http).await.unwrap(),
    ];
    let mut third = TcpStream::connect(d.http).await.unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: siren\r\n\r\n")
        .await
        .unwrap();
    let (status, body) = parse(&read_to_close(&mut third).await);
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("http.max_connections"),
        "{body}"
    );
    drop(idle);
    // The two slots come free as the server sees the clients close.
    let mut answered = 0;
    for _ in 0..100 {
        if http_get(d.http, "/healthz").await.0 == 200 {
            answered += 1;
            break;
        }
    }
    assert_eq!(
        answered, 1,
        "/healthz answers once the idle connections closed"
    );
    assert!(rejected(&d, "connection_cap").await >= 1.0);
    d.stop().await;
}
