//! Image references with Docker's normalisation rules
//! (github.com/distribution/reference: `ParseNormalizedNamed`,
//! `TagNameOnly`, `FamiliarString`): `busybox` is
//! `docker.io/library/busybox:latest`, `localhost:5000/a:b` keeps its domain.

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

use crate::digest::{Digest, parse_digest};

const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_PREFIX: &str = "library/";
const NAME_TOTAL_LENGTH_MAX: usize = 255;

/// The anchored reference grammar of distribution/reference.
static REFERENCE: LazyLock<Regex> = LazyLock::new(|| {
    let alnum = "[a-z0-9]+";
    let separator = "(?:[._]|__|[-]+)";
    let path_component = format!("{alnum}(?:{separator}{alnum})*");
    let domain_component = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
    let ipv6 = r"\[(?:[a-fA-F0-9:]+)\]";
    let host = format!("(?:{domain_component}(?:\\.{domain_component})*|{ipv6})");
    let domain = format!("{host}(?::[0-9]+)?");
    let name = format!("(?:{domain}/)?{path_component}(?:/{path_component})*");
    // Go's `\w` is ASCII; Rust's is Unicode, and 128 repetitions of it
    // made this regex take ~50 ms to compile on every command.
    let tag = "[0-9A-Za-z_][0-9A-Za-z_.-]{0,127}";
    let digest = "[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}";
    #[allow(clippy::unwrap_used)] // a constant pattern, covered by the tests
    Regex::new(&format!("^({name})(?::({tag}))?(?:@({digest}))?$")).unwrap()
});

/// A reference Docker would refuse, with Docker's wording.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("invalid reference format")]
    InvalidFormat,
    #[error("invalid reference format: repository name ({0}) must be lowercase")]
    Uppercase(String),
    #[error("invalid repository name ({0}), cannot specify 64-byte hexadecimal strings")]
    HexName(String),
    #[error("repository name must have at least one component")]
    Empty,
    #[error("repository name must not be more than 255 characters")]
    TooLong,
    #[error("invalid digest format: {0}")]
    InvalidDigest(String),
}

