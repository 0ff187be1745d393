//! The disk's own durable-write reference for `bench/run`: `pwrite` of one message-sized block
//! followed by `fdatasync`, over and over, on a file in the directory under test; prints the
//! rate and the p50/p99 latency of one write+sync. Nothing can commit faster than this.
//! Run: `cargo run --release --example fsync -- <directory> [writes, default 2000] [bytes, 2048]`.
//!
//! The file is preallocated and each write goes to the next block, as an append-only journal
//! in a preallocated file would: `fdatasync` then has only the data to persist, no size change.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .expect("usage: fsync <directory> [writes] [bytes]"),
    );
    let writes: usize = args.next().map_or(2000, |n| n.parse().expect("writes"));
    let bytes: usize = args.next().map_or(2048, |n| n.parse().expect("bytes"));
    let path = dir.join("fsync-bench.dat");
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)?;
    // Preallocate with real blocks (written and synced), so the timed syncs change no metadata.
    let block = vec![0x5au8; bytes];
    file.set_len((writes * bytes) as u64)?;
    for i in 0..writes {
        file.write_at(&block, (i * bytes) as u64)?;
    }
    file.sync_all()?;
    let mut times: Vec<Duration> = Vec::with_capacity(writes);
    let start = Instant::now();
    for i in 0..writes {
        let t = Instant::now();
        file.write_at(&block, (i * bytes) as u64)?;
        file.sync_data()?;
        times.push(t.elapsed());
    }
    let total = start.elapsed();
    drop(file);
    std::fs::remove_file(&path)?;
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    // One line for bench/run: syncs/s, p50 ms, p99 ms.
    println!(
        "{:.0} {:.3} {:.3}",
        writes as f64 / total.as_secs_f64(),
        at(0.5).as_secs_f64() * 1000.0,
        at(0.99).as_secs_f64() * 1000.0
    );
    Ok(())
}
