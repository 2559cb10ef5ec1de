//! Blobs written with `O_DIRECT` ([`hoist_store::BlobWriter::write_direct`]),
//! as the builder writes its layers.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hoist_store::Store;
use hoist_store::blob::{DIRECT_ALIGN, DIRECT_CHUNK, DIRECT_FROM};
use hoist_store::digest::sha256_bytes;

use crate::common::assert_valid;

/// Bytes that name their offset: each 8-byte word is a bijective mix
/// (splitmix64's) of its index, so no two words are alike and a chunk
/// written at the wrong offset, or two chunks swapped, shows.
fn data_of(len: usize) -> Vec<u8> {
    let mut data: Vec<u8> = (0..len.div_ceil(8) as u64)
        .flat_map(|word| {
            let mut z = word.wrapping_add(0x9e37_79b9_7f4a_7c15);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)).to_le_bytes()
        })
        .collect();
    data.truncate(len);
    data
}

/// Writes `data` in writes of `write_size`, with a `pause` after each,
/// through a direct blob writer, commits it as the builder does, and checks
/// the digest; returns the blob's file.
fn put_direct(store: &Store, data: &[u8], write_size: usize, pause: Duration) -> PathBuf {
    let mut writer = store.blob_writer().unwrap();
    writer.write_direct();
    for chunk in data.chunks(write_size) {
        writer.write_all(chunk).unwrap();
        std::thread::sleep(pause);
    }
    let (digest, size) = writer.commit_unsynced(None).unwrap();
    let case = format!("{} bytes in writes of {write_size}", data.len());
    assert_eq!(digest, sha256_bytes(data), "{case}");
    assert_eq!(size, data.len() as u64, "{case}");
    store.root().join("blobs/sha256").join(digest.digest())
}

fn assert_stored(path: &Path, data: &[u8]) {
    let stored = std::fs::read(path).unwrap();
    assert!(
        stored == data,
        "{} bytes: the file differs from the input",
        data.len()
    );
}

#[test]
fn r9_direct_blobs_are_byte_exact() {
    let (_dir, store) = crate::common::temp_store();
    let from = DIRECT_FROM as usize;
    let sizes = [
        0,
        1,
        DIRECT_ALIGN - 1,
        DIRECT_ALIGN,
        DIRECT_ALIGN + 1,
        from - 1,
        from,
        from + 1,
        from + DIRECT_ALIGN - 1,
        from + DIRECT_ALIGN + 1,
        from + DIRECT_CHUNK - 1,
        from + DIRECT_CHUNK,
        from + DIRECT_CHUNK + 1,
        from + 2 * DIRECT_CHUNK + DIRECT_ALIGN,
        // Many times the buffers, so that they are reused.
        from + 24 * DIRECT_CHUNK + 12_345,
    ];
    for size in sizes {
        let data = data_of(size);
        // Odd writes cross the switch to direct writes off a block
        // boundary; a write of a whole chunk and more fills buffers at once.
        for write_size in [1_000_003, DIRECT_CHUNK + DIRECT_ALIGN] {
            let path = put_direct(&store, &data, write_size, Duration::ZERO);
            assert_stored(&path, &data);
        }
    }
    assert_valid(&store);
}

/// The point of it: a big blob leaves at most its buffered head and tail in
/// the page cache. (The store is on the disk the target dir is on: tmpfs
/// data is page cache whatever the flags. The writes pause, as a producer
/// that reads and hashes files does, so that a loaded disk does not make
/// the writer fall back to the page cache.)
#[test]
fn r9_a_direct_blob_takes_no_page_cache() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let store = Store::open(dir.path().join("root")).unwrap();
    let data = data_of(48 << 20);
    let path = put_direct(&store, &data, 1 << 20, Duration::from_millis(2));
    let out = Command::new("fincore")
        .args(["--bytes", "--noheadings", "--output", "RES"])
        .arg(&path)
        .output()
        .expect("fincore (util-linux) runs");
    assert!(out.status.success(), "fincore failed: {out:?}");
    let cached: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let at_most = DIRECT_FROM + DIRECT_CHUNK as u64;
    assert!(
        cached <= at_most,
        "{cached} bytes of a {} byte direct blob are in the page cache (at most {at_most} expected)",
        data.len()
    );
    assert_stored(&path, &data);
}

/// A mount of `fstype` that is gone when dropped.
struct Mount(tempfile::TempDir);

impl Mount {
    fn new(fstype: &str) -> Mount {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", fstype, "none"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "mount -t {fstype} needs root");
        Mount(dir)
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

/// ramfs refuses `O_DIRECT` (`EINVAL`), tmpfs takes it from Linux 6.6 on:
/// either way the blob is written, through the page cache where it must.
#[test]
fn r9_direct_blobs_on_filesystems_without_direct_io() {
    let ramfs = Mount::new("ramfs");
    let shm = tempfile::tempdir_in("/dev/shm").unwrap();
    let data = data_of(DIRECT_FROM as usize + 3 * DIRECT_CHUNK + 7);
    for root in [ramfs.0.path(), shm.path()] {
        let store = Store::open(root.join("root")).unwrap();
        let path = put_direct(&store, &data, 1_000_003, Duration::ZERO);
        assert_stored(&path, &data);
        assert_valid(&store);
    }
}

/// The descriptors this process holds on `dir` and the files in it. Other
/// tests' stores are elsewhere, so tests running alongside do not count.
fn descriptors_in(dir: &Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter(|target| target.starts_with(dir))
        .count()
}

fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != "leases")
        .collect()
}

#[test]
fn r9_a_dropped_direct_writer_leaves_no_temp_file_nor_thread() {
    let (_dir, store) = crate::common::temp_store();
    let data = data_of(DIRECT_FROM as usize + 6 * DIRECT_CHUNK + 1);
    // The session's own (its lock, its leases), open all along.
    let session = descriptors_in(store.tmp_dir());
    let mut writer = store.blob_writer().unwrap();
    writer.write_direct();
    writer.write_all(&data).unwrap();
    assert_eq!(
        descriptors_in(store.tmp_dir()) - session,
        2,
        "a big blob is written by a thread, on a descriptor of its own"
    );
    drop(writer);
    assert_eq!(temp_files(store.tmp_dir()), Vec::<String>::new());
    assert_eq!(
        descriptors_in(store.tmp_dir()),
        session,
        "the writer's thread outlived it"
    );
    assert_valid(&store);
}
