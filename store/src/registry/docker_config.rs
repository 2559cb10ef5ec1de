//! Docker's client configuration, `$DOCKER_CONFIG/config.json` or
//! `~/.docker/config.json`, as a [`CredentialSource`], and the writes
//! `hoist login` and `hoist logout` make to it.
//!
//! Reads follow the Docker CLI (`cli/config/configfile`,
//! `cli/config/credentials`):
//! - `credHelpers[HOST]`, else `credsStore`, names a helper
//!   `docker-credential-NAME` that is run as `docker-credential-NAME get`
//!   with the server address on stdin and answers
//!   `{"ServerURL","Username","Secret"}`; a `Username` of `<token>` makes the
//!   secret an identity token, and "credentials not found" means anonymous.
//! - Otherwise `auths[KEY]`: `auth` (base64 `user:password`) or
//!   `username`/`password`, and `identitytoken`, which wins when present.
//!   A key with a scheme or path (`https://localhost:5000/v1/`) matches its
//!   host; Docker Hub's key is `https://index.docker.io/v1/`.
//!
//! Writes replace the file atomically with mode 0600 and keep every field
//! hoist does not know. When a helper is configured for the host the secret
//! goes to the helper (`store`, `erase`) and the file keeps an empty entry,
//! as Docker does.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value};

use super::credentials::{Credential, CredentialError, CredentialSource};

/// The key Docker uses for Docker Hub in `auths`, and the server address
/// it gives credential helpers.
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// The `Username` a credential helper returns for an identity token.
const TOKEN_USERNAME: &str = "<token>";

/// Larger config files are refused rather than read.
const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// What a helper may print before it is cut off.
const MAX_HELPER_OUTPUT: u64 = 1 << 20;

/// Docker's `config.json`, read on first use and cached per host (helpers
/// are processes; a pull asks for the same host many times).
#[derive(Debug)]
pub struct DockerConfig {
    path: PathBuf,
    helper_dir: Option<PathBuf>,
    cache: Mutex<BTreeMap<String, Option<Credential>>>,
}

impl DockerConfig {
    /// The config at `path` (which need not exist).
    pub fn at(path: impl Into<PathBuf>) -> DockerConfig {
        DockerConfig {
            path: path.into(),
            helper_dir: None,
            cache: Mutex::new(BTreeMap::new()),
        }
    }

    /// Runs credential helpers from `dir` rather than finding them on
    /// `$PATH`.
    pub fn with_helper_dir(mut self, dir: impl Into<PathBuf>) -> DockerConfig {
        self.helper_dir = Some(dir.into());
        self
    }

    /// `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
    pub fn from_env() -> Result<DockerConfig, CredentialError> {
        Ok(DockerConfig::at(default_path()?))
    }

    /// The file this config reads and writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Saves `credential` for `host` (as a reference names it:
    /// `docker.io`, `localhost:5000`): through the host's credential helper
    /// when one is configured, else as `auths[KEY].auth`.
    pub fn store(&self, host: &str, credential: &Credential) -> Result<(), CredentialError> {
        let mut root = self.read()?;
        let key = auths_key(host);
        let (username, secret) = match credential {
            Credential::Basic { username, password } => (username.as_str(), password.as_str()),
            Credential::IdentityToken { token, .. } => (TOKEN_USERNAME, token.as_str()),
        };
        let entry = match helper_for(&root, host) {
            Some(helper) => {
                let request = serde_json::json!({
                    "ServerURL": key,
                    "Username": username,
                    "Secret": secret,
                });
                self.run_helper(&helper, "store", request.to_string().as_bytes())
                    .map_err(|failure| failure.into_error(&helper))?;
                Map::new()
            }
            None => {
                let mut entry = Map::new();
                match credential {
                    Credential::Basic { username, password } => {
                        let auth = BASE64.encode(format!("{username}:{password}"));
                        entry.insert("auth".into(), Value::String(auth));
                    }
                    Credential::IdentityToken { username, token } => {
                        let auth = BASE64.encode(format!("{username}:"));
                        entry.insert("auth".into(), Value::String(auth));
                        entry.insert("identitytoken".into(), Value::String(token.clone()));
                    }
                }
                entry
            }
        };
        let auths = auths_mut(&mut root, &self.path)?;
        // Keep what hoist does not know about an existing entry (`email`,
        // `registrytoken`...), replacing only the credential fields.
        let merged = match auths.get(&key) {
            Some(Value::Object(old)) => {
                let mut merged = old.clone();
                for field in ["auth", "username", "password", "identitytoken"] {
                    merged.remove(field);
                }
                merged.extend(entry);
                merged
            }
            _ => entry,
        };
        auths.insert(key, Value::Object(merged));
        self.write(&root)?;
        self.forget(host);
        Ok(())
    }

