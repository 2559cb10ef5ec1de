//! Garbage collection by mark and sweep, and disk usage.
//!
//! Roots: the images in index.json, the cache entries that are kept, and the
//! leases of live sessions (blobs and snapshots that running hoist processes
//! created or looked up but have not tagged or cached yet).
//!
//! Work in flight: every writer publishes (renames into `blobs/` or
//! `hoist/snapshots/`, writes cache entries, appends to its lease file)
//! while holding the shared lock on `hoist/lock`, and leases what it
//! publishes *before* publishing. GC holds the exclusive lock from reading
//! the roots to the end of the sweep, so it never sees a published but
//! unleased object, and a session's lease lives as long as its process
//! (the session directory's flock). Nothing relies on timestamps.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};

use crate::cache::{CacheEntry, CacheRecord};
use crate::digest::{ChainId, DiffId, Digest, parse_digest};
use crate::image::entry_name;
use crate::store::{Store, fsync_dir, remove_file_if_exists, unpublish_dir};
use crate::unsynced::Unsynced;
use crate::{Result, StoreError};

/// What to collect besides unreferenced blobs and snapshots.
#[derive(Clone, Debug, Default)]
pub struct GcOptions {
    /// Drop every cache entry (`prune --all`).
    pub all_cache: bool,
    /// Drop least-recently-used cache entries until what only the cache
    /// holds fits in this many bytes (`prune --keep-storage`).
    pub keep_storage: Option<u64>,
    /// Remove untagged (`<none>`) images, as `docker image prune` does,
    /// except those pulled through the same index as a tagged image (that
    /// tag's image for another platform).
    pub dangling_images: bool,
    /// Drop cache entries not used for this long (`--filter until=24h`).
    pub cache_unused_for: Option<std::time::Duration>,
    /// Also remove `RUN --mount=type=cache` directories (those unused for
    /// `cache_unused_for` when set, else all).
    pub cache_mounts: bool,
}

/// What a collection removed.
#[derive(Clone, Debug, Default)]
pub struct GcReport {
    /// Manifest digests of untagged images removed from index.json.
    pub images: Vec<Digest>,
    pub cache_entries: Vec<String>,
    pub blobs: Vec<Digest>,
    pub snapshots: Vec<ChainId>,
    /// `RUN --mount=type=cache` directories removed.
    pub cache_mounts: usize,
    /// Bytes freed (blob sizes plus snapshot file sizes).
    pub reclaimed: u64,
}

/// Space used, by kind (`hoist df`).
#[derive(Clone, Debug, Default)]
pub struct DiskUsage {
    pub images: usize,
    /// Images with at least one tag.
    pub tagged_images: usize,
    /// Bytes of blobs referenced by images.
    pub images_size: u64,
    pub snapshots: usize,
    /// Snapshots whose chain belongs to an image.
    pub snapshots_active: usize,
    pub snapshots_size: u64,
    pub cache_entries: usize,
    /// Bytes held only by cache entries.
    pub cache_size: u64,
    /// `RUN --mount=type=cache` directories, and their bytes.
    pub cache_mounts: usize,
    pub cache_mounts_size: u64,
    /// Bytes of blobs referenced by nothing.
    pub unreferenced_blobs_size: u64,
    /// Bytes of snapshots referenced by no image and no cache entry.
    pub unreferenced_snapshots_size: u64,
}

/// Marked objects, as hex strings.
#[derive(Default)]
struct Marks {
    blobs: HashSet<String>,
    chains: HashSet<String>,
    /// Diff IDs of live images, whose compressed variants are kept.
    diff_ids: HashSet<String>,
}

impl Marks {
    fn blob(&mut self, digest: &Digest) {
        self.blobs.insert(digest.digest().to_owned());
    }

    fn image(&mut self, image: &ImageRefs) {
        self.blobs.extend(image.blobs.iter().cloned());
        self.chains.extend(image.chains.iter().cloned());
        self.diff_ids.extend(image.diff_ids.iter().cloned());
    }

    fn cache(&mut self, entry: &CacheEntry) {
        for blob in &entry.blobs {
            self.blob(blob);
        }
        self.chains
            .extend(entry.chain_ids.iter().map(|c| c.hex().to_owned()));
    }
}

