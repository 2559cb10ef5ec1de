//! Credentials, token auth and hostile registries (issue 7): the token
//! server and the fault proxy checked against the real registry and
//! skopeo, then hoist's own login, pull and push through them.

use std::process::Command;

use super::fault_proxy::{Fault, FaultProxy, Logged, Target};
use super::harness::{RegistryOptions, TestRegistry, skopeo};
use super::http::{Server, respond};
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

/// A client environment of its own: a store, a `DOCKER_CONFIG` directory
/// and an empty hoist config, so no test sees the machine's credentials.
struct Client {
    hoist: Hoist,
    docker_config: tempfile::TempDir,
    /// Directories put first on `PATH` (credential helpers).
    path_prefix: Vec<std::path::PathBuf>,
    env: Vec<(String, String)>,
}

impl Client {
    fn new(hoist: Hoist) -> Client {
        let docker_config = tempfile::tempdir().unwrap();
        std::fs::write(docker_config.path().join("hoist.json"), "{}").unwrap();
        Client {
            hoist,
            docker_config,
            path_prefix: Vec::new(),
            env: Vec::new(),
        }
    }

    fn config_path(&self) -> std::path::PathBuf {
        self.docker_config.path().join("config.json")
    }

    fn write_config(&self, config: &serde_json::Value) {
        std::fs::write(self.config_path(), config.to_string()).unwrap();
    }