    /// The credential helper that keeps `host`'s secret (`credHelpers`
    /// for the host, else `credsStore`), or `None` when the secret is kept
    /// in the file itself.
    pub fn helper(&self, host: &str) -> Result<Option<String>, CredentialError> {
        Ok(helper_for(&self.read()?, host))
    }

    /// Whether the file has an `auths` entry for `host` (under any of the
    /// keys that match it): what `hoist logout` checks before erasing.
    pub fn has_entry(&self, host: &str) -> Result<bool, CredentialError> {
        let root = self.read()?;
        Ok(root
            .get("auths")
            .and_then(Value::as_object)
            .is_some_and(|auths| auths.keys().any(|key| key_matches(key, host))))
    }

    /// Removes every entry for `host` from `auths` and erases it in the
    /// host's credential helper. Returns whether the file had an entry.
    pub fn erase(&self, host: &str) -> Result<bool, CredentialError> {
        let mut root = self.read()?;
        if let Some(helper) = helper_for(&root, host) {
            match self.run_helper(&helper, "erase", auths_key(host).as_bytes()) {
                Ok(_) => {}
                Err(HelperFailure::NotFound) => {}
                Err(failure) => return Err(failure.into_error(&helper)),
            }
        }
        let auths = auths_mut(&mut root, &self.path)?;
        let keys: Vec<String> = auths
            .keys()
            .filter(|key| key_matches(key, host))
            .cloned()
            .collect();
        for key in &keys {
            auths.remove(key);
        }
        if !keys.is_empty() {
            self.write(&root)?;
        }
        self.forget(host);
        Ok(!keys.is_empty())
    }

    fn run_helper(
        &self,
        helper: &str,
        action: &str,
        input: &[u8],
    ) -> Result<Vec<u8>, HelperFailure> {
        run_helper(self.helper_dir.as_deref(), helper, action, input)
    }