pub(crate) struct ImageRefs {
    /// The image's blobs, compressed variants of its layers included.
    pub(crate) blobs: Vec<String>,
    chains: Vec<String>,
    diff_ids: Vec<String>,
}

impl Store {
    /// Collects garbage (see the module docs for what is kept).
    pub fn gc(&self, options: &GcOptions) -> Result<GcReport> {
        let (mut report, doomed) = {
            let _guard = self.lock_exclusive()?;
            self.gc_locked(options)?
        };
        // Unpublished snapshot trees are deleted without the lock, so
        // writers wait only for the mark and the renames. A crash here leaves
        // them in a dead session, removed by the next open.
        for dir in doomed {
            report.reclaimed += dir_size(&dir);
            std::fs::remove_dir_all(&dir).map_err(StoreError::io(&dir))?;
        }
        // All of the trash, whatever its age: builds leave the young.
        let trash = self.trash_dir();
        report.reclaimed += dir_size(&trash);
        crate::trash::empty_trash(&trash, std::time::Duration::ZERO);
        Ok(report)
    }

    fn gc_locked(&self, options: &GcOptions) -> Result<(GcReport, Vec<std::path::PathBuf>)> {
        let leases = self.live_leases()?;
        let mut report = GcReport::default();
        let mut index = self.read_index()?;

        if options.dangling_images {
            let tagged: HashSet<Digest> = index
                .manifests()
                .iter()
                .filter(|d| entry_name(d).is_some())
                .map(|d| d.digest().clone())
                .collect();
            // An untagged image pulled through the same index as a tagged
            // one is that tag's image for another platform, not dangling
            // (Docker's containerd store keeps every platform under the tag).
            let tagged_indexes: HashSet<Digest> =
                tagged.iter().flat_map(|d| self.pulled_indexes(d)).collect();
            let mut kept = Vec::new();
            for d in index.manifests() {
                let leased = leases.blobs.contains(d.digest().digest());
                let platform_of_tag = || {
                    self.pulled_indexes(d.digest())
                        .iter()
                        .any(|i| tagged_indexes.contains(i))
                };
                if entry_name(d).is_none()
                    && !tagged.contains(d.digest())
                    && !leased
                    && !platform_of_tag()
                {
                    report.images.push(d.digest().clone());
                } else {
                    kept.push(d.clone());
                }
            }
            index.set_manifests(kept);
        }

        let mut marks = Marks {
            blobs: leases.blobs,
            chains: leases.chain_ids,
            diff_ids: HashSet::new(),
        };
        for entry in index.manifests() {
            marks.image(&self.image_refs(entry.digest())?);
        }

        let mut cache = self.cache_list()?;
        let (kept, dropped) = if options.all_cache {
            (Vec::new(), cache)
        } else {
            // Entries whose blobs are gone can never hit again.
            let (usable, broken): (Vec<_>, Vec<_>) = cache
                .drain(..)
                .partition(|e| e.blobs.iter().all(|b| self.has_blob(b)));
            let (usable, mut stale): (Vec<_>, Vec<_>) = match options.cache_unused_for {
                Some(age) => {
                    let cutoff = std::time::SystemTime::now()
                        .checked_sub(age)
                        .unwrap_or(std::time::UNIX_EPOCH);
                    usable.into_iter().partition(|e| e.last_used >= cutoff)
                }
                None => (usable, Vec::new()),
            };
            let (kept, mut evicted) = match options.keep_storage {
                Some(limit) => self.evict_lru(usable, &marks, limit)?,
                None => (usable, Vec::new()),
            };
            evicted.append(&mut stale);
            evicted.extend(broken);
            (kept, evicted)
        };
        for entry in &kept {
            marks.cache(entry);
        }

        // The builder's records beside the cache (explanations' indexes)
        // go with the entries they describe: all of them with `--all`,
        // those unused for `until` with it.
        if options.all_cache || options.cache_unused_for.is_some() {
            self.remove_cache_records(if options.all_cache {
                None
            } else {
                options.cache_unused_for
            })?;
        }
        if options.cache_mounts {
            let mut doomed = Vec::new();
            report.cache_mounts =
                self.unpublish_cache_mounts(options.cache_unused_for, &mut doomed)?;
            for dir in doomed {
                report.reclaimed += dir_size(&dir);
                std::fs::remove_dir_all(&dir).map_err(StoreError::io(&dir))?;
            }
        }

        // Unpublish roots first, so a crash mid-sweep leaves only garbage.
        for entry in &dropped {
            remove_file_if_exists(&self.cache_path(&entry.key))?;
            report.cache_entries.push(entry.key.clone());
        }
        if !dropped.is_empty() {
            fsync_dir(&self.cache_dir())?;
        }
        if !report.images.is_empty() {
            let bytes = crate::layout::canonical_json(&index, "index.json")?;
            self.write_atomic(&self.root().join("index.json"), &bytes)?;
        }
        // Compressed variants go with the last image that has their layer.
        for hex in list_dir_names(&self.compressed_dir())? {
            if !marks.diff_ids.contains(&hex) {
                let dir = self.compressed_dir().join(&hex);
                std::fs::remove_dir_all(&dir).map_err(StoreError::io(&dir))?;
            }
        }

        for (hex, size) in list_blobs(&self.blobs_dir())? {
            if marks.blobs.contains(&hex) {
                continue;
            }
            if remove_file_if_exists(&self.blob_path_hex(&hex))? {
                self.forget_unsynced(Unsynced::Blob, &hex)?;
                report.reclaimed += size;
                report
                    .blobs
                    .extend(parse_digest(&format!("sha256:{hex}")).ok());
            }
        }
        fsync_dir(&self.blobs_dir())?;
        // Where-from records go with the blob (or image) they describe.
        let sources = self.root().join("hoist/sources");
        for name in list_dir_names(&sources)? {
            let Some(hex) = name.strip_suffix(".json").filter(|hex| is_hex64(hex)) else {
                continue;
            };
            if !marks.blobs.contains(hex) && !self.blob_path_hex(hex).exists() {
                remove_file_if_exists(&sources.join(&name))?;
            }
        }
        let mut doomed = Vec::new();
        for hex in list_snapshots(&self.snapshots_dir())? {
            if marks.chains.contains(&hex) {
                continue;
            }
            let path = self.snapshots_dir().join(&hex);
            doomed.extend(unpublish_dir(self, &path)?);
            self.forget_unsynced(Unsynced::Snapshot, &hex)?;
            report
                .snapshots
                .extend(format!("sha256:{hex}").parse::<ChainId>().ok());
        }
        Ok((report, doomed))
    }