/// A normalised image reference: `domain/path[:tag][@digest]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses a user-supplied reference like `docker` does, without adding a
    /// default tag (see [`Reference::with_default_tag`]).
    pub fn parse_normalized(input: &str) -> Result<Reference, ReferenceError> {
        if input.len() == 64
            && input
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(ReferenceError::HexName(input.to_owned()));
        }
        let (domain, remainder) = split_docker_domain(input);
        let remote = remainder.split(':').next().unwrap_or_default();
        if remote.to_lowercase() != remote {
            return Err(ReferenceError::Uppercase(remote.to_owned()));
        }
        let full = format!("{domain}/{remainder}");
        let Some(caps) = REFERENCE.captures(&full) else {
            if input.is_empty() {
                return Err(ReferenceError::Empty);
            }
            return Err(ReferenceError::InvalidFormat);
        };
        let name = caps.get(1).map_or("", |m| m.as_str());
        if name.len() > NAME_TOTAL_LENGTH_MAX {
            return Err(ReferenceError::TooLong);
        }
        let digest = match caps.get(3) {
            Some(m) => Some(
                parse_digest(m.as_str())
                    .map_err(|err| ReferenceError::InvalidDigest(err.to_string()))?,
            ),
            None => None,
        };
        Ok(Reference {
            domain,
            path: name[name.find('/').map_or(0, |i| i + 1)..].to_owned(),
            tag: caps.get(2).map(|m| m.as_str().to_owned()),
            digest,
        })
    }

    /// Same as [`Reference::parse_tagged`]: what `-t`, `tag` and `pull` accept.
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        Self::parse_tagged(input)
    }

    /// Parses and adds `:latest` when neither tag nor digest is given
    /// (Docker's `TagNameOnly`): what `docker tag`/`pull` do.
    pub fn parse_tagged(input: &str) -> Result<Reference, ReferenceError> {
        Ok(Self::parse_normalized(input)?.with_default_tag())
    }

    /// Adds the `latest` tag when there is neither tag nor digest.
    pub fn with_default_tag(mut self) -> Reference {
        if self.tag.is_none() && self.digest.is_none() {
            self.tag = Some("latest".to_owned());
        }
        self
    }

    /// `docker.io`, `localhost:5000`, ...
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The path after the domain: `library/busybox`.
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The full repository name: `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The repository as Docker shows it: `busybox`, `user/app`,
    /// `localhost:5000/app`.
    pub fn familiar_name(&self) -> String {
        if self.domain != DEFAULT_DOMAIN {
            return self.name();
        }
        match self.path.strip_prefix(OFFICIAL_PREFIX) {
            Some(rest) if !rest.contains('/') => rest.to_owned(),
            _ => self.path.clone(),
        }
    }

    /// The familiar form with tag and digest: `busybox:latest`. This is the
    /// string recorded as `org.opencontainers.image.ref.name`.
    pub fn familiar_string(&self) -> String {
        self.render(&self.familiar_name())
    }

    /// The same reference without its digest.
    pub fn without_digest(&self) -> Reference {
        Reference {
            digest: None,
            ..self.clone()
        }
    }

    fn render(&self, name: &str) -> String {
        let mut out = name.to_owned();
        if let Some(tag) = &self.tag {
            out.push(':');
            out.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            out.push('@');
            out.push_str(digest.as_ref());
        }
        out
    }
}

impl fmt::Display for Reference {
    /// The fully normalised form: `docker.io/library/busybox:latest`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(&self.name()))
    }
}

impl std::str::FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse_normalized(s)
    }
}

fn split_docker_domain(name: &str) -> (String, String) {
    let (mut domain, mut remainder) = match name.find('/') {
        Some(i)
            if name[..i].contains(['.', ':'])
                || &name[..i] == "localhost"
                || name[..i].to_lowercase() != name[..i] =>
        {
            (name[..i].to_owned(), name[i + 1..].to_owned())
        }
        _ => (DEFAULT_DOMAIN.to_owned(), name.to_owned()),
    };
    if domain == LEGACY_DEFAULT_DOMAIN {
        domain = DEFAULT_DOMAIN.to_owned();
    }
    if domain == DEFAULT_DOMAIN && !remainder.contains('/') {
        remainder = format!("{OFFICIAL_PREFIX}{remainder}");
    }
    (domain, remainder)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn normalisation_table() {
        let d_ref = format!("busybox@{D}");
        let d_full = format!("docker.io/library/busybox@{D}");
        let td_ref = format!("localhost:5000/a/b:v1@{D}");
        let td_full = td_ref.clone();
        // input, full normalised (with default tag), familiar
        let cases: &[(&str, &str, &str)] = &[
            (
                "busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            (
                "busybox:1.36",
                "docker.io/library/busybox:1.36",
                "busybox:1.36",
            ),
            (
                "library/busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            (
                "docker.io/busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            (
                "index.docker.io/busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            (
                "docker.io/library/busybox:x",
                "docker.io/library/busybox:x",
                "busybox:x",
            ),
            ("user/app", "docker.io/user/app:latest", "user/app:latest"),
            (
                "user/sub/app:t",
                "docker.io/user/sub/app:t",
                "user/sub/app:t",
            ),
            (
                "docker.io/library/a/b",
                "docker.io/library/a/b:latest",
                "library/a/b:latest",
            ),
            (
                "localhost/app",
                "localhost/app:latest",
                "localhost/app:latest",
            ),
            (
                "localhost:5000/a:b",
                "localhost:5000/a:b",
                "localhost:5000/a:b",
            ),
            (
                "quay.io/org/app:1.0",
                "quay.io/org/app:1.0",
                "quay.io/org/app:1.0",
            ),
            (
                "Registry.Example/app",
                "Registry.Example/app:latest",
                "Registry.Example/app:latest",
            ),
            (
                "[::1]:5000/app",
                "[::1]:5000/app:latest",
                "[::1]:5000/app:latest",
            ),
            (
                "a_b.c-d__e---f",
                "docker.io/library/a_b.c-d__e---f:latest",
                "a_b.c-d__e---f:latest",
            ),
            (
                "app:V_1.2-rc",
                "docker.io/library/app:V_1.2-rc",
                "app:V_1.2-rc",
            ),
            (&d_ref, &d_full, &d_ref),
            (&td_ref, &td_full, &td_ref),
        ];
        for (input, full, familiar) in cases {
            let r = Reference::parse_tagged(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.to_string(), *full, "full form of {input}");
            assert_eq!(r.familiar_string(), *familiar, "familiar form of {input}");
        }
    }

    #[test]
    fn invalid_references_use_dockers_messages() {
        let hex = "a".repeat(64);
        let long = format!("a/{}", "b".repeat(260));
        let cases: &[(&str, &str)] = &[
            ("", "repository name must have at least one component"),
            (
                "Busybox",
                "invalid reference format: repository name (library/Busybox) must be lowercase",
            ),
            (
                "user/App:1",
                "invalid reference format: repository name (user/App) must be lowercase",
            ),
            (
                &hex,
                &format!(
                    "invalid repository name ({hex}), cannot specify 64-byte hexadecimal strings"
                ),
            ),
            ("busybox:", "invalid reference format"),
            ("busybox:-x", "invalid reference format"),
            ("bus box", "invalid reference format"),
            ("a//b", "invalid reference format"),
            ("-a", "invalid reference format"),
            ("a:b:c", "invalid reference format"),
            (":tag", "invalid reference format"),
            ("busybox@sha256:abc", "invalid reference format"),
            (
                &long,
                "repository name must not be more than 255 characters",
            ),
        ];
        for (input, message) in cases {
            let err = Reference::parse_normalized(input).expect_err(input);
            assert_eq!(err.to_string(), *message, "error for {input:?}");
        }
    }

    #[test]
    fn tag_is_kept_and_not_defaulted_with_digest() {
        let r = Reference::parse_tagged(&format!("busybox@{D}")).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest().map(|d| d.to_string()).as_deref(), Some(D));
        assert_eq!(r.without_digest().to_string(), "docker.io/library/busybox");
    }
}
