//! Micro-benchmark: the rate-limit decision (SPEC §7) — the pure GCRA step the Redis script runs,
//! and the in-process buckets (the memory store's, and each replica's fallback while Redis is
//! down) for one hot client and for many distinct clients.
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{Criterion, criterion_group, criterion_main};
use gateway_api::store::ratelimit::{MemoryBuckets, Params, decide};

fn bench(c: &mut Criterion) {
    let p = Params::new(100.0, 200);
    c.bench_function("ratelimit decide (GCRA step)", |b| {
        let mut now = 1_000_000u64;
        let mut tat = 0u64;
        b.iter(|| {
            now += 7;
            let v = decide(black_box(tat), now, p);
            if v.allowed {
                tat = v.tat;
            }
            v
        })
    });
    let buckets = MemoryBuckets::new();
    let hot = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
    c.bench_function("ratelimit memory take (one client)", |b| {
        b.iter(|| buckets.take(black_box(hot), p))
    });
    let buckets = MemoryBuckets::new();
    let mut n = 0u32;
    c.bench_function("ratelimit memory take (100k clients)", |b| {
        b.iter(|| {
            n = (n + 1) % 100_000;
            buckets.take(black_box(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))), p)
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