    /// Space used by images, snapshots and the cache.
    pub fn disk_usage(&self) -> Result<DiskUsage> {
        let index = self.read_index()?;
        let mut usage = DiskUsage::default();
        let mut image_marks = Marks::default();
        let mut seen = HashSet::new();
        let tagged: HashSet<&Digest> = index
            .manifests()
            .iter()
            .filter(|d| entry_name(d).is_some())
            .map(|d| d.digest())
            .collect();
        usage.tagged_images = tagged.len();
        for entry in index.manifests() {
            if seen.insert(entry.digest().clone()) {
                usage.images += 1;
                if let Ok(refs) = self.image_refs(entry.digest()) {
                    image_marks.image(&refs);
                }
            }
        }
        let blobs: HashMap<String, u64> = list_blobs(&self.blobs_dir())?.into_iter().collect();
        let snapshots: HashMap<String, u64> = list_snapshots(&self.snapshots_dir())?
            .into_iter()
            .map(|hex| {
                let size = dir_size(&self.snapshots_dir().join(&hex));
                (hex, size)
            })
            .collect();
        usage.images_size = image_marks.blobs.iter().filter_map(|h| blobs.get(h)).sum();
        usage.snapshots = snapshots.len();
        usage.snapshots_size = snapshots.values().sum();
        usage.snapshots_active = snapshots
            .keys()
            .filter(|h| image_marks.chains.contains(*h))
            .count();
        for dir in list_dir_names(&self.cache_mounts_dir())? {
            usage.cache_mounts += 1;
            usage.cache_mounts_size += dir_size(&self.cache_mounts_dir().join(dir));
        }
        let cache = self.cache_list()?;
        usage.cache_entries = cache.len();
        let mut cache_marks = Marks::default();
        for entry in &cache {
            cache_marks.cache(entry);
        }
        // Bytes held by the cache and by no image.
        usage.cache_size = cache_marks
            .blobs
            .iter()
            .filter(|h| !image_marks.blobs.contains(*h))
            .filter_map(|h| blobs.get(h))
            .sum::<u64>()
            + cache_marks
                .chains
                .iter()
                .filter(|h| !image_marks.chains.contains(*h))
                .filter_map(|h| snapshots.get(h))
                .sum::<u64>();
        let all = Marks {
            blobs: image_marks
                .blobs
                .union(&cache_marks.blobs)
                .cloned()
                .collect(),
            chains: image_marks
                .chains
                .union(&cache_marks.chains)
                .cloned()
                .collect(),
            diff_ids: HashSet::new(),
        };
        usage.unreferenced_blobs_size = blobs
            .iter()
            .filter(|(h, _)| !all.blobs.contains(*h))
            .map(|(_, size)| size)
            .sum();
        usage.unreferenced_snapshots_size = snapshots
            .iter()
            .filter(|(h, _)| !all.chains.contains(*h))
            .map(|(_, size)| size)
            .sum();
        Ok(usage)
    }