    fn forget(&self, host: &str) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(host);
        }
    }

    /// The whole file as a JSON object; `{}` when it does not exist.
    fn read(&self) -> Result<Map<String, Value>, CredentialError> {
        let file = match std::fs::File::open(&self.path) {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Map::new()),
            Err(err) => return Err(self.error(err.to_string())),
        };
        let mut text = String::new();
        file.take(MAX_CONFIG_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(|err| self.error(err.to_string()))?;
        if text.len() as u64 > MAX_CONFIG_BYTES {
            return Err(self.error(format!("larger than {MAX_CONFIG_BYTES} bytes")));
        }
        if text.trim().is_empty() {
            return Ok(Map::new());
        }
        match serde_json::from_str(&text) {
            Ok(Value::Object(root)) => Ok(root),
            Ok(_) => Err(self.error("not a JSON object".into())),
            // serde_json's message names the line and column, never the
            // text around it, so no secret leaks through it.
            Err(err) => Err(self.error(format!("invalid JSON: {err}"))),
        }
    }

    /// Replaces the file atomically, mode 0600. A symlinked config is
    /// written through, as Docker does.
    fn write(&self, root: &Map<String, Value>) -> Result<(), CredentialError> {
        use std::os::unix::fs::PermissionsExt;
        let target = std::fs::read_link(&self.path)
            .map(|link| match self.path.parent() {
                Some(dir) if link.is_relative() => dir.join(link),
                _ => link,
            })
            .unwrap_or_else(|_| self.path.clone());
        let dir = match target.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let fail = |err: std::io::Error| CredentialError::Config {
            path: target.display().to_string(),
            reason: err.to_string(),
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .create(&dir)
            .map_err(fail)?;
        let mut temp = tempfile::Builder::new()
            .prefix(".config.json.")
            .tempfile_in(&dir)
            .map_err(fail)?;
        temp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(fail)?;
        let mut text =
            serde_json::to_string_pretty(root).map_err(|err| fail(std::io::Error::other(err)))?;
        text.push('\n');
        temp.write_all(text.as_bytes()).map_err(fail)?;
        temp.as_file().sync_all().map_err(fail)?;
        temp.persist(&target).map_err(|err| fail(err.error))?;
        Ok(())
    }

    fn error(&self, reason: String) -> CredentialError {
        CredentialError::Config {
            path: self.path.display().to_string(),
            reason,
        }
    }

    fn lookup(&self, host: &str) -> Result<Option<Credential>, CredentialError> {
        let root = self.read()?;
        if let Some(helper) = helper_for(&root, host) {
            let output = match self.run_helper(&helper, "get", auths_key(host).as_bytes()) {
                Ok(output) => output,
                Err(HelperFailure::NotFound) => return Ok(None),
                Err(failure) => return Err(failure.into_error(&helper)),
            };
            return parse_helper_answer(&helper, &output);
        }
        let Some(auths) = root.get("auths").and_then(Value::as_object) else {
            return Ok(None);
        };
        // An exact key first, then any key whose host matches, as Docker's
        // file store does.
        let exact = auths.get(&auths_key(host));
        let entry = exact.or_else(|| {
            auths
                .iter()
                .find(|(key, _)| key_matches(key, host))
                .map(|(_, entry)| entry)
        });
        match entry {
            Some(entry) => self.parse_entry(host, entry),
            None => Ok(None),
        }
    }

    /// One `auths` entry. An empty entry (left by a login through a
    /// helper that is no longer configured) means anonymous.
    fn parse_entry(
        &self,
        host: &str,
        entry: &Value,
    ) -> Result<Option<Credential>, CredentialError> {
        let bad = |what: &str| self.error(format!("auths entry for {host}: {what}"));
        let Value::Object(entry) = entry else {
            return Err(bad("not a JSON object"));
        };
        let text = |field: &str| -> Result<String, CredentialError> {
            match entry.get(field) {
                None | Some(Value::Null) => Ok(String::new()),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(_) => Err(bad(&format!("{field} is not a string"))),
            }
        };
        let mut username = text("username")?;
        let mut password = text("password")?;
        let auth = text("auth")?;
        if !auth.is_empty() {
            // Docker accepts padded base64; whitespace around it too.
            let decoded = BASE64
                .decode(auth.trim())
                .map_err(|_| bad("auth is not valid base64"))?;
            let decoded = String::from_utf8(decoded).map_err(|_| bad("auth is not UTF-8"))?;
            let (user, pass) = decoded
                .split_once(':')
                .ok_or_else(|| bad("auth is not base64 of user:password"))?;
            username = user.to_string();
            password = pass.to_string();
        }
        let token = text("identitytoken")?;
        if !token.is_empty() {
            return Ok(Some(Credential::IdentityToken { username, token }));
        }
        if username.is_empty() && password.is_empty() {
            return Ok(None);
        }
        Ok(Some(Credential::Basic { username, password }))
    }
}

impl CredentialSource for DockerConfig {
    fn credential_for(&self, host: &str) -> Result<Option<Credential>, CredentialError> {
        if let Some(hit) = self.cache.lock().ok().and_then(|c| c.get(host).cloned()) {
            return Ok(hit);
        }
        let found = self.lookup(host)?;
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(host.to_string(), found.clone());
        }
        Ok(found)
    }
}

/// `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
pub fn default_path() -> Result<PathBuf, CredentialError> {
    let non_empty = |key: &str| std::env::var_os(key).filter(|v| !v.is_empty());
    if let Some(dir) = non_empty("DOCKER_CONFIG") {
        return Ok(PathBuf::from(dir).join("config.json"));
    }
    match non_empty("HOME") {
        Some(home) => Ok(PathBuf::from(home).join(".docker/config.json")),
        None => Err(CredentialError::Config {
            path: "config.json".into(),
            reason: "neither $DOCKER_CONFIG nor $HOME is set".into(),
        }),
    }
}

