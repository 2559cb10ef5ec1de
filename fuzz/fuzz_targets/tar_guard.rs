//! The tar guard on arbitrary streams, read in chunks of fuzzer-chosen
//! sizes, with a small cap (the first input byte picks the cap and the
//! chunk pattern; the rest is the stream). Checked:
//! - no panic;
//! - data passes through untouched: what the guard hands on is always a
//!   prefix of the input, and all of it when the guard raises no error;
//! - what the `tar` crate holds in memory for an entry it reads through the
//!   guard (its long path and link names, its PAX records) is never larger
//!   than the cap, which is the guard's whole promise.
//!
//! Crashes are kept in testdata/fuzz/tar_guard/.
#![no_main]

use std::io::{self, Read};

use hoist_store::tar_guard::TarGuard;
use libfuzzer_sys::fuzz_target;

/// Reads at most `sizes[i % len]` bytes per call, as pipes and
/// decompressors hand data on in uneven pieces.
struct Chunked<'a> {
    data: &'a [u8],
    sizes: [usize; 4],
    call: usize,
}

impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let limit = self.sizes[self.call % self.sizes.len()];
        self.call += 1;
        let n = buf.len().min(limit).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn chunked(data: &[u8], seed: u8) -> Chunked<'_> {
    let pick = |shift: u8| match (seed >> shift) & 3 {
        0 => 1,
        1 => 511,
        2 => 4096,
        _ => usize::MAX,
    };
    Chunked {
        data,
        sizes: [pick(0), pick(2), pick(4), 513],
        call: 0,
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&seed, data)) = input.split_first() else {
        return;
    };
    // A cap small enough that fuzzed inputs reach it: 0.5, 1, 2 or 4 KiB.
    let cap = 512u64 << (seed >> 6);

    // Pass-through: the guard's output is a prefix of its input.
    let mut guard = TarGuard::new(chunked(data, seed)).max_extension(cap);
    let mut out = Vec::new();
    let mut buf = vec![0u8; 700];
    let failed = loop {
        match guard.read(&mut buf) {
            Ok(0) => break false,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break true,
        }
    };
    assert!(data.starts_with(&out), "the guard changed the bytes it passed on");
    if !failed {
        assert_eq!(out.len(), data.len(), "the guard ended early without an error");
    }

    // What the tar crate keeps in memory through the guard stays under the cap.
    let guard = TarGuard::new(chunked(data, seed.rotate_left(3))).max_extension(cap);
    let mut archive = tar::Archive::new(guard);
    let Ok(entries) = archive.entries() else {
        return;
    };
    for entry in entries {
        let Ok(mut entry) = entry else {
            break;
        };
        let path = entry.path_bytes().len() as u64;
        assert!(path <= cap.max(100), "a path of {path} bytes passed a {cap}-byte cap");
        if let Some(link) = entry.link_name_bytes() {
            let link = link.len() as u64;
            assert!(link <= cap.max(100), "a link name of {link} bytes passed a {cap}-byte cap");
        }
        if let Ok(Some(pax)) = entry.pax_extensions() {
            let total: u64 = pax
                .flatten()
                .map(|r| (r.key_bytes().len() + r.value_bytes().len()) as u64)
                .sum();
            assert!(total <= cap, "PAX records of {total} bytes passed a {cap}-byte cap");
        }
        if io::copy(&mut entry, &mut io::sink()).is_err() {
            break;
        }
    }
});