    /// Removes the builder's cache records (every [`CacheRecord`]: the
    /// context digest indexes and remembered checksums, one set per context
    /// path, as well as the explanations' records) not written for `age`
    /// (all when `None`). A context's records are rewritten only when a
    /// build hashes something in it, so those of a context unchanged for
    /// `age` go too: its next build hashes it again.
    fn remove_cache_records(&self, age: Option<std::time::Duration>) -> Result<()> {
        let cutoff = age.map(|age| {
            std::time::SystemTime::now()
                .checked_sub(age)
                .unwrap_or(std::time::UNIX_EPOCH)
        });
        for kind in CacheRecord::ALL {
            let dir = self.root().join(kind.dir());
            for name in list_dir_names(&dir)? {
                let path = dir.join(name);
                if let Some(cutoff) = cutoff {
                    let written = std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .map_err(StoreError::io(&path))?;
                    if written >= cutoff {
                        continue;
                    }
                }
                remove_file_if_exists(&path)?;
            }
        }
        Ok(())
    }

    /// `hoist/mounts`: the builder's `RUN --mount=type=cache` directories,
    /// whose mtime is their last use.
    fn cache_mounts_dir(&self) -> std::path::PathBuf {
        self.root().join("hoist/mounts")
    }

    /// Moves cache mount directories unused for `age` (all when `None`)
    /// into this session's temp space, for deletion; returns how many.
    fn unpublish_cache_mounts(
        &self,
        age: Option<std::time::Duration>,
        doomed: &mut Vec<std::path::PathBuf>,
    ) -> Result<usize> {
        let cutoff = age.map(|age| {
            std::time::SystemTime::now()
                .checked_sub(age)
                .unwrap_or(std::time::UNIX_EPOCH)
        });
        let mut count = 0;
        for name in list_dir_names(&self.cache_mounts_dir())? {
            let path = self.cache_mounts_dir().join(&name);
            // A RUN using the directory holds its use lock shared: leave
            // it. Held exclusive here, a new user waits until it is gone
            // (and then makes a fresh one).
            let Some(_unused) = self.lock_unused_cache_mount(&name)? else {
                continue;
            };
            if let Some(cutoff) = cutoff {
                let used = std::fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .map_err(StoreError::io(&path))?;
                if used >= cutoff {
                    continue;
                }
            }
            let target = self.temp_path("cache-mount");
            std::fs::rename(&path, &target).map_err(StoreError::io(&path))?;
            self.remove_cache_mount_locks(&name)?;
            doomed.push(target);
            count += 1;
        }
        // Lock files whose mount is gone (a RUN that failed before making
        // it, or an older hoist's prune) go too, unless a RUN holds them.
        let locks = self.root().join("hoist/mount-locks");
        let mut orphans: Vec<String> = list_dir_names(&locks)?
            .into_iter()
            .map(|name| {
                name.strip_suffix(".use")
                    .map_or(name.clone(), str::to_owned)
            })
            .filter(|name| !self.cache_mounts_dir().join(name).exists())
            .collect();
        orphans.sort();
        orphans.dedup();
        for name in orphans {
            if let Some(_unused) = self.lock_unused_cache_mount(&name)? {
                self.remove_cache_mount_locks(&name)?;
            }
        }
        Ok(count)
    }

