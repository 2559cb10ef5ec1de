//! Per-host transport settings: plain HTTP, extra CA certificates and
//! mirrors. Docker's rules: loopback hosts may use plain HTTP without being
//! told; any other host needs `--insecure-registry`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

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
}

impl RegistrySettings {
    /// Replaces the settings of `host`.
    pub fn set(&mut self, host: impl Into<String>, settings: HostSettings) -> &mut Self {
        self.hosts.insert(host.into(), settings);
        self
    }

    /// The settings for `host`; loopback hosts are always insecure-allowed.
    pub fn for_host(&self, host: &str) -> HostSettings {
        let mut settings = self.hosts.get(host).cloned().unwrap_or_default();
        settings.insecure |= is_loopback(host);
        settings
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
