//! cargo-fuzz target: see [`bucardo_bootstrap_fuzz::check_table_list`].

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        bucardo_bootstrap_fuzz::check_table_list(text);
    }
});