    /// Removes cache mount `name`'s lock files, its sharing lock first;
    /// the caller holds its use lock exclusive, so no RUN holds either. A
    /// RUN that opened the use lock before it went finds, once it holds
    /// it, that the path names another file (or none), and opens it again.
    fn remove_cache_mount_locks(&self, name: &str) -> Result<()> {
        let locks = self.root().join("hoist/mount-locks");
        remove_file_if_exists(&locks.join(name))?;
        remove_file_if_exists(&cache_mount_use_lock(self.root(), name))?;
        Ok(())
    }

    /// The use lock of cache mount `name` (`hoist/mount-locks/<name>.use`,
    /// which every RUN using the mount holds shared), held exclusive;
    /// `None` when a RUN holds it.
    fn lock_unused_cache_mount(&self, name: &str) -> Result<Option<std::fs::File>> {
        let path = cache_mount_use_lock(self.root(), name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(StoreError::io(parent))?;
        }
        let file = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(StoreError::io(&path))?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(file)),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(err) => Err(StoreError::io(&path)(err.into())),
        }
    }

    /// Splits `entries` (least recently used first) into kept and evicted so
    /// that the bytes referenced only by kept entries fit in `limit`.
    fn evict_lru(
        &self,
        entries: Vec<CacheEntry>,
        roots: &Marks,
        limit: u64,
    ) -> Result<(Vec<CacheEntry>, Vec<CacheEntry>)> {
        let items = |e: &CacheEntry| -> Vec<(bool, String)> {
            let mut v: Vec<(bool, String)> = e
                .blobs
                .iter()
                .map(|b| (true, b.digest().to_owned()))
                .filter(|(_, h)| !roots.blobs.contains(h))
                .collect();
            v.extend(
                e.chain_ids
                    .iter()
                    .map(|c| (false, c.hex().to_owned()))
                    .filter(|(_, h)| !roots.chains.contains(h)),
            );
            v.sort();
            v.dedup();
            v
        };
        let mut refcount: HashMap<(bool, String), usize> = HashMap::new();
        for entry in &entries {
            for item in items(entry) {
                *refcount.entry(item).or_default() += 1;
            }
        }
        let size = |(is_blob, hex): &(bool, String)| -> u64 {
            if *is_blob {
                std::fs::metadata(self.blob_path_hex(hex)).map_or(0, |m| m.len())
            } else {
                dir_size(&self.snapshots_dir().join(hex))
            }
        };
        let sizes: HashMap<(bool, String), u64> =
            refcount.keys().map(|k| (k.clone(), size(k))).collect();
        let mut total: u64 = sizes.values().sum();
        let mut kept = Vec::new();
        let mut evicted = Vec::new();
        for entry in entries {
            if total <= limit {
                kept.push(entry);
                continue;
            }
            for item in items(&entry) {
                if let Some(count) = refcount.get_mut(&item) {
                    *count -= 1;
                    if *count == 0 {
                        total -= sizes.get(&item).copied().unwrap_or(0);
                    }
                }
            }
            evicted.push(entry);
        }
        Ok((kept, evicted))
    }

    /// The blobs and chain IDs an image consists of. Fails when its manifest
    /// or config cannot be read: collecting around a broken image could
    /// delete what it needs, so GC stops and asks for `hoist fsck`.
    pub(crate) fn image_refs(&self, manifest: &Digest) -> Result<ImageRefs> {
        let broken = |err: StoreError| {
            StoreError::invalid(
                format!("image {manifest}"),
                format!("{err}; run `hoist fsck --repair` before collecting garbage"),
            )
        };
        if !self.has_blob(manifest) {
            // A dangling tag holds nothing.
            return Ok(ImageRefs {
                blobs: Vec::new(),
                chains: Vec::new(),
                diff_ids: Vec::new(),
            });
        }
        let bytes = self.read_blob_bytes(manifest).map_err(broken)?;
        let mut blobs = vec![manifest.digest().to_owned()];
        let mut chains = Vec::new();
        let mut diff_ids = Vec::new();
        if let Ok(index) = serde_json::from_slice::<ImageIndex>(&bytes)
            && !index.manifests().is_empty()
        {
            // A nested index (from another tool): keep its children.
            for child in index.manifests() {
                let refs = self.image_refs(child.digest())?;
                blobs.extend(refs.blobs);
                chains.extend(refs.chains);
                diff_ids.extend(refs.diff_ids);
            }
            return Ok(ImageRefs {
                blobs,
                chains,
                diff_ids,
            });
        }
        let manifest_json: ImageManifest = serde_json::from_slice(&bytes).map_err(|source| {
            broken(StoreError::Json {
                what: "manifest".into(),
                source,
            })
        })?;
        // The Docker manifest an OCI-form image was pulled as, and the
        // index it was pulled through, byte for byte.
        if let Some(original) = self.original_manifest(manifest) {
            blobs.push(original.digest().to_owned());
        }
        blobs.extend(
            self.pulled_indexes(manifest)
                .iter()
                .map(|d| d.digest().to_owned()),
        );
        blobs.push(manifest_json.config().digest().digest().to_owned());
        blobs.extend(
            manifest_json
                .layers()
                .iter()
                .map(|l| l.digest().digest().to_owned()),
        );
        let config_bytes = self
            .read_blob_bytes(manifest_json.config().digest())
            .map_err(broken)?;
        let config: ImageConfiguration =
            serde_json::from_slice(&config_bytes).map_err(|source| {
                broken(StoreError::Json {
                    what: "config".into(),
                    source,
                })
            })?;
        let layer_diff_ids: Vec<DiffId> = config
            .rootfs()
            .diff_ids()
            .iter()
            .filter_map(|d| d.parse().ok())
            .collect();
        chains.extend(
            ChainId::chain(&layer_diff_ids)
                .iter()
                .map(|c| c.hex().to_owned()),
        );
        for diff_id in &layer_diff_ids {
            blobs.extend(
                self.variant_blobs(diff_id.hex())
                    .iter()
                    .map(|d| d.digest().to_owned()),
            );
            diff_ids.push(diff_id.hex().to_owned());
        }
        Ok(ImageRefs {
            blobs,
            chains,
            diff_ids,
        })
    }
}

