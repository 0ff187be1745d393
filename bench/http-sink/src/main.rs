//! Answers every POST with 202 and a small JSON body, doing nothing else: the reference that
//! `bench/run` measures Siren's webhook intake against. Usage: `http-sink 127.0.0.1:8927`.

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;

#[tokio::main]
async fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8927".into());
    let app = Router::new().route(
        "/{*path}",
        post(|_body: axum::body::Bytes| async { (StatusCode::ACCEPTED, r#"{"results":[]}"#) }),
    );
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
    axum::serve(listener, app).await.expect("serve");
}
