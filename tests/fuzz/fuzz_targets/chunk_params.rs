//! Chunk parameters as a query string (what GET test-chunk and octet POSTs carry), through
//! parsing and the chunk arithmetic: never a panic, and an accepted chunk always lies
//! inside the file at its place.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sea_orm_resumable::{ChunkParams, ParameterNames, layout::Layout};

fuzz_target!(|data: &[u8]| {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(data).into_owned().collect();
    let lookup = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let schemes = [ParameterNames::resumable(), ParameterNames::flow()];
    let Ok(params) = ChunkParams::parse(&schemes, lookup) else {
        return;
    };
    let Ok(layout) = Layout::new(params.total_size, params.chunk_size) else {
        return;
    };
    let Ok(place) = layout.place(params.chunk_number, params.current_chunk_size) else {
        return;
    };
    assert_eq!(place.len, params.current_chunk_size);
    assert_eq!(
        Some(place.offset),
        (params.chunk_number - 1).checked_mul(params.chunk_size)
    );
    let end = place.offset.checked_add(place.len).expect("no overflow");
    assert!(end <= params.total_size, "{params:?} -> {place:?}");
    assert!(params.chunk_number <= layout.slots());
});
