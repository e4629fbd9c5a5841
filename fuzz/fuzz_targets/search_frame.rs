//! Fuzzes the search protocol's frame parser and answering loop: `cargo +nightly fuzz run
//! search_frame` from `fuzz/` (seeded with `corpus/search_frame/`). The checks live in
//! `sockserv_handlers::search::fuzz::exercise`, which `cargo test` also runs over the corpus.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sockserv_handlers::search::fuzz::exercise(data);
});
