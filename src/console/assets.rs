//! The console's stylesheet, script and icon, compiled into the binary (no build step, no files
//! to install). The script only enhances pages that work without it.

use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::ConsoleError;

const FILES: [(&str, &str, &str); 3] = [
    (
        "console.css",
        "text/css; charset=utf-8",
        include_str!("../../web/console.css"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/console.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("../../web/favicon.svg"),
    ),
];

pub async fn serve(Path(file): Path<String>) -> Result<Response, ConsoleError> {
    let (_, kind, body) = FILES
        .iter()
        .find(|(name, _, _)| *name == file)
        .ok_or_else(|| ConsoleError::not_found(format!("There is no asset \"{file}\".")))?;
    Ok((
        [
            (header::CONTENT_TYPE, *kind),
            // Short: a new binary's assets are picked up within minutes.
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        *body,
    )
        .into_response())
}