fn is_hex64(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `(hex, size)` of every well-named regular file in `blobs/sha256`.
pub(crate) fn list_blobs(dir: &Path) -> Result<Vec<(String, u64)>> {
    let mut blobs = Vec::new();
    for item in std::fs::read_dir(dir).map_err(StoreError::io(dir))? {
        let item = item.map_err(StoreError::io(dir))?;
        let Some(name) = item.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let Ok(meta) = item.metadata() else { continue };
        if is_hex64(&name) && meta.is_file() {
            blobs.push((name, meta.len()));
        }
    }
    Ok(blobs)
}

/// The hex names of the well-formed snapshot directories.
pub(crate) fn list_snapshots(dir: &Path) -> Result<Vec<String>> {
    let mut snapshots = Vec::new();
    for item in std::fs::read_dir(dir).map_err(StoreError::io(dir))? {
        let item = item.map_err(StoreError::io(dir))?;
        let Some(name) = item.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if is_hex64(&name) && item.file_type().is_ok_and(|t| t.is_dir()) {
            snapshots.push(name);
        }
    }
    Ok(snapshots)
}

/// The names of the entries of `dir` (none when it does not exist).
pub(crate) fn list_dir_names(dir: &Path) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(StoreError::io(dir)(err)),
    };
    let mut names = Vec::new();
    for item in entries {
        let item = item.map_err(StoreError::io(dir))?;
        names.extend(item.file_name().to_str().map(str::to_owned));
    }
    Ok(names)
}

/// Bytes of the regular files under `dir` (hard links counted once).
pub(crate) fn dir_size(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = HashSet::new();
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file() && (m.nlink() == 1 || seen.insert((m.dev(), m.ino()))))
        .map(|m| m.len())
        .sum()
}

/// The use lock of cache mount directory `name`: every RUN using
/// `hoist/mounts/<name>` holds it shared, so that a prune (which takes it
/// exclusive, without waiting) never removes a mount in use.
pub fn cache_mount_use_lock(root: &std::path::Path, name: &str) -> std::path::PathBuf {
    root.join("hoist/mount-locks").join(format!("{name}.use"))
}
