//! Credentials, token auth and hostile registries (issue 7): the token
//! server and the fault proxy checked against the real registry and
//! skopeo, then hoist's own login, pull and push through them.

use std::process::Command;

use super::fault_proxy::{Fault, FaultProxy, Target};
use super::harness::{TestRegistry, skopeo};
use super::token_server::{TokenServer, TokenUser};
use crate::common::Hoist;

const PUSHER_PASSWORD: &str = "pusher-s3cret-pw";
const PULLER_PASSWORD: &str = "puller-s3cret-pw";

/// A registry behind the token server, with a user who may push and one
/// who may only pull.
fn token_registry() -> (TokenServer, TestRegistry) {
    let tokens = TokenServer::start(vec![
        TokenUser::everywhere("pusher", PUSHER_PASSWORD, "pull,push"),
        TokenUser::everywhere("puller", PULLER_PASSWORD, "pull"),
    ]);
    let registry = TestRegistry::start(tokens.registry_options());
    (tokens, registry)
}

fn skopeo_status(args: &[&str]) -> std::process::Output {
    Command::new("skopeo")
        .args(args)
        .output()
        .expect("running skopeo (install Debian's skopeo)")
}

#[test]
fn r7_token_server_scopes_hold_against_the_real_registry() {
    let (tokens, registry) = token_registry();
    assert_eq!(registry.get_status("/v2/"), 401);
    let hoist = Hoist::with_busybox();
    let src = format!("oci:{}:busybox:latest", hoist.root().display());
    let dest = format!("docker://{}/team/busybox:1", registry.host());

    let refused = skopeo_status(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        &format!("puller:{PULLER_PASSWORD}"),
        &src,
        &dest,
    ]);
    assert!(
        !refused.status.success(),
        "a pull-only user must not push:\n{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let wrong = skopeo_status(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        "pusher:wrong",
        &src,
        &dest,
    ]);
    assert!(!wrong.status.success(), "a wrong password must be refused");

    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        &format!("pusher:{PUSHER_PASSWORD}"),
        &src,
        &dest,
    ]);
    let out = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--creds",
        &format!("puller:{PULLER_PASSWORD}"),
        &dest,
    ]);
    assert!(out.contains("\"Digest\""), "{out}");
    let counts = tokens.counts();
    assert!(counts.basic_get >= 2, "{counts:?}");
    assert!(counts.refused >= 1, "the wrong password: {counts:?}");
    assert!(
        counts
            .scopes
            .iter()
            .any(|s| s == "repository:team/busybox:pull,push"),
        "{counts:?}"
    );
}

#[test]
fn r7_fault_proxy_corrupts_and_fails_requests_on_demand() {
    let registry = TestRegistry::anonymous();
    let hoist = Hoist::with_busybox();
    let src = format!("oci:{}:busybox:latest", hoist.root().display());
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &src,
        &format!("docker://{}/lib/busybox:1", registry.host()),
    ]);
    let proxy = FaultProxy::start(&registry.host());
    let through = format!("docker://{}/lib/busybox:1", proxy.host());
    let out_dir = tempfile::tempdir().unwrap();

    // A clean copy through the proxy works.
    let dir_dest = format!("dir:{}", out_dir.path().join("clean").display());
    skopeo(&["copy", "--src-tls-verify=false", &through, &dir_dest]);

    // A corrupted layer is refused by skopeo's digest check.
    proxy.inject_always(Target::BlobGet, Fault::Corrupt);
    let dir_dest = format!("dir:{}", out_dir.path().join("corrupt").display());
    let corrupt = skopeo_status(&["copy", "--src-tls-verify=false", &through, &dir_dest]);
    assert!(
        !corrupt.status.success(),
        "a corrupted blob must be refused"
    );
    let stderr = String::from_utf8_lossy(&corrupt.stderr);
    assert!(
        stderr.to_lowercase().contains("digest did not match"),
        "{stderr}"
    );

    let log = proxy.log();
    assert!(
        log.iter()
            .any(|l| l.fault == Some(Fault::Corrupt) && l.status == 200),
        "{log:?}"
    );
    assert!(log.iter().all(|l| !l.proxied), "{log:?}");
}
