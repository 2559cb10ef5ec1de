//! Build arguments: the values given with `--build-arg`, the platform
//! arguments BuildKit predefines, and the proxy arguments that are usable
//! without an `ARG` line.
//!
//! See <https://docs.docker.com/reference/dockerfile/#automatic-platform-args-in-the-global-scope>
//! and <https://docs.docker.com/reference/dockerfile/#predefined-args>.

use std::collections::BTreeMap;

/// The proxy variables Docker passes to RUN without an `ARG` declaration.
/// They are left out of history so that credentials in them do not leak
/// into the image.
pub const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// An OS/architecture pair, as in `linux/amd64`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// The platform hoist runs on. Only Linux hosts can run the sandbox.
    pub fn host() -> Self {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        Self {
            os: "linux".to_owned(),
            architecture: architecture.to_owned(),
            variant: None,
        }
    }

    /// Parses `os/arch[/variant]`, normalising Docker's aliases.
    pub fn parse(spec: &str) -> Option<Self> {
        let mut parts = spec.split('/');
        let os = parts.next().filter(|s| !s.is_empty())?.to_ascii_lowercase();
        let arch = parts.next().filter(|s| !s.is_empty())?.to_ascii_lowercase();
        let variant = parts.next().map(str::to_owned);
        if parts.next().is_some() {
            return None;
        }
        let architecture = match arch.as_str() {
            "x86_64" | "x86-64" => "amd64".to_owned(),
            "aarch64" => "arm64".to_owned(),
            _ => arch,
        };
        Some(Self {
            os,
            architecture,
            variant,
        })
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// The automatic platform ARGs: defined in the global scope, and inside a
/// stage only once that stage declares them with a bare `ARG NAME`.
pub fn platform_args(target: &Platform, build: &Platform) -> BTreeMap<String, String> {
    let variant = |p: &Platform| p.variant.clone().unwrap_or_default();
    BTreeMap::from([
        ("TARGETPLATFORM".to_owned(), target.to_string()),
        ("TARGETOS".to_owned(), target.os.clone()),
        ("TARGETARCH".to_owned(), target.architecture.clone()),
        ("TARGETVARIANT".to_owned(), variant(target)),
        ("BUILDPLATFORM".to_owned(), build.to_string()),
        ("BUILDOS".to_owned(), build.os.clone()),
        ("BUILDARCH".to_owned(), build.architecture.clone()),
        ("BUILDVARIANT".to_owned(), variant(build)),
    ])
}

/// Resolves `--build-arg` values: `K=V` sets K, and a bare `K` takes K from
/// the environment (and is dropped when the environment lacks it), exactly
/// as `docker build` does.
pub fn parse_build_args<'a>(
    specs: impl IntoIterator<Item = &'a str>,
    environment: impl Fn(&str) -> Option<String>,
) -> BTreeMap<String, String> {
    let mut args = BTreeMap::new();
    for spec in specs {
        match spec.split_once('=') {
            Some((key, value)) => {
                args.insert(key.to_owned(), value.to_owned());
            }
            None => {
                if let Some(value) = environment(spec) {
                    args.insert(spec.to_owned(), value);
                }
            }
        }
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_args_follow_docker() {
        let env = |k: &str| (k == "FROM_ENV").then(|| "env-value".to_owned());
        let args = parse_build_args(["A=1", "B=", "C=x=y", "FROM_ENV", "MISSING"], env);
        let expected: BTreeMap<String, String> = [
            ("A", "1"),
            ("B", ""),
            ("C", "x=y"),
            ("FROM_ENV", "env-value"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(args, expected);
    }

    #[test]
    fn platforms_parse_and_normalise() {
        for (spec, expected) in [
            ("linux/amd64", Some("linux/amd64")),
            ("linux/x86_64", Some("linux/amd64")),
            ("Linux/AArch64", Some("linux/arm64")),
            ("linux/arm/v7", Some("linux/arm/v7")),
            ("linux", None),
            ("linux/amd64/v2/x", None),
        ] {
            let parsed = Platform::parse(spec).map(|p| p.to_string());
            assert_eq!(parsed.as_deref(), expected, "{spec}");
        }
    }
}