/// The names Docker Hub goes by; all of them are one registry.
fn is_docker_hub(host: &str) -> bool {
    matches!(
        host,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    )
}

/// The `auths` key (and helper server address) Docker writes for `host`.
pub fn auths_key(host: &str) -> String {
    if is_docker_hub(host) {
        DOCKER_HUB_KEY.to_string()
    } else {
        host.to_string()
    }
}

/// The host part of an `auths` key: Docker's `ConvertToHostname`
/// (`https://localhost:5000/v1/` → `localhost:5000`).
fn key_host(key: &str) -> &str {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    rest.split('/').next().unwrap_or(rest)
}

/// Whether the `auths` key `key` holds credentials for `host`.
fn key_matches(key: &str, host: &str) -> bool {
    let key_host = key_host(key);
    key_host == host || (is_docker_hub(host) && is_docker_hub(key_host))
}

/// The helper for `host`: `credHelpers` by host (Docker Hub under any of
/// its names), else `credsStore`. An empty name means none.
fn helper_for(root: &Map<String, Value>, host: &str) -> Option<String> {
    let helpers = root.get("credHelpers").and_then(Value::as_object);
    let per_host = helpers.and_then(|helpers| {
        helpers
            .iter()
            .find(|(key, _)| *key == host || key_matches(key, host))
            .and_then(|(_, name)| name.as_str())
    });
    per_host
        .or_else(|| root.get("credsStore").and_then(Value::as_str))
        .filter(|name| !name.is_empty())
        .map(str::to_string)
}

/// Why a helper gave no answer.
enum HelperFailure {
    /// The helper has nothing for this server ("credentials not found").
    NotFound,
    Failed(String),
}

impl HelperFailure {
    fn into_error(self, helper: &str) -> CredentialError {
        let reason = match self {
            HelperFailure::NotFound => "credentials not found".to_string(),
            HelperFailure::Failed(reason) => reason,
        };
        CredentialError::Helper {
            helper: helper.to_string(),
            reason,
        }
    }
}

/// Runs `docker-credential-HELPER ACTION` with `input` on stdin and returns
/// its stdout. Its stdout is never put in an error: on failure it holds
/// the helper's message, on success a secret.
fn run_helper(
    helper_dir: Option<&Path>,
    helper: &str,
    action: &str,
    input: &[u8],
) -> Result<Vec<u8>, HelperFailure> {
    let program = format!("docker-credential-{helper}");
    let command = match helper_dir {
        Some(dir) => dir.join(&program),
        None => PathBuf::from(&program),
    };
    let mut child = Command::new(&command)
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| match err.kind() {
            std::io::ErrorKind::NotFound => {
                HelperFailure::Failed(format!("{program} is not on PATH"))
            }
            _ => HelperFailure::Failed(format!("cannot run {program}: {err}")),
        })?;
    // A helper that exits without reading stdin is not an error here: its
    // exit status says what happened.
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input);
    }
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let out = child.stdout.take();
    let err = child.stderr.take();
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            if let Some(err) = err {
                let _ = err.take(MAX_HELPER_OUTPUT).read_to_end(&mut stderr);
            }
        });
        if let Some(out) = out {
            let _ = out.take(MAX_HELPER_OUTPUT).read_to_end(&mut stdout);
        }
        let _ = reader.join();
    });
    let status = child
        .wait()
        .map_err(|err| HelperFailure::Failed(format!("waiting for {program}: {err}")))?;
    if status.success() {
        return Ok(stdout);
    }
    // Helpers print their error on stdout (docker-credential-helpers'
    // convention); some use stderr.
    let message = String::from_utf8_lossy(if stdout.is_empty() { &stderr } else { &stdout })
        .trim()
        .to_string();
    if message.contains("credentials not found") {
        return Err(HelperFailure::NotFound);
    }
    let message = message.lines().next().unwrap_or_default().to_string();
    Err(HelperFailure::Failed(if message.is_empty() {
        format!("{action} failed ({status})")
    } else {
        format!("{action} failed ({status}): {message}")
    }))
}

