//! `ADD <url>`: an HTTP(S) download into a temporary file, verified against
//! `--checksum` before anything reaches the image.

use std::io::{self, Read, Write};

use hoist_store::digest::BackgroundSha256;

/// A downloaded file, ready to copy into the image.
#[derive(Debug)]
pub struct Download {
    pub file: tempfile::NamedTempFile,
    /// From Content-Disposition, else the URL path's last segment.
    pub name: String,
    /// From Last-Modified, in seconds since the epoch.
    pub mtime: Option<i64>,
    pub digest: String,
    /// The server's ETag, as sent (quotes included).
    pub etag: Option<String>,
}

/// The answer to a conditional download ([`fetch_unless_match`]).
#[derive(Debug)]
pub enum Fetched {
    Downloaded(Download),
    /// 304: the content is still the one with this ETag (the response's,
    /// or `None` when it named none).
    NotModified {
        etag: Option<String>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("fetching {url}: {source}")]
    Http { url: String, source: reqwest::Error },
    #[error("fetching {url}: server returned {status}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
    },
    #[error("fetching {url}: {source}")]
    Io { url: String, source: io::Error },
    #[error("digest mismatch for {url}: expected {expected}, got {actual}")]
    ChecksumMismatch {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("invalid checksum {0:?}: only sha256:<64 hex> is supported")]
    BadChecksum(String),
}

/// Whether an ADD source is a URL that hoist fetches over HTTP.
pub fn is_http_url(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

/// Whether an ADD source is a Git repository (BuildKit's `isGitURL`).
pub fn is_git_url(source: &str) -> bool {
    source.starts_with("git://")
        || source.starts_with("git@")
        || source.starts_with("ssh://")
        || (is_http_url(source) && (source.ends_with(".git") || source.contains(".git#")))
}

/// Removes user:password from a URL for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme && !url[scheme + 3..at].contains('/') => {
            format!("{}://xxxxx@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// Downloads `url` into a temporary file in `tmp_dir`.
pub fn fetch(
    url: &str,
    checksum: Option<&str>,
    tmp_dir: &std::path::Path,
) -> Result<Download, FetchError> {
    match fetch_unless_match(url, checksum, tmp_dir, None)? {
        Fetched::Downloaded(download) => Ok(download),
        Fetched::NotModified { .. } => Err(FetchError::Status {
            url: redact(url),
            status: reqwest::StatusCode::NOT_MODIFIED,
        }),
    }
}

/// Downloads `url` unless it still serves one of the ETags in
/// `if_none_match` (an `If-None-Match` value), as BuildKit's HTTP source
/// asks once it has content for the URL.
pub fn fetch_unless_match(
    url: &str,
    checksum: Option<&str>,
    tmp_dir: &std::path::Path,
    if_none_match: Option<&str>,
) -> Result<Fetched, FetchError> {
    let shown = redact(url);
    let expected = match checksum {
        Some(c) => {
            let hex = c.strip_prefix("sha256:").unwrap_or("");
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(FetchError::BadChecksum(c.to_owned()));
            }
            Some(format!("sha256:{}", hex.to_ascii_lowercase()))
        }
        None => None,
    };
    let http = |source| FetchError::Http {
        url: shown.clone(),
        source,
    };
    let io_err = |source| FetchError::Io {
        url: shown.clone(),
        source,
    };
    let client = reqwest::blocking::Client::builder()
        .timeout(None)
        .build()
        .map_err(http)?;
    let mut request = client.get(url);
    if let Some(etags) = if_none_match {
        request = request.header(reqwest::header::IF_NONE_MATCH, etags);
    }
    let mut response = request.send().map_err(http)?;
    let etag = response
        .headers()
        .get(reqwest::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if if_none_match.is_some() && response.status() == reqwest::StatusCode::NOT_MODIFIED {
        return Ok(Fetched::NotModified { etag });
    }
    if !response.status().is_success() {
        return Err(FetchError::Status {
            url: shown.clone(),
            status: response.status(),
        });
    }
    let headers = response.headers();
    let name = headers
        .get(reqwest::header::CONTENT_DISPOSITION)
        .and_then(|v| v.to_str().ok())
        .and_then(disposition_filename)
        .unwrap_or_else(|| url_file_name(response.url().path()));
    let mtime = headers
        .get(reqwest::header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())
        .map(|t| t.timestamp());
    let mut file = tempfile::NamedTempFile::new_in(tmp_dir).map_err(io_err)?;
    let mut hasher = BackgroundSha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match response.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(io_err(err)),
        };
        hasher.update(&buf[..n]).map_err(io_err)?;
        file.write_all(&buf[..n]).map_err(io_err)?;
    }
    file.flush().map_err(io_err)?;
    let digest = hasher.finish().map_err(io_err)?.to_string();
    if let Some(expected) = expected
        && expected != digest
    {
        return Err(FetchError::ChecksumMismatch {
            url: shown,
            expected,
            actual: digest,
        });
    }
    Ok(Fetched::Downloaded(Download {
        file,
        name,
        mtime,
        digest,
        etag,
    }))
}

/// The last non-empty path segment, or `__unnamed__` like BuildKit.
fn url_file_name(path: &str) -> String {
    path.rsplit('/')
        .find(|s| !s.is_empty())
        .filter(|s| *s != "." && *s != "..")
        .map(str::to_owned)
        .unwrap_or_else(|| "__unnamed__".to_owned())
}

/// `attachment; filename="x.tar"` -> `x.tar` (a plain base name only).
fn disposition_filename(value: &str) -> Option<String> {
    for part in value.split(';') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("filename=") {
            let v = v.trim_matches('"');
            let base = v.rsplit(['/', '\\']).next().unwrap_or("");
            if !base.is_empty() && base != "." && base != ".." {
                return Some(base.to_owned());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(url_file_name("/a/b/file.tar.gz"), "file.tar.gz");
        assert_eq!(url_file_name("/a/b/"), "b");
        assert_eq!(url_file_name("/"), "__unnamed__");
        assert_eq!(
            disposition_filename("attachment; filename=\"x.tgz\""),
            Some("x.tgz".into())
        );
        assert_eq!(
            disposition_filename("attachment; filename=\"../../etc/passwd\""),
            Some("passwd".into())
        );
        assert_eq!(disposition_filename("inline"), None);
        assert_eq!(redact("https://u:p@host/x"), "https://xxxxx@host/x");
        assert!(is_git_url("https://github.com/moby/buildkit.git"));
        assert!(is_git_url("git@github.com:moby/buildkit.git"));
        assert!(!is_git_url("https://example.com/a.tar"));
    }
}
