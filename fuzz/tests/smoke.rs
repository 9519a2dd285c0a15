//! The fuzz targets' properties on stable Rust, without cargo-fuzz: a deterministic
//! pseudo-random generator hammers each parser for `FUZZ_SMOKE_SECS` seconds (default 2) from
//! `FUZZ_SMOKE_SEED` (default 1). Run with `cargo test --manifest-path fuzz/Cargo.toml`.

use bucardo_bootstrap_fuzz::*;
use std::time::Duration;

fn budget() -> (u64, Duration) {
    let secs = std::env::var("FUZZ_SMOKE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let seed = std::env::var("FUZZ_SMOKE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    (seed, Duration::from_secs(secs))
}

#[test]
fn uri_parser() {
    let (seed, b) = budget();
    let n = smoke("uri", seed, b, URI_SEEDS, check_uri);
    eprintln!("uri: {n} inputs");
}

#[test]
fn table_list_parser() {
    let (seed, b) = budget();
    let n = smoke("table_list", seed, b, TABLE_SEEDS, check_table_list);
    eprintln!("table_list: {n} inputs");
}

#[test]
fn planfile_parser() {
    let (seed, b) = budget();
    let n = smoke("planfile", seed, b, PLANFILE_SEEDS, check_planfile);
    eprintln!("planfile: {n} inputs");
}
