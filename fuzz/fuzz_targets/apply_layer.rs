//! Layer apply on arbitrary streams (compressed or not, detected as a real
//! layer is), in both whiteout modes, into a fresh root whose neighbours
//! are watched. Checked:
//! - no panic;
//! - nothing outside the root changes, whatever the layer holds: the root
//!   starts with a relative and an absolute symlink aimed at a sibling
//!   directory `outside/` holding one file, and afterwards `outside/` must
//!   hold exactly that file with its content, and the root's parent exactly
//!   `root` and `outside`.
//!
//! The first input byte picks the whiteout mode and ownership; the rest is
//! the layer. Run it where a bug cannot harm the host: as root inside a
//! mount namespace whose `/` is read-only and whose TMPDIR is a tmpfs
//! (`fuzz/run-sandboxed` does this). Crashes are kept in
//! testdata/fuzz/apply_layer/.
#![no_main]

use std::fs;
use std::path::Path;

use hoist_store::extract::{ApplyOptions, WhiteoutMode, apply_layer};
use libfuzzer_sys::fuzz_target;

const CANARY: &[u8] = b"outside the root";

fn check_outside(parent: &Path) {
    let mut names: Vec<_> = fs::read_dir(parent)
        .expect("listing the root's parent")
        .map(|e| e.expect("reading the root's parent").file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["outside", "root"], "something was created next to the root");
    let outside: Vec<_> = fs::read_dir(parent.join("outside"))
        .expect("listing outside/")
        .map(|e| e.expect("reading outside/").file_name())
        .collect();
    assert_eq!(outside, ["canary"], "something was created outside the root");
    let meta = fs::symlink_metadata(parent.join("outside/canary")).expect("stat of the canary");
    assert!(meta.is_file(), "the canary was replaced");
    assert_eq!(fs::read(parent.join("outside/canary")).expect("reading the canary"), CANARY);
}

fuzz_target!(|input: &[u8]| {
    let Some((&flags, layer)) = input.split_first() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("a scratch directory");
    let parent = tmp.path();
    let root = parent.join("root");
    let outside = parent.join("outside");
    fs::create_dir(&root).expect("mkdir root");
    fs::create_dir(&outside).expect("mkdir outside");
    fs::write(outside.join("canary"), CANARY).expect("writing the canary");
    std::os::unix::fs::symlink("../outside", root.join("rel")).expect("symlink rel");
    std::os::unix::fs::symlink(&outside, root.join("abs")).expect("symlink abs");
    fs::create_dir(root.join("dir")).expect("mkdir dir");
    fs::write(root.join("dir/file"), b"lower").expect("writing dir/file");

    let opts = ApplyOptions {
        whiteouts: if flags & 1 == 0 {
            WhiteoutMode::Overlay
        } else {
            WhiteoutMode::Apply
        },
        userxattr: flags & 2 != 0,
        chown: flags & 4 != 0,
        devices: false,
        strict_xattrs: flags & 8 != 0,
        max_uncompressed: 8 << 20,
        max_ratio: 512,
        ratio_grace: 1 << 20,
    };
    let _ = apply_layer(layer, &root, &opts);
    check_outside(parent);
});
