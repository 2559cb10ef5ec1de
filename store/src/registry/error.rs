//! The registry client's errors. They name the registry, repository or
//! digest involved, and never carry a credential or token: URLs are shown
//! without their query string (a redirect to storage may carry a signed
//! one), and headers are never shown.

use crate::StoreError;
use crate::registry::CredentialError;

/// Everything that can go wrong talking to a registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{url}: {reason}")]
    Transport { url: String, reason: String },
    #[error("{url}: unexpected status {status}{detail}")]
    Status {
        url: String,
        status: u16,
        detail: String,
    },
    #[error("{what}: unauthorized: authentication required{detail}")]
    Unauthorized { what: String, detail: String },
    #[error("{what}: denied{detail}")]
    Denied { what: String, detail: String },
    #[error("manifest for {0} not found: manifest unknown")]
    ManifestNotFound(String),
    #[error(
        "{reference}: schema1 manifests are no longer supported (the image is too old; push it again with a recent client)"
    )]
    Schema1 { reference: String },
    #[error("{what} is too large: more than {limit} bytes")]
    TooLarge { what: String, limit: u64 },
    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },
    #[error(
        "no matching manifest for {wanted} in the manifest list entries (available: {available})"
    )]
    NoMatchingPlatform { wanted: String, available: String },
    #[error("invalid platform {0:?}: expected os/arch[/variant]")]
    InvalidPlatform(String),
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RegistryError {
    pub(crate) fn invalid(what: impl Into<String>, reason: impl ToString) -> RegistryError {
        RegistryError::Invalid {
            what: what.into(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn transport(url: &str, err: &reqwest::Error) -> RegistryError {
        // reqwest's Display names the URL (with its query); show ours.
        let mut reason = err.without_url_ref();
        if reason.is_empty() {
            reason = "request failed".to_owned();
        }
        RegistryError::Transport {
            url: redact_url(url),
            reason,
        }
    }
}

trait WithoutUrl {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_ref(&self) -> String {
        // The chain of causes, without the URL reqwest adds at the top.
        let mut parts = Vec::new();
        let mut source = std::error::Error::source(self);
        while let Some(err) = source {
            parts.push(err.to_string());
            source = err.source();
        }
        if parts.is_empty() {
            if self.is_timeout() {
                return "timed out".to_owned();
            }
            if self.is_body() || self.is_decode() {
                return "error reading the response body".to_owned();
            }
            return "request failed".to_owned();
        }
        parts.dedup();
        parts.join(": ")
    }
}

/// A URL without its query string or user info.
pub(crate) fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            let had_query = parsed.query().is_some();
            parsed.set_query(None);
            let mut shown = parsed.to_string();
            if had_query {
                shown.push_str("?<redacted>");
            }
            shown
        }
        Err(_) => url.split('?').next().unwrap_or_default().to_owned(),
    }
}

/// The registry's own words from an error body
/// (`{"errors":[{"code":"...","message":"..."}]}`), as `: message`.
pub(crate) fn error_detail(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorEntry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    match serde_json::from_slice::<Errors>(body) {
        Ok(errors) if !errors.errors.is_empty() => errors
            .errors
            .iter()
            .map(|e| match (e.code.is_empty(), e.message.is_empty()) {
                (false, false) => format!(": {}: {}", e.code.to_lowercase(), e.message),
                (true, false) => format!(": {}", e.message),
                _ => format!(": {}", e.code.to_lowercase()),
            })
            .collect(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_queries_and_user_info() {
        for (url, want) in [
            (
                "https://u:p@reg.example/v2/a/blobs/sha256:ab?X-Amz-Signature=s3cret",
                "https://reg.example/v2/a/blobs/sha256:ab?<redacted>",
            ),
            ("http://127.0.0.1:5000/v2/", "http://127.0.0.1:5000/v2/"),
        ] {
            assert_eq!(redact_url(url), want, "{url}");
        }
    }

    #[test]
    fn registry_error_bodies() {
        let body =
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#;
        assert_eq!(error_detail(body), ": manifest_unknown: manifest unknown");
        assert_eq!(error_detail(b"<html>"), "");
    }
}
