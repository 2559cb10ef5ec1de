//! Blob writes and verified reads.

use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;

use hoist_store::digest::{Digest, sha256_bytes};
use hoist_store::fsck::Problem;
use hoist_store::{ExpectedBlob, StoreError};

use crate::common::{assert_valid, temp_store, tiny_image};

fn blob_file(root: &std::path::Path, digest: &Digest) -> std::path::PathBuf {
    root.join("blobs/sha256").join(digest.digest())
}

#[test]
fn round_trip_through_reader_and_writer() {
    let (_dir, store) = temp_store();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let (digest, size) = store.put_blob(&data[..], None).unwrap();
    assert_eq!(digest, sha256_bytes(&data));
    assert_eq!(size, data.len() as u64);
    assert_valid(&store);

    let mut back = Vec::new();
    store
        .open_blob(&digest)
        .unwrap()
        .read_to_end(&mut back)
        .unwrap();
    assert_eq!(back, data);
    assert_eq!(store.blob_size(&digest).unwrap(), size);
    assert!(store.has_blob(&digest));

    // The same content through a BlobWriter, with an expectation: no rewrite.
    let inode = std::fs::metadata(blob_file(store.root(), &digest))
        .unwrap()
        .ino();
    let mut writer = store.blob_writer().unwrap();
    for chunk in data.chunks(4096) {
        writer.write_all(chunk).unwrap();
    }
    let expected = ExpectedBlob {
        digest: digest.clone(),
        size: Some(size),
    };
    assert_eq!(
        writer.commit(Some(&expected)).unwrap(),
        (digest.clone(), size)
    );
    let inode_after = std::fs::metadata(blob_file(store.root(), &digest))
        .unwrap()
        .ino();
    assert_eq!(inode, inode_after, "an existing blob is not rewritten");
    assert_valid(&store);
    assert_eq!(
        std::fs::read_dir(store.tmp_dir())
            .unwrap()
            .filter(|e| { e.as_ref().unwrap().file_name() != "leases" })
            .count(),
        0,
        "no temp files left behind"
    );
}

#[test]
fn expectations_are_enforced_and_nothing_is_stored_on_mismatch() {
    let (_dir, store) = temp_store();
    let other = sha256_bytes(b"other");
    let cases: Vec<(&str, ExpectedBlob)> = vec![
        (
            "wrong digest",
            ExpectedBlob {
                digest: other.clone(),
                size: None,
            },
        ),
        (
            "wrong size",
            ExpectedBlob {
                digest: sha256_bytes(b"data"),
                size: Some(3),
            },
        ),
    ];
    for (case, expected) in cases {
        let err = store.put_blob(&b"data"[..], Some(&expected)).unwrap_err();
        match (case, &err) {
            ("wrong digest", StoreError::DigestMismatch { .. })
            | ("wrong size", StoreError::SizeMismatch { .. }) => {}
            _ => panic!("{case}: unexpected error {err}"),
        }
        assert!(
            !store.has_blob(&sha256_bytes(b"data")),
            "{case}: nothing stored"
        );
        assert_valid(&store);
    }
}

#[test]
fn non_sha256_digests_never_become_paths() {
    let (_dir, store) = temp_store();
    let sha512: Digest = format!("sha512:{}", "a".repeat(128)).parse().unwrap();
    assert!(matches!(
        store.open_blob(&sha512),
        Err(StoreError::InvalidDigest(_))
    ));
    assert!(!store.has_blob(&sha512));
    assert!(store.blob_size(&sha512).is_err());
}