/// The helper's `get` answer: `{"ServerURL","Username","Secret"}`.
fn parse_helper_answer(helper: &str, output: &[u8]) -> Result<Option<Credential>, CredentialError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Answer {
        #[serde(default)]
        username: String,
        #[serde(default)]
        secret: String,
    }
    let answer: Answer = serde_json::from_slice(output).map_err(|_| CredentialError::Helper {
        helper: helper.to_string(),
        // Not serde's message: it may quote the secret.
        reason: "get printed something other than {\"Username\",\"Secret\"} JSON".into(),
    })?;
    if answer.secret.is_empty() && answer.username.is_empty() {
        return Ok(None);
    }
    if answer.username == TOKEN_USERNAME {
        return Ok(Some(Credential::IdentityToken {
            username: String::new(),
            token: answer.secret,
        }));
    }
    Ok(Some(Credential::Basic {
        username: answer.username,
        password: answer.secret,
    }))
}

fn auths_mut<'a>(
    root: &'a mut Map<String, Value>,
    path: &Path,
) -> Result<&'a mut Map<String, Value>, CredentialError> {
    let auths = root
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()));
    if auths.is_null() {
        *auths = Value::Object(Map::new());
    }
    auths
        .as_object_mut()
        .ok_or_else(|| CredentialError::Config {
            path: path.display().to_string(),
            reason: "auths is not a JSON object".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn basic(username: &str, password: &str) -> Credential {
        Credential::Basic {
            username: username.into(),
            password: password.into(),
        }
    }

    fn config_with(text: &str) -> (tempfile::TempDir, DockerConfig) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, text).unwrap();
        (dir, DockerConfig::at(path))
    }

    #[test]
    fn auths_entries() {
        let config = serde_json::json!({
            "auths": {
                "https://index.docker.io/v1/": {"auth": BASE64.encode("hub:hubpw")},
                "https://localhost:5000/v1/": {"auth": BASE64.encode("u5000:p:with:colons")},
                "plain.example": {"username": "pu", "password": "pp"},
                "tok.example": {"auth": BASE64.encode("tu:"), "identitytoken": "refresh"},
                "empty.example": {},
                "http://scheme.example:8080": {"auth": BASE64.encode("su:sp")},
            },
            "HttpHeaders": {"User-Agent": "x"},
        });
        let (_dir, source) = config_with(&config.to_string());
        let cases = [
            ("docker.io", Some(basic("hub", "hubpw"))),
            ("registry-1.docker.io", Some(basic("hub", "hubpw"))),
            ("localhost:5000", Some(basic("u5000", "p:with:colons"))),
            ("localhost:5001", None),
            ("plain.example", Some(basic("pu", "pp"))),
            (
                "tok.example",
                Some(Credential::IdentityToken {
                    username: "tu".into(),
                    token: "refresh".into(),
                }),
            ),
            ("empty.example", None),
            ("scheme.example:8080", Some(basic("su", "sp"))),
            ("scheme.example", None),
        ];
        for (host, want) in cases {
            assert_eq!(source.credential_for(host).unwrap(), want, "{host}");
        }
    }

    #[test]
    fn missing_or_empty_file_is_anonymous() {
        let dir = tempfile::tempdir().unwrap();
        let source = DockerConfig::at(dir.path().join("nope/config.json"));
        assert_eq!(source.credential_for("docker.io").unwrap(), None);
        let (_dir, source) = config_with("");
        assert_eq!(source.credential_for("docker.io").unwrap(), None);
    }

    #[test]
    fn bad_files_name_the_path_and_never_the_secret() {
        let cases = [
            ("[]", "not a JSON object"),
            (
                "{\"auths\": {\"h\": {\"auth\": \"%%%s3cret\"}}}",
                "not valid base64",
            ),
            (
                &format!(
                    "{{\"auths\": {{\"h\": {{\"auth\": \"{}\"}}}}}}",
                    BASE64.encode("s3cret")
                ),
                "not base64 of user:password",
            ),
            (
                "{\"auths\": {\"h\": {\"password\": 5}}}",
                "password is not a string",
            ),
            ("{\"auths\": {\"h\": \"s3cret\"", "invalid JSON"),
        ];
        for (text, want) in cases {
            let (_dir, source) = config_with(text);
            let err = source.credential_for("h").unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
            assert!(err.contains("config.json"), "{text}: {err}");
            assert!(!err.contains("s3cret"), "{text}: {err}");
        }
    }

    #[test]
    fn store_and_erase_keep_unknown_fields() {
        let (dir, source) = config_with(
            r#"{"auths": {"other.example": {"auth": "b3RoZXI6cHc=", "email": "e@x"}},
                "psFormat": "table {{.ID}}", "proxies": {"default": {"httpProxy": "p"}}}"#,
        );
        source.store("localhost:5000", &basic("me", "pw")).unwrap();
        source.store("docker.io", &basic("hub", "hpw")).unwrap();
        let path = dir.path().join("config.json");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let written: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(written["psFormat"], "table {{.ID}}");
        assert_eq!(written["proxies"]["default"]["httpProxy"], "p");
        assert_eq!(written["auths"]["other.example"]["email"], "e@x");
        assert_eq!(
            written["auths"]["localhost:5000"]["auth"],
            BASE64.encode("me:pw")
        );
        assert_eq!(
            written["auths"][DOCKER_HUB_KEY]["auth"],
            BASE64.encode("hub:hpw")
        );
        let fresh = DockerConfig::at(&path);
        assert_eq!(
            fresh.credential_for("localhost:5000").unwrap(),
            Some(basic("me", "pw"))
        );

        assert!(source.erase("localhost:5000").unwrap());
        assert!(!source.erase("localhost:5000").unwrap());
        assert!(source.has_entry("docker.io").unwrap());
        assert!(!source.has_entry("localhost:5000").unwrap());
        assert_eq!(source.credential_for("localhost:5000").unwrap(), None);
        let written: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(written["psFormat"], "table {{.ID}}");
        assert!(written["auths"].get("localhost:5000").is_none());
        assert!(written["auths"].get("other.example").is_some());
    }

    #[test]
    fn helper_is_chosen_per_host() {
        for (text, want) in [
            ("{}", None),
            (r#"{"credsStore": ""}"#, None),
            (r#"{"credHelpers": {"other.example": "x"}}"#, None),
            (r#"{"credHelpers": {"reg.example": "x"}}"#, Some("x")),
            (
                r#"{"credsStore": "s", "credHelpers": {"other.example": "x"}}"#,
                Some("s"),
            ),
        ] {
            let (_dir, source) = config_with(text);
            assert_eq!(
                source.helper("reg.example").unwrap().as_deref(),
                want,
                "{text}"
            );
        }
    }

    #[test]
    fn store_creates_the_file_and_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fresh/config.json");
        let source = DockerConfig::at(&path);
        source.store("reg.example", &basic("a", "b")).unwrap();
        let written: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(
            written["auths"]["reg.example"]["auth"],
            BASE64.encode("a:b")
        );
    }

    /// A fake `docker-credential-test` keeping its secrets in a directory,
    /// one file per server, as the real helpers keep them in a keychain.
    fn fake_helper(dir: &Path) -> PathBuf {
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let script = bin.join("docker-credential-test");
        let db = dir.join("db");
        std::fs::create_dir_all(&db).unwrap();
        std::fs::write(
            &script,
            format!(
                r#"#!/bin/sh
db={db}
read -r line || true
case "$1" in
get) f="$db/$(printf %s "$line" | tr '/:' '__')"
     [ -f "$f" ] || {{ echo "credentials not found in native keychain"; exit 1; }}
     cat "$f" ;;
store) host=$(printf %s "$line" | sed 's/.*"ServerURL":"\([^"]*\)".*/\1/')
     printf %s "$line" > "$db/$(printf %s "$host" | tr '/:' '__')" ;;
erase) f="$db/$(printf %s "$line" | tr '/:' '__')"
     [ -f "$f" ] || {{ echo "credentials not found in native keychain"; exit 1; }}
     rm "$f" ;;
*) echo "unknown action $1"; exit 1 ;;
esac
"#,
                db = db.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        bin
    }

    #[test]
    fn helpers_get_store_erase() {
        let dir = tempfile::tempdir().unwrap();
        let bin = fake_helper(dir.path());
        // PATH is process-wide and tests run in parallel: point this
        // config at the helper's directory instead.
        let config_path = dir.path().join("config.json");
        std::fs::write(
            &config_path,
            serde_json::json!({
                "credsStore": "missing-helper",
                "credHelpers": {"localhost:5000": "test", "docker.io": "test"},
            })
            .to_string(),
        )
        .unwrap();
        let source = DockerConfig::at(&config_path).with_helper_dir(bin);
        assert_eq!(source.credential_for("localhost:5000").unwrap(), None);
        source.store("localhost:5000", &basic("hu", "hpw")).unwrap();
        source
            .store(
                "docker.io",
                &Credential::IdentityToken {
                    username: "x".into(),
                    token: "idtok".into(),
                },
            )
            .unwrap();
        let fresh = DockerConfig::at(&config_path).with_helper_dir(dir.path().join("bin"));
        assert_eq!(
            fresh.credential_for("localhost:5000").unwrap(),
            Some(basic("hu", "hpw"))
        );
        assert_eq!(
            fresh.credential_for("docker.io").unwrap(),
            Some(Credential::IdentityToken {
                username: String::new(),
                token: "idtok".into()
            })
        );
        // The secret went to the helper; the file has an empty entry.
        let text = std::fs::read_to_string(&config_path).unwrap();
        assert!(!text.contains("hpw") && !text.contains("idtok"), "{text}");
        let written: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(written["auths"]["localhost:5000"], serde_json::json!({}));

        assert!(fresh.erase("localhost:5000").unwrap());
        let fresh = DockerConfig::at(&config_path).with_helper_dir(dir.path().join("bin"));
        assert_eq!(fresh.credential_for("localhost:5000").unwrap(), None);

        // A host with no credHelpers entry falls to credsStore, which is
        // not installed: a clear error naming the helper.
        let err = fresh
            .credential_for("other.example")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("docker-credential-missing-helper") && err.contains("not on PATH"),
            "{err}"
        );
    }

    #[test]
    fn helper_answers() {
        let cases: [(&str, Result<Option<Credential>, &str>); 5] = [
            (
                r#"{"ServerURL":"h","Username":"u","Secret":"s"}"#,
                Ok(Some(basic("u", "s"))),
            ),
            (
                r#"{"Username":"<token>","Secret":"t"}"#,
                Ok(Some(Credential::IdentityToken {
                    username: String::new(),
                    token: "t".into(),
                })),
            ),
            (r#"{"Username":"","Secret":""}"#, Ok(None)),
            ("s3cret not json", Err("other than")),
            (r#"{"Username": 5, "Secret": "s3cret"}"#, Err("other than")),
        ];
        for (output, want) in cases {
            let got = parse_helper_answer("t", output.as_bytes());
            match want {
                Ok(want) => assert_eq!(got.unwrap(), want, "{output}"),
                Err(text) => {
                    let err = got.unwrap_err().to_string();
                    assert!(
                        err.contains(text) && !err.contains("s3cret"),
                        "{output}: {err}"
                    );
                }
            }
        }
    }

    #[test]
    fn key_hosts() {
        for (key, host, want) in [
            ("https://index.docker.io/v1/", "docker.io", true),
            ("index.docker.io", "docker.io", true),
            ("docker.io", "registry-1.docker.io", true),
            ("https://localhost:5000/v1/", "localhost:5000", true),
            ("http://localhost:5000", "localhost:5000", true),
            ("localhost:5000", "localhost", false),
            ("https://index.docker.io/v1/", "quay.io", false),
        ] {
            assert_eq!(key_matches(key, host), want, "{key} {host}");
        }
    }
}
