//! What the folding, silence and replay tests share: a webhook destination's receiver (a
//! real HTTP server that hands over each event it gets), a webhook sender, and a daemon on a
//! configuration of the test's own.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use serde_json::Value;
use siren::Config;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::helpers::Daemon;

/// A real HTTP server receiving a webhook destination's deliveries, in order.
pub struct Receiver {
    pub addr: SocketAddr,
    got: mpsc::UnboundedReceiver<Value>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, got) = mpsc::unbounded_channel();
        let app =
            Router::new()
                .route(
                    "/{*path}",
                    post(
                        |State(tx): State<mpsc::UnboundedSender<Value>>,
                         body: axum::Json<Value>| async move {
                            let _ = tx.send(body.0);
                            axum::http::StatusCode::NO_CONTENT
                        },
                    ),
                )
                .with_state(tx);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { addr, got }
    }

    /// The next delivery: `{"event", "alert", …}`.
    pub async fn next(&mut self) -> Value {
        tokio::time::timeout(Duration::from_secs(30), self.got.recv())
            .await
            .expect("a delivery within 30 s")
            .expect("receiver running")
    }

    /// A `[[destinations]]` table `id` that posts here, for every event kind.
    pub fn destination(&self, id: &str) -> String {
        format!(
            "[[destinations]]\nid = \"{id}\"\ntype = \"webhook\"\nurl = \"http://{}/hook\"\n\
             events = [\"create\", \"acknowledge\", \"resolve\", \"aggregate\"]\n",
            self.addr
        )
    }
}

/// A daemon on loopback, its store in a temporary directory, with `rest` (integrations and
/// destinations) after the listeners and store.
pub async fn start(rest: &str) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start_config(config(&dir.path().join("store"), rest)).await;
    d.dir = Some(dir);
    d
}

pub fn config(store: &Path, rest: &str) -> Config {
    let text = format!(
        "[smtp]\nlisten = [\"127.0.0.1:0\"]\nhostname = \"siren.test\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
         [store]\npath = \"{}\"\n{rest}",
        store.display()
    );
    Config::parse(&text, Path::new("test.toml")).expect("valid test config")
}

/// POSTs `body` to the webhook of `integration`; answers the status and JSON.
pub async fn webhook(http: SocketAddr, integration: &str, body: &Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("http://{http}/webhooks/{integration}"))
        .json(body)
        .send()
        .await
        .expect("webhook request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The first result of a webhook the daemon took (202).
pub async fn result(http: SocketAddr, integration: &str, body: Value) -> Value {
    let (status, body) = webhook(http, integration, &body).await;
    assert_eq!(status, 202, "{body}");
    body["results"][0].clone()
}

/// One alert by id.
pub async fn alert(d: &Daemon, id: &Value) -> Value {
    let (status, body) = d
        .get(&format!(
            "/api/v1/alerts/{}",
            id.as_str().expect("an alert id")
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    body
}
