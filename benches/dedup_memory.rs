//! Memory per seen message id in [`MemoryTracker`], the embedded dedup cache: the growth of
//! the process's resident memory while a tracker fills with N ids, divided by N. Resident
//! memory counts what the allocator really holds (the cache's tables, its per-entry
//! bookkeeping, allocator overhead), which a sum of `size_of` would not.
//!
//! Run: `cargo bench --bench dedup_memory` (100 k and 1 M ids);
//! `cargo bench --bench dedup_memory -- --quick` (100 k only).

#![allow(clippy::print_stdout, reason = "a benchmark harness reports on standard output")]

use pricemesh::dedup::{MemoryTracker, MessageTracker, TrackerConfig};
use pricemesh::types::MessageId;
use tokio::time::Duration;

fn main() {
    let quick = std::env::args().any(|arg| arg == "--quick");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let sizes: &[usize] = if quick { &[100_000] } else { &[100_000, 1_000_000] };
    for &ids in sizes {
        // Made before measuring, so only the tracker's growth is counted.
        let batch: Vec<MessageId> = (0..ids).map(|_| MessageId::new()).collect();
        let before = resident_bytes();
        let tracker =
            MemoryTracker::new(TrackerConfig { capacity: ids, expiration: Duration::from_secs(3600) });
        let first = runtime.block_on(async {
            let mut first = 0_usize;
            for &id in &batch {
                first += usize::from(tracker.check_and_mark(id).await.expect("memory never fails"));
            }
            first
        });
        let after = resident_bytes();
        let held = runtime.block_on(tracker.len()).expect("memory never fails");
        println!(
            "dedup memory: {ids} ids marked ({first} first, {held} held): {:.1} bytes per id ({} MiB resident growth)",
            after.saturating_sub(before) as f64 / held.max(1) as f64,
            after.saturating_sub(before) / (1024 * 1024)
        );
        drop(tracker);
    }
}

/// The process's resident memory in bytes (`VmRSS`, Linux).
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}
