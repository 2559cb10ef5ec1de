//! `--security-opt`, `--allow` and the resource flags, as `docker run` and
//! `docker build` take them.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use hoist_sandbox::{Resources, SeccompProfile, Security, Ulimit};

/// Docker's `--security-opt` values that hoist supports: `seccomp=unconfined`,
/// `seccomp=PROFILE.json` (also the legacy `seccomp:…`),
/// `no-new-privileges[=true|false]` and `systempaths=unconfined`. Anything
/// else is refused by name.
pub fn parse_security_opts(opts: &[String]) -> anyhow::Result<Security> {
    let mut security = Security::default();
    for opt in opts {
        let (key, value) = match opt.split_once(['=', ':']) {
            Some((k, v)) => (k, Some(v)),
            None => (opt.as_str(), None),
        };
        match (key, value) {
            ("seccomp", Some("unconfined")) => security.seccomp = None,
            ("seccomp", Some(path)) if !path.is_empty() => {
                let profile = SeccompProfile::load(Path::new(path))
                    .with_context(|| format!("--security-opt {opt}"))?;
                security.seccomp = (!profile.is_empty()).then(|| Arc::new(profile));
            }
            ("no-new-privileges", None | Some("true")) => security.no_new_privs = true,
            ("no-new-privileges", Some("false")) => security.no_new_privs = false,
            ("systempaths", Some("unconfined")) => security.unconfined_system_paths = true,
            _ => bail!(
                "invalid --security-opt {opt:?}: supported are seccomp=unconfined, \
                 seccomp=PROFILE.json, no-new-privileges[=true|false] and \
                 systempaths=unconfined"
            ),
        }
    }
    Ok(security)
}

/// `--allow ENTITLEMENT`: whether `security.insecure` was granted.
/// `network.host` is accepted and changes nothing: host networking needs no
/// entitlement in hoist.
pub fn parse_allow(entitlements: &[String]) -> anyhow::Result<bool> {
    let mut insecure = false;
    for e in entitlements.iter().flat_map(|e| e.split(',')) {
        match e.trim() {
            "security.insecure" => insecure = true,
            "network.host" => {}
            other => bail!(
                "invalid entitlement {other:?}: supported are security.insecure and network.host"
            ),
        }
    }
    Ok(insecure)
}

/// `docker build`'s resource flags.
#[derive(Debug, Default, clap::Args)]
pub struct ResourceArgs {
    /// Memory limit for RUN (e.g. 512m, 2g)
    #[arg(short = 'm', long, value_name = "BYTES")]
    memory: Option<String>,
    /// Memory plus swap for RUN; -1 for unlimited swap
    #[arg(long = "memory-swap", value_name = "BYTES", allow_hyphen_values = true)]
    memory_swap: Option<String>,
    /// CPU shares (relative weight) for RUN
    #[arg(short = 'c', long = "cpu-shares")]
    cpu_shares: Option<u64>,
    /// Limit the CPU CFS period for RUN (microseconds)
    #[arg(long = "cpu-period")]
    cpu_period: Option<u64>,
    /// Limit the CPU CFS quota for RUN (microseconds per period)
    #[arg(long = "cpu-quota", allow_hyphen_values = true)]
    cpu_quota: Option<i64>,
    /// CPUs in which to allow RUN (0-3, 0,1)
    #[arg(long = "cpuset-cpus")]
    cpuset_cpus: Option<String>,
    /// Parent cgroup of RUN's cgroups
    #[arg(long = "cgroup-parent")]
    cgroup_parent: Option<String>,
    /// Ulimit options for RUN (NAME=SOFT[:HARD])
    #[arg(long = "ulimit", value_name = "ULIMIT")]
    ulimits: Vec<String>,
    /// Size of /dev/shm for RUN (default 64m)
    #[arg(long = "shm-size", value_name = "BYTES")]
    shm_size: Option<String>,
    /// Process limit for RUN (hoist's default: 4096; -1 for none), as `docker
    /// run --pids-limit`
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pids_limit: Option<i64>,
    /// Add a custom host-to-IP mapping to RUN's /etc/hosts (HOST:IP)
    #[arg(long = "add-host", value_name = "HOST:IP")]
    add_hosts: Vec<String>,
}

