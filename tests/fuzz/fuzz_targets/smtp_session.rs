//! Arbitrary bytes from an SMTP client through a whole session (Siren's line handling, mailin,
//! DATA, the commit): the session ends, never panics, and every reply line is well-formed.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use siren::smtp::{Context, serve_connection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// Built once per fuzzing process and kept (reachable) for its whole life.
struct Harness {
    rt: tokio::runtime::Runtime,
    ctx: Arc<Context>,
    _writer: siren::store::Writer,
    _dir: tempfile::TempDir,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[smtp]\nlisten = [\"127.0.0.1:0\"]\nmax_line_length = 2048\nmax_message_size = 8192\nmax_recipients = 5\n\
             [store]\npath = \"{}\"\n[[integrations]]\nid = \"ops\"\ntype = \"email\"\naddresses = [\"ops@x\", \"*@y\"]\n",
            dir.path().join("store").display()
        );
        let config = siren::Config::parse(&text, std::path::Path::new("fuzz.toml")).unwrap();
        let (ctx, writer) = rt.block_on(async {
            let store = siren::store::Store::open(&config.store.path).unwrap();
            let metrics = Arc::new(siren::metrics::Metrics::new());
            let (writer, handle) =
                siren::store::Writer::spawn(store, config.logs.clone(), None, metrics.clone())
                    .unwrap();
            let live = siren::config::Live::new(config);
            (Arc::new(Context::new(live, handle, metrics)), writer)
        });
        Harness {
            rt,
            ctx,
            _writer: writer,
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let h = harness();
    h.rt.block_on(async {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let peer = "127.0.0.1:1".parse().unwrap();
        let session = tokio::spawn(serve_connection(
            server,
            peer,
            h.ctx.clone(),
            CancellationToken::new(),
            CancellationToken::new(),
        ));
        let (mut rd, mut wr) = tokio::io::split(client);
        let write = async {
            let _ = wr.write_all(data).await;
            let _ = wr.shutdown().await;
        };
        let read = async {
            let mut out = Vec::new();
            let _ = rd.read_to_end(&mut out).await;
            out
        };
        let ((), out) = tokio::join!(write, read);
        session.await.expect("session task panicked");
        for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            assert!(
                line.len() >= 4 && line[..3].iter().all(u8::is_ascii_digit) && (line[3] == b' ' || line[3] == b'-'),
                "malformed reply line {:?}",
                String::from_utf8_lossy(line)
            );
        }
    });
});
