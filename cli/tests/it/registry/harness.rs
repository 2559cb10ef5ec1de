//! A real registry for tests: Debian's `docker-registry` (distribution 2.8)
//! on 127.0.0.1 with a free port and a temp storage directory, killed on
//! drop. It runs without auth, with htpasswd Basic auth (bcrypt), with any
//! raw `auth:` section (a token server's), or as a pull-through mirror.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The registry binary; the tests fail loudly when it is missing.
pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// How the registry authenticates clients.
#[derive(Clone, Debug, Default)]
pub enum RegistryAuth {
    /// Anyone may pull and push.
    #[default]
    None,
    /// htpasswd Basic auth with one bcrypt user.
    Htpasswd { username: String, password: String },
    /// A raw YAML `auth:` section, indented as a child of `auth:` (for a
    /// token server: `  token:\n    realm: ...`).
    Raw(String),
}

/// What to start.
#[derive(Clone, Debug, Default)]
pub struct RegistryOptions {
    pub auth: RegistryAuth,
    /// `proxy: remoteurl:`: a pull-through mirror of that registry URL.
    pub proxy_remote_url: Option<String>,
}

impl RegistryOptions {
    pub fn htpasswd(username: &str, password: &str) -> Self {
        RegistryOptions {
            auth: RegistryAuth::Htpasswd {
                username: username.to_owned(),
                password: password.to_owned(),
            },
            ..Self::default()
        }
    }

    pub fn mirror_of(remote: &TestRegistry) -> Self {
        RegistryOptions {
            proxy_remote_url: Some(remote.url()),
            ..Self::default()
        }
    }
}

/// A running registry; stopped (and its storage removed) on drop.
pub struct TestRegistry {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl TestRegistry {
    /// Starts a registry and waits until `/v2/` answers.
    pub fn start(options: RegistryOptions) -> TestRegistry {
        assert!(
            Path::new(REGISTRY_BIN).is_file(),
            "{REGISTRY_BIN} is missing: install Debian's docker-registry (scripts/test does)"
        );
        let dir = tempfile::Builder::new()
            .prefix("hoist-registry-")
            .tempdir()
            .unwrap();
        let auth = match &options.auth {
            RegistryAuth::None => String::new(),
            RegistryAuth::Htpasswd { username, password } => {
                let out = Command::new("htpasswd")
                    .args(["-Bbn", username, password])
                    .output()
                    .expect("running htpasswd (apache2-utils)");
                assert!(
                    out.status.success(),
                    "htpasswd: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let file = dir.path().join("htpasswd");
                std::fs::write(&file, &out.stdout).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: hoist-test\n    path: {}\n",
                    file.display()
                )
            }
            RegistryAuth::Raw(section) => format!("auth:\n{section}\n"),
        };
        let proxy = match &options.proxy_remote_url {
            Some(url) => format!("proxy:\n  remoteurl: {url}\n"),
            None => String::new(),
        };
        // A port picked now may be taken before the registry binds it:
        // try a few times.
        let log_path = dir.path().join("registry.log");
        for _ in 0..5 {
            let port = free_port();
            let config = format!(
                "version: 0.1\n\
                 log:\n  level: warn\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n\
                 http:\n  addr: 127.0.0.1:{port}\n  secret: hoist-test-secret\n\
                 {auth}{proxy}",
                storage = dir.path().join("storage").display(),
            );
            let config_path = dir.path().join("config.yml");
            std::fs::write(&config_path, config).unwrap();
            let log = std::fs::File::create(&log_path).unwrap();
            let mut child = Command::new(REGISTRY_BIN)
                .arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|err| panic!("starting {REGISTRY_BIN}: {err}"));
            if wait_ready(&mut child, port) {
                return TestRegistry { child, port, dir };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "docker-registry did not start:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
    }

    /// A registry without auth.
    pub fn anonymous() -> TestRegistry {
        Self::start(RegistryOptions::default())
    }

    /// `127.0.0.1:PORT`: the host part of references to this registry.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.host())
    }

    /// The storage root (`docker/registry/v2/...` below it).
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// Where the registry keeps the data of blob `digest` (`sha256:...`).
    pub fn blob_data_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
        self.storage()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// What the registry logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// The status code of `GET path` (no credentials).
    pub fn get_status(&self, path: &str) -> u16 {
        http_status(self.port, "GET", path)
            .unwrap_or_else(|err| panic!("GET {path} on {}: {err}\n{}", self.host(), self.log()))
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `/v2/` answers: 200 without auth, 401 with it.
fn wait_ready(child: &mut Child, port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if let Ok(200 | 401) = http_status(port, "GET", "/v2/") {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// A minimal HTTP/1.0 request, enough to read a status code without a
/// client library in the harness.
fn http_status(port: u16, method: &str, path: &str) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n"
    )?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head)?;
    std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other("not an HTTP response"))
}

/// `skopeo` against a test registry (plain HTTP); asserts success and
/// returns stdout.
pub fn skopeo(args: &[&str]) -> String {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("running skopeo (install Debian's skopeo)");
    assert!(
        out.status.success(),
        "skopeo {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
