//! `ADD <url>` without `--checksum`, as BuildKit's HTTP source
//! (`source/http`): the step is keyed by what the URL serves, and what it
//! served is remembered per URL, so that an unchanged URL is not
//! downloaded again.
//!
//! - A download whose response had an `ETag` is kept in the store (a
//!   blob) with its ETag, digest, file name and `Last-Modified` time, in a
//!   cache entry of its own (`builder prune` collects it like the rest).
//! - The next build asks with a `HEAD` carrying `If-None-Match`: a 200 or
//!   304 naming the known ETag (or a 304 naming none) means the stored
//!   content is current. Otherwise a `GET` with `If-None-Match` follows:
//!   304 reuses the stored content, 200 downloads (BuildKit's order: some
//!   servers answer HEAD properly but not a conditional GET).
//! - A reused download keeps its recorded `Last-Modified` as its mtime.
//! - `--dry-run` makes no request: it keys the step by the last download
//!   the store remembers, and says so, or predicts a run when there is none.

use std::io::Write as _;

use hoist_store::digest::{Digest, sha256_bytes};
use hoist_store::{CacheEntry, ExpectedBlob, Store};
use serde::{Deserialize, Serialize};

use crate::copy::fetch::{self, Download, FetchError, Fetched};
use crate::error::StepError;

/// What the store remembers of a URL's last download.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct UrlRecord {
    /// The `ETag` it came with; the content is kept only then.
    pub etag: Option<String>,
    pub digest: String,
    pub name: String,
    pub mtime: Option<i64>,
}

/// What an `ADD` step gets for one URL.
pub(crate) enum UrlContent {
    /// Downloaded now.
    Downloaded(Download),
    /// Unchanged since a download the store kept.
    Stored(UrlRecord),
    /// `--dry-run`: as last downloaded (nothing fetched).
    Predicted(UrlRecord),
    /// `--dry-run` of a URL never downloaded.
    Unknown,
}

impl UrlContent {
    /// What identifies the content in the step's key: its digest, and the
    /// name and mtime it gets in the image.
    pub(crate) fn identity(&self) -> String {
        let (digest, mtime, name) = match self {
            UrlContent::Downloaded(d) => (&d.digest, d.mtime, &d.name),
            UrlContent::Stored(r) | UrlContent::Predicted(r) => (&r.digest, r.mtime, &r.name),
            UrlContent::Unknown => return "unknown (not downloaded under --dry-run)".to_owned(),
        };
        let mtime = mtime.map_or_else(|| "-".to_owned(), |t| t.to_string());
        format!("{digest} {mtime} {name}")
    }

    /// The download to copy: a stored one is copied out of the store
    /// (verified) into a temporary file in `tmp_dir`.
    pub(crate) fn into_download(
        self,
        store: &Store,
        url: &str,
        tmp_dir: &std::path::Path,
    ) -> Result<Download, StepError> {
        let record = match self {
            UrlContent::Downloaded(download) => return Ok(download),
            UrlContent::Stored(record) => record,
            UrlContent::Predicted(_) | UrlContent::Unknown => {
                return Err(StepError::NotDownloaded(fetch::redact(url)));
            }
        };
        let digest = parse_digest(&record.digest)?;
        let mut reader = store.open_blob(&digest)?;
        let what = "copying a stored download";
        let mut file = tempfile::NamedTempFile::new_in(tmp_dir).map_err(StepError::io(what))?;
        std::io::copy(&mut reader, file.as_file_mut()).map_err(StepError::io(what))?;
        file.flush().map_err(StepError::io(what))?;
        Ok(Download {
            file,
            name: record.name,
            mtime: record.mtime,
            digest: record.digest,
            etag: record.etag,
        })
    }
}

fn parse_digest(digest: &str) -> Result<Digest, StepError> {
    hoist_store::digest::parse_digest(digest).map_err(|err| StepError::Store(err.into()))
}

/// The cache entry that remembers `url`: a digest of it (credentials
/// included, as BuildKit's `urlHash`), so that the URL itself is never
/// written down.
fn record_key(url: &str) -> String {
    let digest = sha256_bytes(format!("hoist http source v1\0{url}").as_bytes());
    digest.to_string()["sha256:".len()..].to_owned()
}

