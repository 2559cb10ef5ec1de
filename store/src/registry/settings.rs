//! Per-host transport settings: plain HTTP, extra CA certificates and
//! mirrors. Docker's rules: loopback hosts may use plain HTTP without being
//! told; any other host needs `--insecure-registry`.
//!
//! [`RegistrySettings::load`] reads, in this order, later files winning per
//! host:
//! - `/etc/docker/daemon.json`: `registry-mirrors` (for `docker.io`) and
//!   `insecure-registries` (hosts, or CIDRs matched against IP hosts);
//! - `/etc/docker/certs.d/HOST/*.crt`: extra CAs for HOST, as dockerd reads
//!   them;
//! - hoist's own config, `/etc/hoist/config.json` and then the user's
//!   `$XDG_CONFIG_HOME/hoist/config.json` (`~/.config/hoist/config.json`),
//!   or only `$HOIST_CONFIG` when that is set:
//!   ```json
//!   {"registries": {"reg.example:5000": {"insecure": true,
//!                                        "ca": ["/etc/ssl/reg.pem"],
//!                                        "mirrors": ["https://mirror.example"]}}}
//!   ```
//!   Relative `ca` paths are relative to the config file's directory. A
//!   mirror without a scheme gets `https://` (`http://` when loopback).

use std::collections::BTreeMap;
use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// How to reach one registry host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostSettings {
    /// Speak plain HTTP (and accept any certificate on HTTPS).
    pub insecure: bool,
    /// PEM files trusted in addition to the system roots.
    pub ca_certificates: Vec<PathBuf>,
    /// Mirrors to try, in order, before the host itself (pulls only).
    pub mirrors: Vec<String>,
}

/// Settings for every host the user configured.
#[derive(Clone, Debug, Default)]
pub struct RegistrySettings {
    hosts: BTreeMap<String, HostSettings>,
    /// `insecure-registries` CIDRs from daemon.json, for IP hosts.
    insecure_networks: Vec<(IpAddr, u8)>,
}

/// A settings file that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct SettingsError {
    pub path: String,
    pub reason: String,
}

/// The files [`RegistrySettings::load`] reads; any of them may be missing.
#[derive(Clone, Debug, Default)]
pub struct SettingsFiles {
    /// Docker's daemon configuration (`/etc/docker/daemon.json`).
    pub daemon_json: Option<PathBuf>,
    /// Docker's per-host certificate directories (`/etc/docker/certs.d`).
    pub certs_d: Option<PathBuf>,
    /// hoist's config files, later ones winning per host.
    pub hoist_configs: Vec<PathBuf>,
}

impl SettingsFiles {
    /// The standard locations, or only `$HOIST_CONFIG` for hoist's own
    /// config when it is set.
    pub fn standard() -> SettingsFiles {
        let non_empty = |key: &str| std::env::var_os(key).filter(|v| !v.is_empty());
        let hoist_configs = match non_empty("HOIST_CONFIG") {
            Some(path) => vec![PathBuf::from(path)],
            None => {
                let mut paths = vec![PathBuf::from("/etc/hoist/config.json")];
                let user_dir = non_empty("XDG_CONFIG_HOME")
                    .map(PathBuf::from)
                    .or_else(|| non_empty("HOME").map(|home| PathBuf::from(home).join(".config")));
                if let Some(dir) = user_dir {
                    paths.push(dir.join("hoist/config.json"));
                }
                paths
            }
        };
        SettingsFiles {
            daemon_json: Some(PathBuf::from("/etc/docker/daemon.json")),
            certs_d: Some(PathBuf::from("/etc/docker/certs.d")),
            hoist_configs,
        }
    }
}

/// Larger settings files are refused rather than read.
const MAX_SETTINGS_BYTES: u64 = 1 << 20;

