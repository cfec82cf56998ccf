//! Property tests of the chunk arithmetic (`layout`): whatever the file and chunk sizes,
//! the chunks resumable.js and flow.js send in either mode are accepted and tile the file
//! exactly, and nothing `place` accepts reaches past the end of the file.

use proptest::prelude::*;
use sea_orm_resumable::testing::{Layout, Mode};

/// The chunks a client sends for a `total`-byte file in `chunk`-byte chunks: (number,
/// offset, length), as resumable.js 1.1.0 and flow.js 2.14.1 cut them.
fn client_chunks(total: u64, chunk: u64, mode: Mode) -> Vec<(u64, u64, u64)> {
    let count = match mode {
        Mode::Standard => (total / chunk).max(1),
        Mode::Forced => total.div_ceil(chunk).max(1),
    };
    (1..=count)
        .map(|n| {
            let start = (n - 1) * chunk;
            let end = if n == count {
                total
            } else {
                (n * chunk).min(total)
            };
            (n, start, end - start)
        })
        .collect()
}

fn sizes() -> impl Strategy<Value = (u64, u64)> {
    // Up to 1000 chunks per file, so every chunk can be checked.
    (1u64..=1 << 20).prop_flat_map(|chunk| (0..=chunk * 1000, Just(chunk)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn every_chunk_a_client_sends_is_accepted_and_they_tile_the_file(
        (total, chunk) in sizes(),
        forced in any::<bool>(),
    ) {
        let mode = if forced { Mode::Forced } else { Mode::Standard };
        let layout = Layout::new(total, chunk).unwrap();
        let mut covered = 0;
        for (number, offset, len) in client_chunks(total, chunk, mode) {
            let place = layout.place(number, len).unwrap();
            prop_assert_eq!(place.offset, offset);
            prop_assert_eq!(place.offset, covered, "contiguous");
            prop_assert!(place.implies.is_none() || place.implies == Some(mode));
            covered += place.len;
        }
        prop_assert_eq!(covered, total);
        prop_assert_eq!(layout.chunk_count(mode), client_chunks(total, chunk, mode).len() as u64);
    }

    #[test]
    fn nothing_accepted_reaches_past_the_end_of_the_file(
        total in any::<u64>(),
        chunk in 1u64..,
        number in any::<u64>(),
        len in any::<u64>(),
    ) {
        if let Ok(layout) = Layout::new(total, chunk)
            && let Ok(place) = layout.place(number, len)
        {
            prop_assert_eq!(place.offset, (number - 1) * chunk);
            prop_assert!(place.offset.checked_add(place.len).is_some_and(|end| end <= total));
            prop_assert!(number <= layout.slots());
        }
    }

    #[test]
    fn a_chunk_of_any_other_length_is_refused(
        (total, chunk) in sizes(),
        forced in any::<bool>(),
        pick in any::<prop::sample::Index>(),
        delta in 1u64..1000,
    ) {
        let mode = if forced { Mode::Forced } else { Mode::Standard };
        let layout = Layout::new(total, chunk).unwrap();
        let chunks = client_chunks(total, chunk, mode);
        let (number, _, len) = chunks[pick.index(chunks.len())];
        for wrong in [len + delta, len.saturating_sub(delta)] {
            if wrong == len {
                continue;
            }
            // The other mode may legitimately give this chunk number another length.
            let other = if forced { Mode::Standard } else { Mode::Forced };
            let other_len = client_chunks(total, chunk, other)
                .iter()
                .find(|(n, _, _)| *n == number)
                .map(|(_, _, l)| *l);
            if other_len == Some(wrong) {
                continue;
            }
            prop_assert!(layout.place(number, wrong).is_err(), "chunk {number} of {wrong} bytes");
        }
    }
}