/// The last download of `url` the store remembers, without using it
/// (`--dry-run`).
pub(crate) fn known(store: &Store, url: &str) -> Option<UrlRecord> {
    let entry = store.cache_peek(&record_key(url)).ok().flatten()?;
    serde_json::from_value(entry.payload).ok()
}

/// What `url` serves now: the stored content when the server says its
/// ETag still holds, else a download (remembered for the next build).
pub(crate) fn resolve(
    store: &Store,
    url: &str,
    tmp_dir: &std::path::Path,
) -> Result<UrlContent, StepError> {
    let key = record_key(url);
    // A hit leases the stored content to this build, so GC cannot take it
    // between the server's answer and the copy.
    let stored = store
        .cache_get(&key)?
        .and_then(|entry| {
            let keeps_content = !entry.blobs.is_empty();
            let record: UrlRecord = serde_json::from_value(entry.payload).ok()?;
            keeps_content.then_some(record)
        })
        .filter(|record| record.etag.is_some());
    if let Some(record) = &stored
        && let Some(etag) = &record.etag
        && head_says_unchanged(url, etag)
    {
        return Ok(UrlContent::Stored(record.clone()));
    }
    let known_etag = stored.as_ref().and_then(|r| r.etag.as_deref());
    let fetched = fetch::fetch_unless_match(url, None, tmp_dir, known_etag)
        .map_err(|err| StepError::Copy(err.into()))?;
    let download = match fetched {
        Fetched::NotModified { etag } => {
            let record = stored.expect("only a conditional request gets a 304");
            if etag.is_some() && etag != record.etag {
                return Err(StepError::Copy(
                    FetchError::Status {
                        url: fetch::redact(url),
                        status: reqwest::StatusCode::NOT_MODIFIED,
                    }
                    .into(),
                ));
            }
            return Ok(UrlContent::Stored(record));
        }
        Fetched::Downloaded(download) => download,
    };
    remember(store, &key, &download)?;
    Ok(UrlContent::Downloaded(download))
}

/// BuildKit's first question once it holds content for a URL: a `HEAD`
/// with `If-None-Match`, whose 200 or 304 names the ETag it has (a 304
/// naming none refers to the one asked about). Any failure only means
/// asking again with a `GET`.
fn head_says_unchanged(url: &str, etag: &str) -> bool {
    let Ok(client) = reqwest::blocking::Client::builder().build() else {
        return false;
    };
    let Ok(response) = client
        .head(url)
        .header(reqwest::header::IF_NONE_MATCH, etag)
        .header(reqwest::header::ACCEPT_ENCODING, "gzip")
        .send()
    else {
        return false;
    };
    let status = response.status();
    if status != reqwest::StatusCode::OK && status != reqwest::StatusCode::NOT_MODIFIED {
        return false;
    }
    match response
        .headers()
        .get(reqwest::header::ETAG)
        .and_then(|v| v.to_str().ok())
    {
        Some(answer) => answer == etag,
        None => status == reqwest::StatusCode::NOT_MODIFIED,
    }
}

/// Remembers a download: always what identifies it (for `--dry-run`),
/// and its content too when an ETag can tell later that it still holds.
fn remember(store: &Store, key: &str, download: &Download) -> Result<(), StepError> {
    let digest = parse_digest(&download.digest)?;
    let mut blobs = Vec::new();
    if download.etag.is_some() {
        let path = download.file.path();
        let file = fs_err::File::open(path).map_err(StepError::io("reading a download"))?;
        store.put_blob(
            file,
            Some(&ExpectedBlob {
                digest: digest.clone(),
                size: None,
            }),
        )?;
        blobs.push(digest);
    }
    let record = UrlRecord {
        etag: download.etag.clone(),
        digest: download.digest.clone(),
        name: download.name.clone(),
        mtime: download.mtime,
    };
    let payload = serde_json::to_value(&record).map_err(StepError::CacheEncode)?;
    store.cache_put(&CacheEntry::new(key, payload, blobs, Vec::new()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_keys_are_cache_keys_and_differ_by_url() {
        let cases = [
            "http://host/a",
            "http://host/b",
            "http://user:one@host/a",
            "http://user:two@host/a",
        ];
        let keys: Vec<String> = cases.iter().map(|url| record_key(url)).collect();
        for (url, key) in cases.iter().zip(&keys) {
            hoist_store::cache::validate_key(key).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert!(!key.contains("one") && !key.contains("host"), "{url}");
        }
        let mut unique = keys.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), keys.len(), "{keys:?}");
    }
}