    fn read_config(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.config_path()).unwrap()).unwrap()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.hoist.command(args);
        cmd.env("DOCKER_CONFIG", self.docker_config.path())
            .env("HOIST_CONFIG", self.docker_config.path().join("hoist.json"))
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .env_remove("ALL_PROXY")
            .env_remove("NO_PROXY")
            .env_remove("no_proxy");
        if !self.path_prefix.is_empty() {
            let mut paths = self.path_prefix.clone();
            paths.extend(std::env::split_paths(
                &std::env::var_os("PATH").unwrap_or_default(),
            ));
            cmd.env("PATH", std::env::join_paths(paths).unwrap());
        }
        for (key, value) in &self.env {
            cmd.env(key, value);
        }
        cmd
    }

    /// Runs hoist; returns (success, stdout, stderr).
    fn run(&self, args: &[&str]) -> (bool, String, String) {
        self.run_with_stdin(args, None)
    }

    fn run_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        let mut cmd = self.command(args);
        if stdin.is_some() {
            cmd.stdin(std::process::Stdio::piped());
        }
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        if let Some(text) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn ok(&self, args: &[&str]) -> (String, String) {
        let (ok, stdout, stderr) = self.run(args);
        assert!(
            ok,
            "hoist {args:?} failed:\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
        (stdout, stderr)
    }

    fn fails(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.run(args);
        assert!(
            !ok,
            "hoist {args:?} should have failed:\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
        stderr
    }

    /// `hoist fsck` finds nothing wrong.
    fn assert_store_clean(&self) {
        let (stdout, _) = self.ok(&["fsck"]);
        assert!(stdout.contains(": 0 problems"), "{stdout}");
    }
}

/// Fails the test if `secret` shows anywhere in `texts`.
fn assert_no_secret(secret: &str, texts: &[&str]) {
    for text in texts {
        assert!(
            !text.contains(secret),
            "a secret leaked into the output:\n{text}"
        );
    }
}

/// Pushes the busybox base to `reference` on a registry with skopeo (the
/// independent tool); `creds` is `user:password` when the registry needs it.
fn seed_image(reference: &str, creds: Option<&str>) {
    let hoist = Hoist::with_busybox();
    let src = format!("oci:{}:busybox:latest", hoist.root().display());
    let dest = format!("docker://{reference}");
    let mut args = vec!["copy", "--dest-tls-verify=false"];
    if let Some(creds) = creds {
        args.extend_from_slice(&["--dest-creds", creds]);
    }
    args.extend_from_slice(&[&src, &dest]);
    skopeo(&args);
}

/// The layer digests of `reference` as skopeo reads them.
fn layer_digests(reference: &str, creds: Option<&str>) -> Vec<String> {
    let target = format!("docker://{reference}");
    let mut args = vec!["inspect", "--tls-verify=false"];
    if let Some(creds) = creds {
        args.extend_from_slice(&["--creds", creds]);
    }
    args.push(&target);
    let out = skopeo(&args);
    let value: serde_json::Value = serde_json::from_str(&out).unwrap();
    value["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_owned())
        .collect()
}

fn basic_auth(user: &str, password: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

const ALICE_PASSWORD: &str = "alice-s3cret-pw";

#[test]
fn r7_login_checks_then_saves_push_pull_logout() {
    let registry = TestRegistry::start(RegistryOptions::htpasswd("alice", ALICE_PASSWORD));
    let host = registry.host();
    let client = Client::new(Hoist::with_busybox());

    // A wrong password: a clear error, nothing written.
    let (ok, stdout, stderr) = client.run_with_stdin(
        &["login", "-u", "alice", "--password-stdin", &host],
        Some("wrong-s3cret\n"),
    );
    assert!(!ok, "a wrong password must fail:\n{stdout}\n{stderr}");
    assert!(
        stderr.contains(&format!("logging in to {host}")),
        "{stderr}"
    );
    assert!(stderr.to_lowercase().contains("unauthorized"), "{stderr}");
    assert_no_secret("wrong-s3cret", &[&stdout, &stderr]);
    assert!(!client.config_path().exists(), "nothing may be written");

    // --password works with Docker's warning.
    let (stdout, stderr) = client.ok(&["login", "-u", "alice", "-p", ALICE_PASSWORD, &host]);
    assert_eq!(stdout, "Login Succeeded\n");
    assert!(
        stderr.contains("WARNING! Using --password via the CLI is insecure. Use --password-stdin."),
        "{stderr}"
    );
    let config = client.read_config();
    assert_eq!(
        config["auths"][&host]["auth"],
        basic_auth("alice", ALICE_PASSWORD),
        "{config}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(client.config_path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // A login with no credentials given checks the saved ones.
    let (stdout, stderr) = client.ok(&["login", &host]);
    assert_eq!(stdout, "Login Succeeded\n");
    assert!(
        stderr.contains("Authenticating with existing credentials... [Username: alice]"),
        "{stderr}"
    );

    // The saved credentials push and pull.
    let image = format!("{host}/team/busybox:1");
    let mut outputs = vec![stdout, stderr];
    client.ok(&["tag", "busybox:latest", &image]);
    let (stdout, stderr) = client.ok(&["push", &image]);
    assert!(stdout.contains("1: digest: sha256:") || stderr.contains("1: digest: sha256:"));
    outputs.extend([stdout, stderr]);
    let puller = Client::new(Hoist::new());
    std::fs::copy(client.config_path(), puller.config_path()).unwrap();
    let (stdout, stderr) = puller.ok(&["pull", &image]);
    outputs.extend([stdout, stderr]);
    puller.assert_store_clean();
    assert_eq!(
        layer_digests(&image, Some(&format!("alice:{ALICE_PASSWORD}"))).len(),
        1
    );

    // Logout removes them; a second logout says so; pulls then fail.
    let (stdout, _) = puller.ok(&["logout", &host]);
    assert_eq!(stdout, format!("Removing login credentials for {host}\n"));
    let (stdout, _) = puller.ok(&["logout", &host]);
    assert_eq!(stdout, format!("Not logged in to {host}\n"));
    assert!(puller.read_config()["auths"].get(&host).is_none());
    let stderr = puller.fails(&["pull", &format!("{host}/team/busybox:1")]);
    outputs.push(stderr);
    let all: Vec<&str> = outputs.iter().map(String::as_str).collect();
    assert_no_secret(ALICE_PASSWORD, &all);
    assert_no_secret(&basic_auth("alice", ALICE_PASSWORD), &all);
}

#[test]
fn r7_credentials_from_config_json_auths() {
    let registry = TestRegistry::start(RegistryOptions::htpasswd("alice", ALICE_PASSWORD));
    let host = registry.host();
    let image = format!("{host}/lib/busybox:1");
    seed_image(&image, Some(&format!("alice:{ALICE_PASSWORD}")));

    let client = Client::new(Hoist::new());
    let stderr = client.fails(&["pull", &image]);
    assert!(stderr.to_lowercase().contains("unauthorized"), "{stderr}");
    // A key with a scheme and path matches its host, as in Docker.
    client.write_config(&serde_json::json!({
        "auths": {format!("http://{host}/v1/"): {"auth": basic_auth("alice", ALICE_PASSWORD)}},
        "psFormat": "kept",
    }));
    let (stdout, stderr) = client.ok(&["pull", &image]);
    assert_no_secret(ALICE_PASSWORD, &[&stdout, &stderr]);
    client.assert_store_clean();

    // username/password fields work too.
    let other = Client::new(Hoist::new());
    other.write_config(&serde_json::json!({
        "auths": {&host: {"username": "alice", "password": ALICE_PASSWORD}},
    }));
    other.ok(&["pull", &image]);
}

/// A `docker-credential-hoisttest` that answers `get` for one server with
/// fixed credentials, keeps what `store` sends in a file, and logs each
/// action it is asked for.
fn helper_script(dir: &std::path::Path, server: &str, user: &str, secret: &str) {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join("docker-credential-hoisttest");
    std::fs::write(
        &script,
        format!(
            r#"#!/bin/sh
dir={dir}
read -r input || true
echo "$1" >> "$dir/actions"
case "$1" in
get)
  if [ -f "$dir/stored" ]; then cat "$dir/stored"; exit 0; fi
  if [ "$input" = "{server}" ]; then
    printf '{{"ServerURL":"%s","Username":"{user}","Secret":"{secret}"}}' "$input"; exit 0
  fi
  echo "credentials not found in native keychain"; exit 1 ;;
store) printf '%s' "$input" > "$dir/stored" ;;
erase) rm -f "$dir/stored" ;;
*) echo "unknown action"; exit 1 ;;
esac
"#,
            dir = dir.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn r7_credentials_from_a_credential_helper() {
    let registry = TestRegistry::start(RegistryOptions::htpasswd("alice", ALICE_PASSWORD));
    let host = registry.host();
    let image = format!("{host}/lib/busybox:1");
    seed_image(&image, Some(&format!("alice:{ALICE_PASSWORD}")));

    let bin = tempfile::tempdir().unwrap();
    helper_script(bin.path(), &host, "alice", ALICE_PASSWORD);
    let mut client = Client::new(Hoist::new());
    client.path_prefix.push(bin.path().to_owned());
    client.write_config(&serde_json::json!({"credsStore": "hoisttest"}));
    let (stdout, stderr) = client.ok(&["pull", &image]);
    assert_no_secret(ALICE_PASSWORD, &[&stdout, &stderr]);
    let actions = std::fs::read_to_string(bin.path().join("actions")).unwrap();
    assert!(actions.lines().any(|a| a == "get"), "{actions}");

    // credHelpers names the helper per host, over credsStore (which here
    // names a helper that does not exist).
    let mut per_host = Client::new(Hoist::new());
    per_host.path_prefix.push(bin.path().to_owned());
    per_host.write_config(&serde_json::json!({
        "credsStore": "not-installed",
        "credHelpers": {&host: "hoisttest"},
    }));
    per_host.ok(&["pull", &image]);
    per_host.write_config(&serde_json::json!({"credsStore": "not-installed"}));
    let stderr = per_host.fails(&["pull", &image]);
    assert!(
        stderr.contains("docker-credential-not-installed is not on PATH"),
        "{stderr}"
    );

    // login stores through the helper: the file keeps no secret.
    let (ok, stdout, stderr) = client.run_with_stdin(
        &["login", "-u", "alice", "--password-stdin", &host],
        Some(ALICE_PASSWORD),
    );
    assert!(ok, "{stdout}\n{stderr}");
    assert_eq!(stdout, "Login Succeeded\n");
    assert!(!stderr.contains("unencrypted"), "{stderr}");
    let text = std::fs::read_to_string(client.config_path()).unwrap();
    assert_no_secret(ALICE_PASSWORD, &[&text]);
    let stored = std::fs::read_to_string(bin.path().join("stored")).unwrap();
    assert!(
        stored.contains(ALICE_PASSWORD) && stored.contains(&host),
        "{stored}"
    );

    // A helper for another host keeps nothing of this one's: the secret is
    // in the file, and login says so.
    let elsewhere = Client::new(Hoist::new());
    elsewhere.write_config(&serde_json::json!({"credHelpers": {"other.example": "hoisttest"}}));
    let (ok, stdout, stderr) = elsewhere.run_with_stdin(
        &["login", "-u", "alice", "--password-stdin", &host],
        Some(ALICE_PASSWORD),
    );
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stderr.contains("stored unencrypted"), "{stderr}");
    assert!(elsewhere.read_config()["auths"][&host]["auth"].is_string());

    // logout erases in the helper.
    let (stdout, _) = client.ok(&["logout", &host]);
    assert_eq!(stdout, format!("Removing login credentials for {host}\n"));
    assert!(!bin.path().join("stored").exists());
    let actions = std::fs::read_to_string(bin.path().join("actions")).unwrap();
    assert!(actions.lines().any(|a| a == "erase"), "{actions}");
}

/// Only a 200 on `/v2/` proves a login, as Docker's login has it: a
/// registry answering 404 there is refused and nothing is saved.
#[test]
fn r7_login_needs_200_on_v2() {
    let server = Server::start(|_, mut stream| {
        respond(&mut stream, 404, &[], b"").unwrap();
    });
    let client = Client::new(Hoist::new());
    let (ok, stdout, stderr) = client.run_with_stdin(
        &["login", "-u", "alice", "--password-stdin", &server.host()],
        Some(ALICE_PASSWORD),
    );
    assert!(!ok, "{stdout}\n{stderr}");
    assert!(stderr.contains("unexpected status 404"), "{stderr}");
    assert_no_secret(ALICE_PASSWORD, &[&stdout, &stderr]);
    assert!(!client.config_path().exists());
}

#[test]
fn r7_token_auth_pull_push_and_scopes() {
    let (tokens, registry) = token_registry();
    let host = registry.host();
    let image = format!("{host}/team/app:1");

    let pusher = Client::new(Hoist::with_busybox());
    pusher.write_config(&serde_json::json!({
        "auths": {&host: {"auth": basic_auth("pusher", PUSHER_PASSWORD)}},
    }));
    pusher.ok(&["tag", "busybox:latest", &image]);
    let (stdout, stderr) = pusher.ok(&["push", &image]);
    assert_no_secret(PUSHER_PASSWORD, &[&stdout, &stderr]);
    assert!(
        tokens
            .counts()
            .scopes
            .iter()
            .any(|s| s.starts_with("repository:team/app:") && s.contains("push")),
        "{:?}",
        tokens.counts()
    );

    // hoist login goes through the token server: a wrong password is
    // refused there and nothing is written.
    let puller = Client::new(Hoist::with_busybox());
    let (ok, stdout, stderr) = puller.run_with_stdin(
        &["login", "-u", "puller", "--password-stdin", &host],
        Some("not-the-s3cret\n"),
    );
    assert!(!ok, "{stdout}\n{stderr}");
    assert!(stderr.to_lowercase().contains("unauthorized"), "{stderr}");
    assert_no_secret("not-the-s3cret", &[&stdout, &stderr]);
    assert!(!puller.config_path().exists());
    let (ok, stdout, stderr) = puller.run_with_stdin(
        &["login", "-u", "puller", "--password-stdin", &host],
        Some(&format!("{PULLER_PASSWORD}\n")),
    );
    assert!(ok, "{stdout}\n{stderr}");
    assert_eq!(stdout, "Login Succeeded\n");
    // The token server issues refresh tokens: the identity token is saved,
    // never the password, and the pull uses the OAuth2 POST.
    let saved = puller.read_config()["auths"][&host].clone();
    assert_eq!(saved["auth"], basic_auth("puller", ""), "{saved}");
    let identity = saved["identitytoken"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!identity.is_empty(), "{saved}");
    let text = std::fs::read_to_string(puller.config_path()).unwrap();
    assert_no_secret(PULLER_PASSWORD, &[&text, &stdout, &stderr]);
    assert!(stderr.contains("stored unencrypted"), "{stderr}");
    let posts = tokens.counts().refresh_post;
    let (stdout, stderr) = puller.ok(&["pull", &image]);
    assert!(
        tokens.counts().refresh_post > posts,
        "{:?}",
        tokens.counts()
    );
    assert_no_secret(PULLER_PASSWORD, &[&stdout, &stderr]);
    puller.assert_store_clean();

    // A pull-only user cannot push: a clear error naming the repository.
    let denied = format!("{host}/team/other:1");
    puller.ok(&["tag", "busybox:latest", &denied]);
    let stderr = puller.fails(&["push", &denied]);
    assert!(
        stderr.contains("denied: requested access to the resource is denied"),
        "{stderr}"
    );
    assert!(stderr.contains("team/other"), "{stderr}");
    assert_no_secret(PULLER_PASSWORD, &[&stderr]);
    assert!(tokens.counts().basic_get >= 2, "{:?}", tokens.counts());
}

#[test]
fn r7_identity_token_uses_the_oauth2_refresh_flow() {
    let (tokens, registry) = token_registry();
    let host = registry.host();
    let image = format!("{host}/team/app:1");
    seed_image(&image, Some(&format!("pusher:{PUSHER_PASSWORD}")));
    let before = tokens.counts();

    let refresh = tokens.issue_refresh_token("puller");
    let client = Client::new(Hoist::new());
    client.write_config(&serde_json::json!({
        "auths": {&host: {"auth": basic_auth("puller", ""), "identitytoken": refresh}},
    }));
    let (stdout, stderr) = client.ok(&["pull", &image]);
    assert_no_secret(&refresh, &[&stdout, &stderr]);
    let after = tokens.counts();
    assert!(after.refresh_post > before.refresh_post, "{after:?}");
    assert_eq!(after.basic_get, before.basic_get, "no Basic GET: {after:?}");
    client.assert_store_clean();

    // A pusher's identity token pushes too (push and pull scopes in one
    // token request, through the same POST).
    let refresh = tokens.issue_refresh_token("pusher");
    let pusher = Client::new(Hoist::with_busybox());
    pusher.write_config(&serde_json::json!({
        "auths": {&host: {"auth": basic_auth("pusher", ""), "identitytoken": refresh}},
    }));
    let target = format!("{host}/team/pushed:1");
    pusher.ok(&["tag", "busybox:latest", &target]);
    let before = tokens.counts();
    let (stdout, stderr) = pusher.ok(&["push", &target]);
    assert_no_secret(&refresh, &[&stdout, &stderr]);
    let after = tokens.counts();
    assert!(after.refresh_post > before.refresh_post, "{after:?}");
    assert_eq!(after.basic_get, before.basic_get, "{after:?}");
    assert_eq!(
        layer_digests(&target, Some(&format!("puller:{PULLER_PASSWORD}"))).len(),
        1
    );

    // An unknown identity token is refused, and not shown.
    let other = Client::new(Hoist::new());
    other.write_config(&serde_json::json!({
        "auths": {&host: {"identitytoken": "bogus-refresh-s3cret"}},
    }));
    let stderr = other.fails(&["pull", &image]);
    assert_no_secret("bogus-refresh-s3cret", &[&stderr]);
}

/// An anonymous registry holding `lib/busybox:1`, a fault proxy in front
/// of it, and the layer's digest.
fn faulty_registry() -> (TestRegistry, FaultProxy, String) {
    let registry = TestRegistry::anonymous();
    let image = format!("{}/lib/busybox:1", registry.host());
    seed_image(&image, None);
    let layers = layer_digests(&image, None);
    let proxy = FaultProxy::start(&registry.host());
    (registry, proxy, layers[0].clone())
}

fn blob_in_store(client: &Client, digest: &str) -> bool {
    let hex = digest.strip_prefix("sha256:").unwrap();
    client.hoist.root().join("blobs/sha256").join(hex).exists()
}

#[test]
fn r7_corrupted_blob_is_refused_and_nothing_stored() {
    let (_registry, proxy, layer) = faulty_registry();
    proxy.inject_always(Target::BlobGetOf(layer.clone()), Fault::Corrupt);
    let client = Client::new(Hoist::new());
    let image = format!("{}/lib/busybox:1", proxy.host());
    let stderr = client.fails(&["pull", &image]);
    assert!(
        stderr.contains(&format!("blob {layer} is corrupt")),
        "the error names the blob: {stderr}"
    );
    assert!(!blob_in_store(&client, &layer));
    let (images, _) = client.ok(&["images"]);
    assert!(!images.contains("lib/busybox"), "{images}");
    client.assert_store_clean();
}

#[test]
fn r7_429_and_500_are_retried() {
    let (_registry, proxy, layer) = faulty_registry();
    proxy.inject(Target::Manifest, Fault::ServerError, 1);
    proxy.inject(
        Target::BlobGetOf(layer.clone()),
        Fault::TooManyRequests { retry_after: 1 },
        1,
    );
    let client = Client::new(Hoist::new());
    let image = format!("{}/lib/busybox:1", proxy.host());
    client.ok(&["pull", &image]);
    assert!(blob_in_store(&client, &layer));
    client.assert_store_clean();
    let log = proxy.log();
    let statuses = |fragment: &str| -> Vec<u16> {
        log.iter()
            .filter(|l| l.path.contains(fragment) && l.method == "GET")
            .map(|l| l.status)
            .collect()
    };
    let blob = statuses(&layer);
    assert_eq!(blob.first(), Some(&429), "{log:#?}");
    assert_eq!(blob.last(), Some(&200), "{log:#?}");
    assert!(
        log.iter()
            .any(|l| l.path.contains("/manifests/") && l.status == 500),
        "{log:#?}"
    );
    assert!(
        log.iter()
            .rfind(|l| l.path.contains("/manifests/"))
            .map(|l| l.status)
            == Some(200),
        "{log:#?}"
    );
}

/// Pulls through the fault proxy with `fault` on the first GET of a layer;
/// the pull succeeds, the layer is stored, the store stays sound. Returns
/// the GETs of that layer, which must be two: the faulty one and a retry.
fn pull_through_one_blob_fault(fault: Fault) -> Vec<Logged> {
    let (_registry, proxy, layer) = faulty_registry();
    proxy.inject(Target::BlobGetOf(layer.clone()), fault.clone(), 1);
    let client = Client::new(Hoist::new());
    client.ok(&["pull", &format!("{}/lib/busybox:1", proxy.host())]);
    assert!(blob_in_store(&client, &layer));
    client.assert_store_clean();
    let gets: Vec<_> = proxy
        .log()
        .into_iter()
        .filter(|l| l.path.ends_with(&layer) && l.method == "GET")
        .collect();
    assert_eq!(gets.len(), 2, "{gets:#?}");
    assert_eq!(gets[0].fault, Some(fault));
    gets
}

#[test]
fn r7_truncated_blob_resumes_with_range() {
    let gets = pull_through_one_blob_fault(Fault::Truncate);
    let range = gets[1].range.as_deref().unwrap_or("");
    let from: u64 = range
        .strip_prefix("bytes=")
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(from > 0, "the retry resumes where it stopped: {gets:#?}");
    assert_eq!(gets[1].status, 206, "{gets:#?}");
}

#[test]
fn r7_dropped_connection_mid_blob_is_retried() {
    let gets = pull_through_one_blob_fault(Fault::Drop);
    assert!(matches!(gets[1].status, 200 | 206), "{gets:#?}");
}

#[test]
fn r7_no_proxy_bypasses_the_proxy_for_loopback() {
    let registry = TestRegistry::anonymous();
    let image = format!("{}/lib/busybox:1", registry.host());
    seed_image(&image, None);
    let port = registry.host().rsplit_once(':').unwrap().1.to_owned();

    // A proxy that fails every request: loopback registries, by address or
    // as localhost, never go through it, with no NO_PROXY set (as Docker).
    let failing = FaultProxy::start(&registry.host());
    failing.inject_always(Target::Any, Fault::ServerError);
    for host in [registry.host(), format!("localhost:{port}")] {
        let mut client = Client::new(Hoist::new());
        for name in ["HTTP_PROXY", "HTTPS_PROXY"] {
            client
                .env
                .push((name.into(), format!("http://{}", failing.host())));
        }
        client.ok(&["pull", &format!("{host}/lib/busybox:1")]);
    }
    assert!(failing.log().is_empty(), "{:#?}", failing.log());

    // Other hosts do go through HTTP_PROXY: a name only the proxy can
    // reach (it forwards everything to the registry).
    let proxy = FaultProxy::start(&registry.host());
    let remote = format!("registry.hoist.test:{port}");
    let mut through = Client::new(Hoist::new());
    through
        .env
        .push(("HTTP_PROXY".into(), format!("http://{}", proxy.host())));
    through.ok(&[
        "pull",
        "--insecure-registry",
        &remote,
        &format!("{remote}/lib/busybox:1"),
    ]);
    let log = proxy.log();
    assert!(!log.is_empty() && log.iter().all(|l| l.proxied), "{log:#?}");

    // And NO_PROXY still takes a host off the proxy.
    let mut bypass = Client::new(Hoist::new());
    bypass
        .env
        .push(("HTTP_PROXY".into(), format!("http://{}", proxy.host())));
    bypass
        .env
        .push(("NO_PROXY".into(), "registry.hoist.test".into()));
    let err = bypass.fails(&[
        "pull",
        "--insecure-registry",
        &remote,
        &format!("{remote}/lib/busybox:1"),
    ]);
    assert!(err.contains("registry.hoist.test"), "{err}");
    assert_eq!(proxy.log().len(), log.len(), "{:#?}", proxy.log());
}

#[test]
fn r7_a_bad_proxy_address_is_named() {
    let mut client = Client::new(Hoist::new());
    client
        .env
        .push(("HTTP_PROXY".into(), "http://[not a proxy".into()));
    let err = client.fails(&["pull", "registry.hoist.test:5000/lib/busybox:1"]);
    assert!(err.contains("HTTP_PROXY: invalid proxy address"), "{err}");
}

#[test]
fn r7_pull_through_mirror_serves_an_image_only_upstream_has() {
    let upstream = TestRegistry::anonymous();
    seed_image(&format!("{}/lib/base:1", upstream.host()), None);
    let mirror = TestRegistry::start(RegistryOptions::mirror_of(&upstream));
    // The client names the image through a proxy that refuses everything,
    // so the pull can only succeed through the mirror.
    let front = FaultProxy::start(&upstream.host());
    front.inject_always(Target::Any, Fault::ServerError);
    let client = Client::new(Hoist::with_busybox());
    std::fs::write(
        client.docker_config.path().join("hoist.json"),
        serde_json::json!({
            "registries": {front.host(): {"mirrors": [mirror.url()]}},
        })
        .to_string(),
    )
    .unwrap();
    let base = format!("{}/lib/base:1", front.host());
    let context =
        crate::common::dockerfile_context(&format!("FROM {base}\nRUN echo built > /built\n"));
    let (ok, stdout, stderr) = client.run(&[
        "build",
        "--progress=plain",
        "-t",
        "mirrored:1",
        context.path().to_str().unwrap(),
    ]);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        front.log().iter().all(|l| !l.path.contains("/blobs/")),
        "blobs came from the mirror: {:#?}",
        front.log()
    );
    assert!(mirror.storage().join("docker/registry/v2/blobs").exists());
    client.assert_store_clean();
}

#[test]
fn r7_credentials_never_follow_a_redirect_to_another_host() {
    // The same image on a registry that needs a password and on an
    // anonymous one standing in for blob storage on another host.
    let registry = TestRegistry::start(RegistryOptions::htpasswd("alice", ALICE_PASSWORD));
    let storage = TestRegistry::anonymous();
    let path = "lib/busybox:1";
    seed_image(
        &format!("{}/{path}", registry.host()),
        Some(&format!("alice:{ALICE_PASSWORD}")),
    );
    seed_image(&format!("{}/{path}", storage.host()), None);
    let layer = layer_digests(&format!("{}/{path}", storage.host()), None)[0].clone();
    let front = FaultProxy::start(&registry.host());
    let other_host = FaultProxy::start(&storage.host());
    front.inject_always(
        Target::BlobGetOf(layer.clone()),
        Fault::RedirectTo(other_host.host()),
    );

    let client = Client::new(Hoist::new());
    client.write_config(&serde_json::json!({
        "auths": {front.host(): {"auth": basic_auth("alice", ALICE_PASSWORD)}},
    }));
    client.ok(&["pull", &format!("{}/{path}", front.host())]);
    client.assert_store_clean();
    let front_log = front.log();
    assert!(
        front_log
            .iter()
            .any(|l| l.path.ends_with(&layer) && l.status == 307 && l.authorized),
        "{front_log:#?}"
    );
    let other_log = other_host.log();
    assert!(
        other_log
            .iter()
            .any(|l| l.path.ends_with(&layer) && l.status == 200),
        "the blob came from the other host: {other_log:#?}"
    );
    assert!(
        other_log.iter().all(|l| !l.authorized),
        "credentials crossed the redirect: {other_log:#?}"
    );
}

#[test]
fn r7_a_401_mid_pull_gets_a_fresh_token() {
    let (tokens, registry) = token_registry();
    let image = format!("{}/team/app:1", registry.host());
    seed_image(&image, Some(&format!("pusher:{PUSHER_PASSWORD}")));
    let layer = layer_digests(&image, Some(&format!("puller:{PULLER_PASSWORD}")))[0].clone();
    let proxy = FaultProxy::start(&registry.host());
    proxy.inject(Target::BlobGetOf(layer.clone()), Fault::Unauthorized, 1);

    let config = serde_json::json!({
        "auths": {proxy.host(): {"auth": basic_auth("puller", PULLER_PASSWORD)}},
    });
    let pull = |client: &Client| -> usize {
        client.write_config(&config);
        let before = tokens.counts().basic_get;
        client.ok(&["pull", &format!("{}/team/app:1", proxy.host())]);
        client.assert_store_clean();
        tokens.counts().basic_get - before
    };
    let with_fault = pull(&Client::new(Hoist::new()));
    let clean = pull(&Client::new(Hoist::new()));
    let gets: Vec<_> = proxy
        .log()
        .into_iter()
        .filter(|l| l.path.ends_with(&layer))
        .map(|l| l.status)
        .collect();
    assert_eq!(gets, [401, 200, 200], "{:#?}", proxy.log());
    // The same tokens as a clean pull, and a fresh one after the 401.
    assert_eq!(with_fault, clean + 1, "{:?}", tokens.counts());
}

#[test]
fn r7_bad_registry_settings_are_named_and_logout_needs_no_registry() {
    let client = Client::new(Hoist::new());
    let stderr = client.fails(&[
        "pull",
        "--insecure-registry",
        "10.0.0.0/99",
        "127.0.0.1:9/x:1",
    ]);
    assert!(stderr.contains("\"10.0.0.0/99\" is not a CIDR"), "{stderr}");

    let hoist_config = client.docker_config.path().join("hoist.json");
    std::fs::write(
        &hoist_config,
        r#"{"registries": {"r.example": {"insecur": true}}}"#,
    )
    .unwrap();
    let stderr = client.fails(&["pull", "r.example/x:1"]);
    assert!(
        stderr.contains("hoist.json") && stderr.contains("unknown field `insecur`"),
        "{stderr}"
    );

    // Docker Hub by default, named by its config key, as Docker does.
    let (stdout, _) = client.ok(&["logout"]);
    assert_eq!(stdout, "Not logged in to https://index.docker.io/v1/\n");
    let stderr = client.fails(&["login", "--password-stdin", "127.0.0.1:9"]);
    assert!(
        stderr.contains("Must provide --username with --password-stdin"),
        "{stderr}"
    );
    let stderr = client.fails(&["login", "-u", "someone", "127.0.0.1:9"]);
    assert!(
        stderr.contains("Cannot perform an interactive login from a non TTY device"),
        "{stderr}"
    );
}

/// The rootless test user scripts/test makes (see `rootless.rs`).
const ROOTLESS_USER: &str = "hoist-rootless";

#[test]
fn r7_rootless_login_pull_push_logout_with_home_docker_config() {
    crate::common::require_root();
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, ROOTLESS_USER])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "user {ROOTLESS_USER} does not exist: run scripts/test (its set-up makes it)"
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let (uid, gid) = (id("-u"), id("-g"));
    let registry = TestRegistry::start(RegistryOptions::htpasswd("alice", ALICE_PASSWORD));
    let host = registry.host();
    seed_image(
        &format!("{host}/lib/busybox:1"),
        Some(&format!("alice:{ALICE_PASSWORD}")),
    );

    // A directory the user owns: the binary, its HOME and its store.
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("hoist");
    std::fs::copy(env!("CARGO_BIN_EXE_hoist"), &bin).unwrap();
    std::fs::create_dir(dir.path().join("home")).unwrap();
    let status = Command::new("chown")
        .args(["-R", &format!("{uid}:{gid}")])
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let run = |args: &[&str], stdin: Option<&str>| -> (bool, String, String) {
        let mut cmd = Command::new("setpriv");
        cmd.arg(format!("--reuid={uid}"))
            .arg(format!("--regid={gid}"))
            .args(["--clear-groups", "--"])
            .arg(&bin)
            .args(args)
            .current_dir(dir.path())
            .env("HOME", dir.path().join("home"))
            .env("HOIST_ROOT", dir.path().join("store"))
            .env_remove("DOCKER_CONFIG")
            .env_remove("XDG_DATA_HOME")
            .env_remove("XDG_CONFIG_HOME")
            .env("HOIST_CONFIG", dir.path().join("home/hoist.json"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("running setpriv (util-linux)");
        {
            use std::io::Write;
            let mut input = child.stdin.take().unwrap();
            if let Some(text) = stdin {
                input.write_all(text.as_bytes()).unwrap();
            }
        }
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let ok = |args: &[&str], stdin: Option<&str>| -> String {
        let (ok, stdout, stderr) = run(args, stdin);
        assert!(ok, "rootless hoist {args:?}:\n{stdout}\n{stderr}");
        assert_no_secret(ALICE_PASSWORD, &[&stdout, &stderr]);
        stdout
    };

    let stdout = ok(
        &["login", "-u", "alice", "--password-stdin", &host],
        Some(ALICE_PASSWORD),
    );
    assert_eq!(stdout, "Login Succeeded\n");
    let config = dir.path().join("home/.docker/config.json");
    let meta = std::fs::metadata(&config).unwrap();
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert_eq!(
        (meta.uid(), meta.permissions().mode() & 0o777),
        (uid, 0o600)
    );

    ok(&["pull", &format!("{host}/lib/busybox:1")], None);
    ok(
        &[
            "tag",
            &format!("{host}/lib/busybox:1"),
            &format!("{host}/lib/rootless:1"),
        ],
        None,
    );
    ok(&["push", &format!("{host}/lib/rootless:1")], None);
    assert_eq!(
        layer_digests(
            &format!("{host}/lib/rootless:1"),
            Some(&format!("alice:{ALICE_PASSWORD}"))
        ),
        layer_digests(
            &format!("{host}/lib/busybox:1"),
            Some(&format!("alice:{ALICE_PASSWORD}"))
        )
    );
    let stdout = ok(&["fsck"], None);
    assert!(stdout.contains(": 0 problems"), "{stdout}");
    let stdout = ok(&["logout", &host], None);
    assert_eq!(stdout, format!("Removing login credentials for {host}\n"));
}