impl RegistrySettings {
    /// Reads `files` (see the module doc for the order and format).
    pub fn load(files: &SettingsFiles) -> Result<RegistrySettings, SettingsError> {
        let mut settings = RegistrySettings::default();
        if let Some(path) = &files.daemon_json {
            settings.load_daemon_json(path)?;
        }
        if let Some(dir) = &files.certs_d {
            settings.load_certs_d(dir)?;
        }
        for path in &files.hoist_configs {
            settings.load_hoist_config(path)?;
        }
        Ok(settings)
    }

    /// Lets `host` use plain HTTP (`--insecure-registry`). A CIDR
    /// (`10.0.0.0/8`) allows every IP host in it.
    pub fn allow_insecure(&mut self, host: &str) -> Result<&mut Self, SettingsError> {
        let host = strip_scheme(host);
        if host.is_empty() {
            return Err(SettingsError {
                path: "--insecure-registry".into(),
                reason: "empty registry host".into(),
            });
        }
        match parse_cidr(host) {
            Some(Ok(network)) => self.insecure_networks.push(network),
            Some(Err(reason)) => {
                return Err(SettingsError {
                    path: "--insecure-registry".into(),
                    reason,
                });
            }
            None => self.hosts.entry(host.to_string()).or_default().insecure = true,
        }
        Ok(self)
    }

    fn load_daemon_json(&mut self, path: &Path) -> Result<(), SettingsError> {
        #[derive(serde::Deserialize)]
        struct Daemon {
            #[serde(default, rename = "registry-mirrors")]
            registry_mirrors: Vec<String>,
            #[serde(default, rename = "insecure-registries")]
            insecure_registries: Vec<String>,
        }
        let Some(daemon) = read_json::<Daemon>(path)? else {
            return Ok(());
        };
        let error = |reason: String| SettingsError {
            path: path.display().to_string(),
            reason,
        };
        for mirror in &daemon.registry_mirrors {
            validate_mirror(mirror)
                .map_err(|reason| error(format!("registry-mirrors: {reason}")))?;
        }
        if !daemon.registry_mirrors.is_empty() {
            self.hosts.entry("docker.io".into()).or_default().mirrors = daemon.registry_mirrors;
        }
        for entry in &daemon.insecure_registries {
            let host = strip_scheme(entry);
            match parse_cidr(host) {
                Some(Ok(network)) => self.insecure_networks.push(network),
                Some(Err(reason)) => return Err(error(format!("insecure-registries: {reason}"))),
                None if host.is_empty() => {
                    return Err(error("insecure-registries: empty entry".into()));
                }
                None => self.hosts.entry(host.to_string()).or_default().insecure = true,
            }
        }
        Ok(())
    }

