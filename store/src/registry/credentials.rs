//! Credentials per registry host. The client asks a [`CredentialSource`]
//! for the host it is about to talk to, and only for that host: a
//! credential is never sent to another host, not even across a redirect.

use std::collections::BTreeMap;
use std::fmt;

/// What a registry accepts for one host.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// `username`/`password` (or a base64 `auth` entry decoded to them):
    /// Basic auth, or the token server's GET with Basic auth.
    Basic { username: String, password: String },
    /// An OAuth2 refresh token (`identitytoken` in config.json): exchanged
    /// at the token server with the `refresh_token` grant.
    IdentityToken { username: String, token: String },
}

impl Credential {
    /// The user name, which may be shown; the secret never is.
    pub fn username(&self) -> &str {
        match self {
            Credential::Basic { username, .. } | Credential::IdentityToken { username, .. } => {
                username
            }
        }
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Credential::IdentityToken { username, .. } => f
                .debug_struct("IdentityToken")
                .field("username", username)
                .field("token", &"<redacted>")
                .finish(),
        }
    }
}

/// Why credentials for a host could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("{path}: {reason}")]
    Config { path: String, reason: String },
    #[error("credential helper docker-credential-{helper}: {reason}")]
    Helper { helper: String, reason: String },
}

/// Where the client gets credentials from. `host` is the registry host as
/// the reference names it after normalisation (`docker.io`, `localhost:5000`).
pub trait CredentialSource: Send + Sync {
    /// The credential for `host`, or `None` to go anonymous.
    fn credential_for(&self, host: &str) -> Result<Option<Credential>, CredentialError>;
}

/// A fixed map of credentials: for tests, and for `--username` style flags.
#[derive(Clone, Debug, Default)]
pub struct StaticCredentials {
    by_host: BTreeMap<String, Credential>,
}

impl StaticCredentials {
    /// Adds or replaces the credential for `host`.
    pub fn insert(&mut self, host: impl Into<String>, credential: Credential) -> &mut Self {
        self.by_host.insert(host.into(), credential);
        self
    }
}

impl CredentialSource for StaticCredentials {
    fn credential_for(&self, host: &str) -> Result<Option<Credential>, CredentialError> {
        Ok(self.by_host.get(host).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_secrets() {
        let cases = [
            Credential::Basic {
                username: "u".into(),
                password: "s3cret-pw".into(),
            },
            Credential::IdentityToken {
                username: "u".into(),
                token: "s3cret-tok".into(),
            },
        ];
        for credential in cases {
            let shown = format!("{credential:?}");
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(shown.contains("redacted"), "{shown}");
        }
    }

    #[test]
    fn static_credentials_answer_only_their_host() {
        let mut source = StaticCredentials::default();
        source.insert(
            "localhost:5000",
            Credential::Basic {
                username: "u".into(),
                password: "p".into(),
            },
        );
        assert!(source.credential_for("localhost:5000").unwrap().is_some());
        assert!(source.credential_for("localhost:5001").unwrap().is_none());
    }
}