#[test]
fn a_corrupted_blob_is_refused_by_reads_and_reported_by_fsck() {
    let (_dir, store) = temp_store();
    let image = tiny_image(&store, "corrupt-me");
    store.tag("victim", &image).unwrap();
    assert_valid(&store);
    let layer = image.manifest().layers()[0].digest().clone();
    let config = image.id().clone();
    for digest in [&layer, &config] {
        let path = blob_file(store.root(), digest);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff; // same size, different content
        std::fs::write(&path, &bytes).unwrap();

        let mut reader = store.open_blob(digest).unwrap();
        let err = reader.read_to_end(&mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{digest}");
        assert!(err.to_string().contains("is corrupt"), "{digest}: {err}");
        // Reading again never turns into a clean EOF.
        assert!(
            reader.read(&mut [0u8; 16]).is_err(),
            "{digest}: error is sticky"
        );
    }
    assert!(matches!(
        store.read_blob_bytes(&config),
        Err(StoreError::DigestMismatch { .. })
    ));
    assert!(
        store.resolve("victim").is_err(),
        "a corrupt config is refused"
    );

    let report = store.fsck(false).unwrap();
    let corrupt: Vec<_> = report
        .problems
        .iter()
        .filter_map(|p| match p {
            Problem::CorruptBlob { expected, .. } => Some(expected.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(corrupt.len(), 2, "{:#?}", report.problems);
    assert!(corrupt.contains(&layer) && corrupt.contains(&config));
    assert!(
        report
            .problems
            .iter()
            .any(|p| matches!(p, Problem::BrokenImage { name, .. } if name == "victim:latest")),
        "the tag is reported: {:#?}",
        report.problems
    );

    let repaired = store.fsck(true).unwrap();
    assert!(!repaired.is_clean());
    assert!(
        !store.has_blob(&layer) && !store.has_blob(&config),
        "corrupt blobs dropped"
    );
    assert!(store.resolve("victim").is_err(), "dangling tag dropped");
    assert_valid(&store);
}

/// A push sends a blob as a body of known length, which reads exactly the
/// blob's size and never the EOF after it: the rot check must not wait
/// for EOF.
#[test]
fn r9_a_corrupt_blob_read_to_its_size_without_eof_fails() {
    let (_dir, store) = temp_store();
    // Small, and past the size where hashing moves to a thread.
    for size in [1, 4096, (5 << 20) + 3] {
        let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        let (digest, _) = store.put_blob(&data[..], None).unwrap();

        let mut intact = vec![0u8; size];
        let mut reader = store.open_blob(&digest).unwrap();
        reader.read_exact(&mut intact).unwrap();
        assert!(intact == data, "case {size}: intact blob reads back");
        assert_eq!(reader.read(&mut [0u8; 16]).unwrap(), 0, "case {size}: EOF");

        let path = blob_file(store.root(), &digest);
        let mut bytes = data.clone();
        bytes[size / 2] ^= 0xff; // same size, different content
        std::fs::write(&path, &bytes).unwrap();
        let mut reader = store.open_blob(&digest).unwrap();
        let err = reader.read_exact(&mut vec![0u8; size]).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "case {size}");
        assert!(err.to_string().contains("is corrupt"), "case {size}: {err}");
        assert!(
            reader.read(&mut [0u8; 16]).is_err(),
            "case {size}: error is sticky"
        );
        std::fs::write(&path, &data).unwrap();
    }
    assert_valid(&store);
}

/// Peak resident set size of this process, from /proc.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn big_blobs_stream_with_bounded_memory() {
    let mib: u64 = std::env::var("HOIST_IT_BIG_MIB").map_or(256, |v| v.parse().unwrap());
    let (_dir, store) = temp_store();
    let before = peak_rss_kib();
    let start = std::time::Instant::now();
    let (digest, size) = store
        .put_blob(std::io::repeat(0x5a).take(mib << 20), None)
        .unwrap();
    let put = start.elapsed();
    assert_eq!(size, mib << 20);
    let start = std::time::Instant::now();
    let copied =
        std::io::copy(&mut store.open_blob(&digest).unwrap(), &mut std::io::sink()).unwrap();
    let read = start.elapsed();
    assert_eq!(copied, size);
    let grown = peak_rss_kib().saturating_sub(before);
    eprintln!(
        "{mib} MiB: put {:.0} MB/s, verified read {:.0} MB/s, peak RSS grew {grown} KiB",
        size as f64 / put.as_secs_f64() / 1e6,
        size as f64 / read.as_secs_f64() / 1e6,
    );
    assert!(
        grown < 64 << 10,
        "peak RSS grew by {grown} KiB while streaming {mib} MiB"
    );
}

/// A blob written back early (in 8 MiB chunks, as a layer from an
/// upperdir is) is stored byte for byte, across chunk boundaries and in
/// writes of odd sizes.
#[test]
fn r9_blob_written_back_early_is_intact() {
    let (_dir, store) = temp_store();
    let data: Vec<u8> = (0..(20u32 << 20) + 12345)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut writer = store.blob_writer().unwrap();
    writer.write_back_early();
    for chunk in data.chunks(1_000_003) {
        writer.write_all(chunk).unwrap();
    }
    let expected = ExpectedBlob {
        digest: sha256_bytes(&data),
        size: Some(data.len() as u64),
    };
    let (digest, size) = writer.commit(Some(&expected)).unwrap();
    assert_eq!((digest.clone(), size), (expected.digest, data.len() as u64));
    let mut back = Vec::new();
    store
        .open_blob(&digest)
        .unwrap()
        .read_to_end(&mut back)
        .unwrap();
    assert!(
        back == data,
        "the blob read back differs from what was written"
    );
    assert_valid(&store);
}