    fn load_certs_d(&mut self, dir: &Path) -> Result<(), SettingsError> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let host_dir = entry.path();
            let Some(host) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let Ok(files) = std::fs::read_dir(&host_dir) else {
                continue;
            };
            let mut cas: Vec<PathBuf> = files
                .flatten()
                .map(|file| file.path())
                .filter(|path| path.extension().is_some_and(|ext| ext == "crt"))
                .collect();
            cas.sort();
            if !cas.is_empty() {
                self.hosts
                    .entry(host)
                    .or_default()
                    .ca_certificates
                    .extend(cas);
            }
        }
        Ok(())
    }

    fn load_hoist_config(&mut self, path: &Path) -> Result<(), SettingsError> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Host {
            #[serde(default)]
            insecure: bool,
            #[serde(default)]
            ca: Vec<PathBuf>,
            #[serde(default)]
            mirrors: Vec<String>,
        }
        #[derive(serde::Deserialize)]
        struct Config {
            #[serde(default)]
            registries: BTreeMap<String, Host>,
        }
        let Some(config) = read_json::<Config>(path)? else {
            return Ok(());
        };
        let base = path.parent().unwrap_or(Path::new("/"));
        for (host, entry) in config.registries {
            let host = strip_scheme(&host).to_string();
            if host.is_empty() {
                return Err(SettingsError {
                    path: path.display().to_string(),
                    reason: "registries: empty host name".into(),
                });
            }
            // This file's entry replaces what earlier files said of the
            // host, except that daemon.json's insecure flag still holds.
            let earlier = self.hosts.remove(&host).unwrap_or_default();
            self.hosts.insert(
                host,
                HostSettings {
                    insecure: entry.insecure || earlier.insecure,
                    ca_certificates: if entry.ca.is_empty() {
                        earlier.ca_certificates
                    } else {
                        entry.ca.into_iter().map(|ca| base.join(ca)).collect()
                    },
                    mirrors: if entry.mirrors.is_empty() {
                        earlier.mirrors
                    } else {
                        entry.mirrors.iter().map(|m| mirror_url(m)).collect()
                    },
                },
            );
        }
        Ok(())
    }

    /// Replaces the settings of `host`.
    pub fn set(&mut self, host: impl Into<String>, settings: HostSettings) -> &mut Self {
        self.hosts.insert(host.into(), settings);
        self
    }

    /// The settings for `host`; loopback hosts are always insecure-allowed.
    pub fn for_host(&self, host: &str) -> HostSettings {
        let mut settings = self.hosts.get(host).cloned().unwrap_or_default();
        settings.insecure |= is_loopback(host);
        if !settings.insecure
            && let Some(ip) = host_ip(host)
        {
            settings.insecure = self
                .insecure_networks
                .iter()
                .any(|&(network, bits)| in_network(ip, network, bits));
        }
        settings
    }
}

/// Reads a JSON settings file; `None` when it does not exist.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, SettingsError> {
    let error = |reason: String| SettingsError {
        path: path.display().to_string(),
        reason,
    };
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(error(err.to_string())),
    };
    let mut text = String::new();
    file.take(MAX_SETTINGS_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|err| error(err.to_string()))?;
    if text.len() as u64 > MAX_SETTINGS_BYTES {
        return Err(error(format!("larger than {MAX_SETTINGS_BYTES} bytes")));
    }
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|err| error(err.to_string()))
}

/// A mirror as a URL: `mirror.example` → `https://mirror.example`, and
/// plain HTTP for a loopback mirror (`127.0.0.1:5001` →
/// `http://127.0.0.1:5001`).
fn mirror_url(mirror: &str) -> String {
    let mirror = mirror.trim();
    if mirror.contains("://") {
        mirror.to_string()
    } else if is_loopback(mirror.trim_end_matches('/')) {
        format!("http://{mirror}")
    } else {
        format!("https://{mirror}")
    }
}

/// dockerd's check of a daemon.json `registry-mirrors` entry
/// (`ValidateMirror`), in its words: an http or https URL without query,
/// fragment or credentials. A password never appears in the message.
fn validate_mirror(mirror: &str) -> Result<(), String> {
    if mirror
        .split_once("://")
        .is_none_or(|(scheme, _)| scheme.is_empty())
    {
        return Err(format!(
            "invalid mirror: no scheme specified for {mirror:?}: must use either 'https://' or 'http://'"
        ));
    }
    let mut uri = reqwest::Url::parse(mirror)
        .map_err(|err| format!("invalid mirror: not a valid URI: {err}"))?;
    if uri.scheme() != "http" && uri.scheme() != "https" {
        return Err(format!(
            "invalid mirror: unsupported scheme {:?} in {:?}: must use either 'https://' or 'http://'",
            uri.scheme(),
            crate::registry::error::redact_url(uri.as_str())
        ));
    }
    if !uri.username().is_empty() || uri.password().is_some() {
        let _ = uri.set_password(Some("xxxxx"));
        return Err(format!(
            "invalid mirror: username/password not allowed in URI {:?}",
            uri.as_str()
        ));
    }
    if uri.query().is_some() || uri.fragment().is_some() {
        return Err(format!(
            "invalid mirror: query or fragment at end of the URI {:?}",
            uri.as_str()
        ));
    }
    Ok(())
}

