//! What a machine crash costs a build's layers, which reach the disk after
//! the build returns (issue 9): the crash is simulated by moving this
//! boot's records under another boot ID and zeroing a layer, as a crash
//! before write-back leaves it.

use std::path::Path;

use crate::common::{Hoist, dockerfile_context};

const DOCKERFILE: &str = "FROM busybox\nRUN echo lost > /lost\nRUN echo above > /above\n";

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap()
        .trim()
        .to_owned()
}

/// The blobs recorded as not yet synced in this boot.
fn unsynced_blobs(root: &Path) -> Vec<String> {
    let dir = root.join("hoist/unsynced").join(boot_id()).join("blobs");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn r9_a_layer_lost_in_a_crash_is_built_again() {
    let hoist = Hoist::with_busybox();
    let ctx = dockerfile_context(DOCKERFILE);
    hoist.build(ctx.path(), &["-t", "crashed"]);
    let layers = hoist.inspect("crashed")["RootFS"]["Layers"].clone();
    let layer = |i: usize| {
        layers[i]
            .as_str()
            .unwrap()
            .strip_prefix("sha256:")
            .unwrap()
            .to_owned()
    };
    let (first_run, second_run) = (layer(1), layer(2));
    let mut built = vec![first_run.clone(), second_run.clone()];
    built.sort();
    assert_eq!(
        unsynced_blobs(hoist.root()),
        built,
        "the build's two layers (and nothing imported) are recorded as unsynced"
    );

    // "Crash": the records now belong to an earlier boot, and the first
    // RUN's layer never reached the disk.
    let unsynced = hoist.root().join("hoist/unsynced");
    std::fs::rename(
        unsynced.join(boot_id()),
        unsynced.join("00000000-0000-4000-8000-000000000000"),
    )
    .unwrap();
    let blob = hoist.root().join("blobs/sha256").join(&first_run);
    let len = std::fs::metadata(&blob).unwrap().len();
    std::fs::write(&blob, vec![0u8; len as usize]).unwrap();

    let out = hoist.run(&["images"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "hoist: crashed:latest was lost in a crash before its layers reached the disk; \
             build it again"
        ),
        "{stderr}"
    );
    let images = String::from_utf8_lossy(&out.stdout);
    assert!(!images.contains("crashed"), "{images}");
    assert!(images.contains("busybox"), "{images}");
    assert!(!blob.exists(), "the zeroed layer is removed");
    hoist.assert_fsck_clean();

    // The same build misses on the lost step, and rebuilds it.
    let log = hoist.build(ctx.path(), &["-t", "crashed"]);
    let step = log
        .lines()
        .find_map(|l| l.strip_suffix(" RUN echo lost > /lost"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no header for the first RUN:\n{log}"));
    assert!(!log.contains(&format!("{step} CACHED")), "{log}");
    assert_eq!(
        hoist.exec("crashed", &["cat", "/lost", "/above"]),
        "lost\nabove\n"
    );
    hoist.assert_fsck_clean();
}