impl ResourceArgs {
    pub fn resources(&self) -> anyhow::Result<Resources> {
        let memory = self
            .memory
            .as_deref()
            .map(|m| parse_bytes(m).with_context(|| format!("invalid --memory {m:?}")))
            .transpose()?;
        let memory_swap = match self.memory_swap.as_deref() {
            None => None,
            Some("-1") => Some(-1),
            Some(v) => Some(
                i64::try_from(
                    parse_bytes(v).with_context(|| format!("invalid --memory-swap {v:?}"))?,
                )
                .context("--memory-swap is too large")?,
            ),
        };
        if let (Some(m), Some(s)) = (memory, memory_swap)
            && s != -1
            && (s as u64) < m
        {
            bail!("minimum memoryswap limit should be larger than memory limit, see usage");
        }
        let ulimits = self
            .ulimits
            .iter()
            .map(|u| Ulimit::parse(u).map_err(anyhow::Error::from))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let shm_size = self
            .shm_size
            .as_deref()
            .map(|s| parse_bytes(s).with_context(|| format!("invalid --shm-size {s:?}")))
            .transpose()?;
        Ok(Resources {
            memory,
            memory_swap,
            cpu_shares: self.cpu_shares,
            cpu_period: self.cpu_period,
            cpu_quota: self.cpu_quota,
            cpuset_cpus: self.cpuset_cpus.clone(),
            cgroup_parent: self.cgroup_parent.clone(),
            pids_limit: self.pids_limit,
            ulimits,
            shm_size,
        })
    }

    /// `--add-host HOST:IP` (or `HOST=IP`) pairs.
    pub fn add_hosts(&self) -> anyhow::Result<Vec<(String, String)>> {
        self.add_hosts
            .iter()
            .map(|spec| {
                let (host, ip) = spec
                    .split_once('=')
                    .or_else(|| spec.split_once(':'))
                    .filter(|(h, ip)| !h.is_empty() && !ip.is_empty())
                    .with_context(|| format!("invalid --add-host {spec:?}: expected HOST:IP"))?;
                ip.parse::<std::net::IpAddr>()
                    .with_context(|| format!("invalid IP address in --add-host {spec:?}"))?;
                Ok((host.to_owned(), ip.to_owned()))
            })
            .collect()
    }
}

/// Docker's RAMInBytes: a number with an optional b, k, m, g, t or p suffix
/// (binary multiples), optionally followed by `b` or `ib`.
pub fn parse_bytes(s: &str) -> anyhow::Result<u64> {
    let lower = s.trim().to_ascii_lowercase();
    let num_end = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (num, unit) = lower.split_at(num_end);
    let value: f64 = num.parse().with_context(|| format!("invalid size {s:?}"))?;
    let unit = unit.trim_end_matches("ib").trim_end_matches('b');
    let shift = match unit {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        _ => bail!("invalid size {s:?}: unknown unit"),
    };
    Ok((value * (1u64 << shift) as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_opts() {
        let opts =
            |v: &[&str]| parse_security_opts(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(
            opts(&[]).unwrap().seccomp.is_some(),
            "Docker's profile by default"
        );
        assert!(opts(&["seccomp=unconfined"]).unwrap().seccomp.is_none());
        assert!(opts(&["seccomp:unconfined"]).unwrap().seccomp.is_none());
        assert!(!opts(&["no-new-privileges=false"]).unwrap().no_new_privs);
        assert!(
            opts(&["systempaths=unconfined"])
                .unwrap()
                .unconfined_system_paths
        );
        assert!(!opts(&[]).unwrap().unconfined_system_paths);
        assert!(opts(&["systempaths=confined"]).is_err());
        let err = format!("{:#}", opts(&["apparmor=x"]).unwrap_err());
        assert!(
            err.contains("invalid --security-opt \"apparmor=x\""),
            "{err}"
        );
        let err = format!("{:#}", opts(&["seccomp=/nonexistent.json"]).unwrap_err());
        assert!(err.contains("/nonexistent.json"), "{err}");
    }

    #[test]
    fn entitlements() {
        let allow = |v: &[&str]| parse_allow(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(!allow(&[]).unwrap());
        assert!(allow(&["security.insecure"]).unwrap());
        assert!(allow(&["network.host,security.insecure"]).unwrap());
        assert!(allow(&["device"]).is_err());
    }

    #[test]
    fn sizes() {
        for (input, want) in [
            ("512", 512),
            ("512b", 512),
            ("4k", 4096),
            ("64m", 64 << 20),
            ("1g", 1 << 30),
            ("1GiB", 1 << 30),
            ("1.5g", 3 << 29),
        ] {
            assert_eq!(parse_bytes(input).unwrap(), want, "{input}");
        }
        assert!(parse_bytes("12x").is_err());
        assert!(parse_bytes("m").is_err());
    }
}