/// `http://reg:5000/` → `reg:5000`, as dockerd accepts registry names.
fn strip_scheme(host: &str) -> &str {
    let host = host.trim();
    let host = host
        .strip_prefix("https://")
        .or_else(|| host.strip_prefix("http://"))
        .unwrap_or(host);
    host.trim_end_matches('/')
}

/// `Some` when `text` looks like a CIDR (has a `/`), with its network.
fn parse_cidr(text: &str) -> Option<Result<(IpAddr, u8), String>> {
    let (ip, bits) = text.split_once('/')?;
    let parsed = ip.parse::<IpAddr>().ok().and_then(|ip| {
        let max = if ip.is_ipv4() { 32 } else { 128 };
        bits.parse::<u8>()
            .ok()
            .filter(|&bits| bits <= max)
            .map(|bits| (ip, bits))
    });
    Some(parsed.ok_or_else(|| format!("{text:?} is not a CIDR (like 10.0.0.0/8)")))
}

/// The IP of an IP-literal host (`10.1.2.3:5000`, `[fd00::1]:5000`).
fn host_ip(host: &str) -> Option<IpAddr> {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.parse().ok().or_else(|| host.parse().ok())
}

fn in_network(ip: IpAddr, network: IpAddr, bits: u8) -> bool {
    match (ip, network) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

/// `localhost[:port]`, `127.0.0.0/8[:port]` and `[::1][:port]`.
pub fn is_loopback(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name == "localhost" || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for (host, want) in [
            ("localhost", true),
            ("localhost:5000", true),
            ("127.0.0.1:5000", true),
            ("127.8.9.1", true),
            ("[::1]:5000", true),
            ("docker.io", false),
            ("10.0.0.1:5000", false),
            ("localhost.example.com", false),
        ] {
            assert_eq!(is_loopback(host), want, "{host}");
        }
    }

    #[test]
    fn loads_daemon_json_certs_d_and_hoist_configs() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(
            d.join("daemon.json"),
            r#"{"registry-mirrors": ["https://mirror.gcr.io"],
                "insecure-registries": ["10.0.0.0/8", "http://legacy.example:5000/", "fd00::/8"],
                "log-driver": "json-file"}"#,
        )
        .unwrap();
        std::fs::create_dir_all(d.join("certs.d/secure.example:443")).unwrap();
        std::fs::write(d.join("certs.d/secure.example:443/ca.crt"), "pem").unwrap();
        std::fs::write(d.join("certs.d/secure.example:443/client.key"), "key").unwrap();
        std::fs::create_dir_all(d.join("etc")).unwrap();
        std::fs::write(
            d.join("etc/config.json"),
            r#"{"registries": {"docker.io": {"mirrors": ["127.0.0.1:5001", "m.example"]},
                               "corp.example": {"insecure": true, "ca": ["corp.pem"]}}}"#,
        )
        .unwrap();
        std::fs::write(
            d.join("user.json"),
            r#"{"registries": {"corp.example": {"ca": ["/abs/user.pem"]}}, "other": 1}"#,
        )
        .unwrap();
        let settings = RegistrySettings::load(&SettingsFiles {
            daemon_json: Some(d.join("daemon.json")),
            certs_d: Some(d.join("certs.d")),
            hoist_configs: vec![
                d.join("etc/config.json"),
                d.join("user.json"),
                d.join("no.json"),
            ],
        })
        .unwrap();
        let cases = [
            (
                "docker.io",
                false,
                vec![],
                vec!["http://127.0.0.1:5001", "https://m.example"],
            ),
            ("10.1.2.3:5000", true, vec![], vec![]),
            ("11.1.2.3:5000", false, vec![], vec![]),
            ("[fd12::1]:5000", true, vec![], vec![]),
            ("legacy.example:5000", true, vec![], vec![]),
            ("legacy.example", false, vec![], vec![]),
            (
                "secure.example:443",
                false,
                vec![d.join("certs.d/secure.example:443/ca.crt")],
                vec![],
            ),
            (
                "corp.example",
                true,
                vec![PathBuf::from("/abs/user.pem")],
                vec![],
            ),
        ];
        for (host, insecure, cas, mirrors) in cases {
            let got = settings.for_host(host);
            assert_eq!(got.insecure, insecure, "{host}");
            assert_eq!(got.ca_certificates, cas, "{host}");
            assert_eq!(got.mirrors, mirrors, "{host}");
        }
    }

    #[test]
    fn daemon_mirrors_without_hoist_config() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.json");
        std::fs::write(
            &path,
            r#"{"registry-mirrors": ["https://m1", "https://m2"]}"#,
        )
        .unwrap();
        let settings = RegistrySettings::load(&SettingsFiles {
            daemon_json: Some(path),
            ..SettingsFiles::default()
        })
        .unwrap();
        assert_eq!(
            settings.for_host("docker.io").mirrors,
            ["https://m1", "https://m2"]
        );
    }

    #[test]
    fn bad_settings_name_the_file() {
        let cases = [
            (
                "daemon.json",
                r#"{"insecure-registries": ["10.0.0.0/99"]}"#,
                "not a CIDR",
            ),
            (
                "daemon.json",
                r#"{"registry-mirrors": "one"}"#,
                "invalid type",
            ),
            (
                "daemon.json",
                r#"{"registry-mirrors": ["mirror.example"]}"#,
                "registry-mirrors: invalid mirror: no scheme specified for \"mirror.example\": must use either 'https://' or 'http://'",
            ),
            (
                "daemon.json",
                r#"{"registry-mirrors": ["ftp://m.example"]}"#,
                "invalid mirror: unsupported scheme \"ftp\"",
            ),
            (
                "daemon.json",
                r#"{"registry-mirrors": ["https://me:s3cret@m.example"]}"#,
                "invalid mirror: username/password not allowed in URI \"https://me:xxxxx@m.example/\"",
            ),
            (
                "daemon.json",
                r#"{"registry-mirrors": ["https://m.example/?a=b"]}"#,
                "invalid mirror: query or fragment",
            ),
            (
                "hoist.json",
                r#"{"registries": {"h": {"insecur": true}}}"#,
                "unknown field",
            ),
            ("hoist.json", r#"{"registries": {"": {}}}"#, "empty host"),
            ("hoist.json", "{", "EOF"),
        ];
        for (name, text, want) in cases {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            let files = if name == "daemon.json" {
                SettingsFiles {
                    daemon_json: Some(path.clone()),
                    ..SettingsFiles::default()
                }
            } else {
                SettingsFiles {
                    hoist_configs: vec![path.clone()],
                    ..SettingsFiles::default()
                }
            };
            let err = RegistrySettings::load(&files).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
            assert!(err.contains(name), "{text}: {err}");
            assert!(!err.contains("s3cret"), "{text}: {err}");
        }
    }

    #[test]
    fn insecure_flag() {
        let mut settings = RegistrySettings::default();
        settings.allow_insecure("reg.example:5000").unwrap();
        settings.allow_insecure("192.168.0.0/16").unwrap();
        assert!(settings.for_host("reg.example:5000").insecure);
        assert!(settings.for_host("192.168.7.7:5000").insecure);
        assert!(settings.for_host("192.168.7.7").insecure);
        assert!(!settings.for_host("reg.example").insecure);
        assert!(settings.allow_insecure("1.2.3.4/40").is_err());
        assert!(settings.allow_insecure("").is_err());
    }

    #[test]
    fn configured_and_loopback_settings() {
        let mut settings = RegistrySettings::default();
        settings.set(
            "reg.example:5000",
            HostSettings {
                insecure: true,
                ..HostSettings::default()
            },
        );
        assert!(settings.for_host("reg.example:5000").insecure);
        assert!(settings.for_host("localhost:5000").insecure);
        assert!(!settings.for_host("docker.io").insecure);
    }
}
