//! Helpers shared by the store's integration tests.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command};

use flate2::Compression;
use flate2::write::GzEncoder;
use hoist_store::digest::{DiffId, HashingWriter};
use hoist_store::{Image, Store};
use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, ImageConfiguration, ImageConfigurationBuilder, MediaType, Os,
    RootFsBuilder,
};

/// A fresh store in a temp dir.
pub fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("root")).unwrap();
    (dir, store)
}

/// An uncompressed tar with the given regular files.
pub fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o755);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, name, *data).unwrap();
    }
    builder.into_inner().unwrap()
}

/// Stores a gzip layer of `files`; returns its descriptor and DiffID.
pub fn put_layer(store: &Store, files: &[(&str, &[u8])]) -> (Descriptor, DiffId) {
    let tar = tar_of(files);
    let writer = store.blob_writer().unwrap();
    let mut hashing = HashingWriter::new(GzEncoder::new(writer, Compression::fast()));
    hashing.write_all(&tar).unwrap();
    let (gz, diff_id, _) = hashing.finish().unwrap();
    let writer = gz.finish().unwrap();
    let (digest, size) = writer.commit(None).unwrap();
    (
        Descriptor::new(MediaType::ImageLayerGzip, size, digest),
        DiffId::new(&diff_id),
    )
}

/// A config over `diff_ids` with a distinguishing label.
pub fn config(diff_ids: &[DiffId], label: &str) -> ImageConfiguration {
    let mut labels = std::collections::HashMap::new();
    labels.insert("test".to_owned(), label.to_owned());
    labels.insert("other".to_owned(), "x".to_owned());
    ImageConfigurationBuilder::default()
        .architecture(Arch::Amd64)
        .os(Os::Linux)
        .created("2024-01-02T03:04:05Z")
        .config(
            ConfigBuilder::default()
                .cmd(vec!["/hello".to_owned()])
                .env(vec!["PATH=/bin".to_owned()])
                .labels(labels)
                .build()
                .unwrap(),
        )
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(diff_ids.iter().map(|d| d.to_string()).collect::<Vec<_>>())
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

/// A one-layer image whose content depends on `seed`.
pub fn tiny_image(store: &Store, seed: &str) -> Image {
    let (layer, diff_id) = put_layer(store, &[("hello", seed.as_bytes()), ("etc/seed", b"x")]);
    store
        .put_image(&config(&[diff_id], seed), &[layer])
        .unwrap()
}

/// Validates the store after a write: fsck must be clean.
pub fn assert_valid(store: &Store) {
    let report = store.fsck(false).unwrap();
    assert!(
        report.is_clean(),
        "store at {} has problems: {:#?}",
        store.root().display(),
        report.problems
    );
}

/// Runs a test of this binary as a child process with `env` set; the test
/// function checks the variable and does the child's work.
pub fn spawn_child(test: &str, env: &[(&str, &str)]) -> Child {
    // /proc/self/exe still works when a concurrent `cargo test` has
    // replaced the binary on disk (the shared target dir).
    let mut command = Command::new("/proc/self/exe");
    // The helpers are #[ignore]d so that they never count as tests.
    command.args([
        "--exact",
        test,
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    for (k, v) in env {
        command.env(k, v);
    }
    command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit());
    command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start this test binary as a child: {e}"))
}

/// A small xorshift PRNG (no rand crate), seeded from the clock and pid.
pub struct Rng(u64);

impl Rng {
    pub fn new() -> Rng {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        Rng(t ^ (u64::from(std::process::id()) << 32) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Runs an external tool, panicking loudly (never skipping) when it is
/// missing or fails.
pub fn run_tool(program: &str, args: &[&str], cwd: Option<&Path>) -> String {
    let mut command = Command::new(program);
    command.args(args);
    if let Some(cwd) = cwd {
        command.current_dir(cwd);
    }
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{program} is required for this test and could not run: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// [`run_tool`] in the current directory.
pub fn tool(program: &str, args: &[&str]) -> String {
    run_tool(program, args, None)
}
