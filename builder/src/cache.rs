//! The one home of the build cache: what goes into a filesystem step's key
//! ([`StepInputs`], assembled here for RUN, COPY, ADD and WORKDIR), the
//! lookup, and the commit of a step's result.
//!
//! Keys follow BuildKit's semantics: a step is reused when its parent
//! filesystem, its definition and the content it reads are the same. Every
//! input that goes into a key is kept, by name, in the cache entry, so that
//! a later miss can be explained by diffing the inputs of the nearest entry.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use hoist_parser::MountType;
use hoist_parser::graph::Base;
use hoist_parser::instruction::{CopyAdd, Run};
use hoist_parser::syntax::Heredoc;
use hoist_store::digest::{ChainId, sha256_bytes};
use hoist_store::{CacheEntry, CacheRecord, Layer, Store};
use serde::{Deserialize, Serialize};

use crate::config::{go_quoted_list, history};
use crate::context::{BuildContext, SourceChecksum};
use crate::context_memo::{Request, context_sources};
use crate::error::StepError;
use crate::layer::LayerOptions;
use crate::progress::Event;
use crate::rootfs::{Committed, LayerStack, commit_upper};
use crate::stage::{PrevStep, StageBuilder, StepContext};
use hoist_sandbox::Network;

/// Bumped whenever what a step produces for the same inputs changes, so old
/// entries stop matching rather than giving wrong results.
const KEY_VERSION: u32 = 1;

/// Everything a filesystem step's result depends on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepInputs {
    pub version: u32,
    /// The filesystem the step starts from; `None` for an empty one.
    pub parent: Option<ChainId>,
    /// `RUN`, `COPY`, `ADD` or `WORKDIR`.
    pub op: String,
    /// The step's definition: argv, paths and flags, by name.
    pub definition: BTreeMap<String, String>,
    /// The environment the step sees (RUN only).
    pub env: Vec<String>,
    /// Digests of the content the step reads (COPY sources), by name.
    pub content: BTreeMap<String, String>,
    /// How the layer is written: compression and the mtime clamp.
    pub output: BTreeMap<String, String>,
}

impl StepInputs {
    pub fn new(parent: Option<ChainId>, op: &str) -> Self {
        Self {
            version: KEY_VERSION,
            parent,
            op: op.to_owned(),
            definition: BTreeMap::new(),
            env: Vec::new(),
            content: BTreeMap::new(),
            output: BTreeMap::new(),
        }
    }

    pub fn define(&mut self, name: &str, value: impl Into<String>) -> &mut Self {
        self.definition.insert(name.to_owned(), value.into());
        self
    }

    /// The cache key: sha256 of the canonical JSON of the inputs (struct
    /// fields in a fixed order, maps sorted).
    pub fn key(&self) -> String {
        let json = serde_json::to_vec(self).expect("step inputs always serialise");
        sha256_bytes(&json).to_string()["sha256:".len()..].to_owned()
    }
}

/// What the cache remembers of a filesystem step.
#[derive(Debug, Serialize, Deserialize)]
struct CachedStep {
    /// The inputs, by name, for explaining a later miss. An exported
    /// record keeps only their digest-level part ([`redact_for_export`]).
    inputs: StepInputs,
    /// Set on a record that went through `--cache-to`: `inputs` then holds
    /// only the version, the parent and the instruction; the key (a digest
    /// of the whole inputs) is what identifies the step.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    redacted: bool,
    /// The layer the step made; `None` when its diff was empty.
    layer: Option<CachedLayer>,
    /// When the step first ran: a build that reuses every step reuses this
    /// time too, so an unchanged rebuild gives the same image ID.
    #[serde(default)]
    created: Option<String>,
}

impl StepInputs {
    /// Only what is no secret: the version, the parent filesystem's chain
    /// ID and the instruction's name.
    fn redacted(&self) -> StepInputs {
        StepInputs {
            version: self.version,
            parent: self.parent.clone(),
            op: self.op.clone(),
            definition: BTreeMap::new(),
            env: Vec::new(),
            content: BTreeMap::new(),
            output: BTreeMap::new(),
        }
    }
}

/// A step record as `--cache-to` exports it: without the inputs' values
/// (build args and env a RUN sees, URLs with their credentials, paths,
/// flags), as BuildKit's exported cache holds only digests. Import needs
/// only the key, the layer and the blobs. A payload that is not a step
/// record is exported as `null`, so nothing unknown leaves the machine.
pub(crate) fn redact_for_export(payload: &serde_json::Value) -> serde_json::Value {
    match serde_json::from_value::<CachedStep>(payload.clone()) {
        Ok(step) => serde_json::to_value(CachedStep {
            inputs: step.inputs.redacted(),
            redacted: true,
            layer: step.layer,
            created: step.created,
        })
        .unwrap_or(serde_json::Value::Null),
        Err(_) => serde_json::Value::Null,
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct CachedLayer {
    descriptor: oci_spec::image::Descriptor,
    diff_id: hoist_store::digest::DiffId,
}

/// The store record that keeps a context directory's file digests, keyed by
/// the directory's canonical path; `None` for a context unpacked into the
/// store's temporary space (it never comes back).
pub(crate) fn context_index_key(store: &Store, context: &BuildContext) -> Option<String> {
    let dir = std::fs::canonicalize(context.dir()).ok()?;
    let tmp = store.root().join("hoist/tmp");
    let tmp = std::fs::canonicalize(&tmp).unwrap_or(tmp);
    if dir.starts_with(&tmp) {
        return None;
    }
    let digest = sha256_bytes(dir.as_os_str().as_encoded_bytes());
    Some(digest.to_string()["sha256:".len()..].to_owned())
}

/// Opens what an earlier build learnt about a context's files, so that an
/// unchanged file costs a stat and is not read again. It is read when a
/// checksum first needs it: a build whose source checksums are all
/// remembered ([`crate::context_memo`]) never reads it. A missing or
/// unreadable record only means files are hashed again.
pub fn load_context_index(store: &Store, context: &BuildContext) {
    let Some(key) = context_index_key(store, context) else {
        return;
    };
    if let Ok(Some(reader)) = store.cache_record_reader(CacheRecord::ContextIndex, &key) {
        let size = reader.get_ref().metadata().map_or(0, |m| m.len());
        // A corrupt record is as good as none: it is rewritten below.
        context.digests().load_when_needed(reader, size);
    }
}

/// Keeps the context's file digests for the next build, when this one
/// learnt something new. The record is replaced atomically, so concurrent
/// builds of one context each leave a whole index.
pub fn save_context_index(
    store: &Store,
    context: &BuildContext,
) -> Result<(), hoist_store::StoreError> {
    let digests = context.digests();
    if !digests.is_dirty() {
        return Ok(());
    }
    let Some(key) = context_index_key(store, context) else {
        return Ok(());
    };
    let dir = context.dir();
    store.cache_record_write(CacheRecord::ContextIndex, &key, |out| {
        digests.save(out, |path| dir.join(path).symlink_metadata().is_ok())
    })
}

/// What a RUN's key covers besides its parent.
pub(crate) struct RunDefinition<'a> {
    pub run: &'a Run,
    pub argv: &'a [String],
    pub env: &'a [String],
    pub cwd: &'a str,
    pub user: &'a str,
    pub network: Network,
}

impl StageBuilder<'_> {
    /// Inputs every filesystem step shares: the parent filesystem and how
    /// the layer is written.
    fn base_inputs(&self, op: &str) -> StepInputs {
        let mut inputs = StepInputs::new(self.stack.top().cloned(), op);
        let request = self.scope.request;
        inputs
            .output
            .insert("compression".into(), format!("{:?}", request.compression));
        if let Some(epoch) = request.source_date_epoch {
            inputs
                .output
                .insert("mtime-clamp".into(), epoch.to_string());
        }
        inputs
    }

    /// WORKDIR's key: the directory and the user that owns it.
    pub(crate) fn workdir_inputs(&self, dir: &str, user: &str) -> StepInputs {
        let mut inputs = self.base_inputs("WORKDIR");
        inputs.define("path", dir).define("user", user);
        inputs
    }

    /// RUN's key: argv, working directory, user, network, mounts and the
    /// environment the command sees. A bind mount's content counts as a
    /// COPY's does: the context files it exposes, or the filesystem of the
    /// stage or image it comes from.
    pub(crate) fn run_inputs(&self, run: &RunDefinition<'_>) -> Result<StepInputs, StepError> {
        let mut inputs = self.base_inputs("RUN");
        inputs
            .define("argv", go_quoted_list(run.argv))
            .define("cwd", run.cwd)
            .define("user", run.user)
            .define("network", format!("{:?}", run.network));
        if run.run.security == Some(hoist_parser::instruction::Security::Insecure) {
            inputs.define("security", "insecure");
        }
        for (i, mount) in run.run.mounts.iter().enumerate() {
            inputs.define(&format!("mount.{i}"), mount.raw.clone());
            if mount.kind != MountType::Bind {
                continue;
            }
            let content = match &mount.from {
                Some(from) => {
                    let stack = self.source_stack(from)?;
                    stack
                        .top()
                        .map_or_else(|| "scratch".to_owned(), |c| c.to_string())
                }
                None => {
                    let source = mount.source.as_deref().unwrap_or("/");
                    let source = match source.trim_start_matches('/') {
                        "" => ".",
                        relative => relative,
                    };
                    let request = Request {
                        sources: &[source.to_owned()],
                        exclude: &[],
                        include_owner: false,
                    };
                    context_sources(self.scope.builder.store, &self.scope.context, request)
                        .map_err(|source| StepError::MountSource {
                            mount: mount.raw.clone(),
                            source,
                        })?
                        .digest()
                        .to_string()
                }
            };
            inputs.content.insert(format!("mount.{i}"), content);
        }
        inputs.env = run.env.to_vec();
        Ok(inputs)
    }

    /// COPY's and ADD's key: the flags, the destination, and the content of
    /// the sources (heredocs, a `--from` filesystem, or the context files
    /// the sources select).
    pub(crate) fn copy_inputs(
        &mut self,
        copy: &CopyAdd,
        is_add: bool,
        dest: &str,
        heredocs: &[Heredoc],
        source_stack: Option<&LayerStack>,
        url_contents: &[(String, String)],
    ) -> Result<StepInputs, StepError> {
        let mut inputs = self.base_inputs(if is_add { "ADD" } else { "COPY" });
        inputs
            .define(
                "sources",
                serde_json::to_string(&copy.sources).unwrap_or_default(),
            )
            .define("dest", dest)
            .define("chown", copy.chown.clone().unwrap_or_default())
            .define("chmod", copy.chmod.clone().unwrap_or_default())
            .define(
                "exclude",
                serde_json::to_string(&copy.exclude).unwrap_or_default(),
            )
            .define("parents", copy.parents.to_string())
            .define("checksum", copy.checksum.clone().unwrap_or_default());
        if let Some(unpack) = copy.unpack {
            // ADD --unpack; only when given, so existing keys stay valid.
            inputs.define("unpack", unpack.to_string());
        }
        // ADD of a URL without --checksum: what it served (only then, so
        // existing keys stay valid).
        for (url, identity) in url_contents {
            inputs
                .content
                .insert(format!("url {url}"), identity.clone());
        }
        for (i, heredoc) in heredocs.iter().enumerate() {
            inputs.content.insert(
                format!("heredoc.{i}.{}", heredoc.name),
                sha256_bytes(heredoc.content.as_bytes()).to_string(),
            );
        }
        match source_stack {
            // A stage's or image's filesystem is named by its chain ID.
            Some(stack) => {
                self.sources = None;
                self.copy_from_diverged = self.scope.dry_run
                    && copy
                        .from
                        .as_deref()
                        .is_some_and(|from| self.stage_diverged(from));
                let top = stack
                    .top()
                    .map_or_else(|| "scratch".to_owned(), |c| c.to_string());
                inputs.content.insert("from".into(), top);
            }
            None => {
                let request = Request {
                    sources: &copy.sources,
                    exclude: &copy.exclude,
                    include_owner: false,
                };
                let sources =
                    context_sources(self.scope.builder.store, &self.scope.context, request)
                        .map_err(StepError::Context)?;
                inputs
                    .content
                    .insert("context".into(), sources.digest().to_string());
                self.sources = Some(sources);
            }
        }
        Ok(inputs)
    }

    /// `--dry-run`: whether `from` names a stage predicted to change.
    fn stage_diverged(&self, from: &str) -> bool {
        let graph = self.scope.graph;
        let index = graph.stage_by_name(from).or_else(|| {
            from.parse::<usize>()
                .ok()
                .filter(|i| *i < graph.stages.len())
        });
        index
            .and_then(|i| self.stage_result(i).ok())
            .is_some_and(|r| r.diverged.is_some())
    }

    /// `--dry-run`: a hit is taken as in a build; a miss is explained as a
    /// build would explain it and reported done without running, and every
    /// later step of the stage (whose parent is then unknown) is predicted
    /// to run. Returns `true`: the step needs nothing more.
    fn predict_step(
        &mut self,
        step: &StepContext,
        inputs: &StepInputs,
        created_by: &str,
    ) -> Result<bool, StepError> {
        let skip_cache = self.scope.request.no_cache || self.no_cache_filtered();
        let hit = match self.diverged {
            Some(_) => false,
            None if skip_cache || self.copy_from_diverged || self.url_unknown => false,
            None => self.lookup_step(step, inputs, created_by)?,
        };
        if !hit {
            let reason = match (self.diverged, self.prev_step) {
                (Some(_), Some(prev)) => Some(format!("parent step #{} was rebuilt", prev.id.0)),
                (Some(_), None) => match &self.stage.base {
                    Base::Stage(index) => Some(format!(
                        "the base stage {} changed",
                        self.scope.graph.stages[*index].display_name()
                    )),
                    _ => Some("its parent changed".to_owned()),
                },
                (None, _) if self.copy_from_diverged => {
                    Some("the stage or image it copies from changed".to_owned())
                }
                (None, _) if self.url_unknown => {
                    Some("its URL was never downloaded, and --dry-run downloads nothing".to_owned())
                }
                (None, _) if skip_cache => None,
                (None, _) => {
                    self.explain_miss(step, inputs);
                    None
                }
            };
            if let Some(reason) = reason {
                let message = format!("{}: not cached: {reason}", step.text);
                self.scope.builder.progress.event(Event::Status {
                    step: step.id,
                    message: &message,
                });
            }
            self.diverged.get_or_insert(step.id);
            self.scope.builder.progress.event(Event::Done {
                step: step.id,
                elapsed: step.started.elapsed(),
            });
        }
        self.copy_from_diverged = false;
        self.url_unknown = false;
        self.prev_step = Some(PrevStep {
            id: step.id,
            rebuilt: !hit,
        });
        Ok(true)
    }

    /// `--no-cache-filter`: this stage, by name or index, is built without
    /// the cache (as Docker's flag: the stage's own steps, not its parents).
    fn no_cache_filtered(&self) -> bool {
        let filter = &self.scope.request.no_cache_filter;
        !filter.is_empty()
            && filter.iter().any(|name| {
                self.stage.name.as_deref() == Some(name.as_str())
                    || *name == self.stage.index.to_string()
            })
    }

    /// Looks a filesystem step up in the cache. On a hit the cached layer
    /// (if any) is appended and the step is reported as cached.
    pub(crate) fn try_cache(
        &mut self,
        step: &StepContext,
        inputs: &StepInputs,
        created_by: &str,
    ) -> Result<bool, StepError> {
        if self.scope.dry_run {
            return self.predict_step(step, inputs, created_by);
        }
        if self.scope.request.no_cache || self.no_cache_filtered() {
            return Ok(false);
        }
        let hit = self.lookup_step(step, inputs, created_by)?;
        if !hit {
            self.explain_miss(step, inputs);
        }
        self.prev_step = Some(PrevStep {
            id: step.id,
            rebuilt: !hit,
        });
        Ok(hit)
    }

    fn lookup_step(
        &mut self,
        step: &StepContext,
        inputs: &StepInputs,
        created_by: &str,
    ) -> Result<bool, StepError> {
        let store = self.scope.builder.store;
        let key = inputs.key();
        let Some(entry) = store.cache_get(&key)? else {
            return Ok(false);
        };
        let Ok(cached) = serde_json::from_value::<CachedStep>(entry.payload) else {
            return Ok(false);
        };
        // The key is a digest of the inputs; a local record also keeps
        // them whole, an imported one only their digest-level part.
        let expected = if cached.redacted {
            inputs.redacted()
        } else {
            inputs.clone()
        };
        if cached.inputs != expected {
            return Ok(false);
        }
        match cached.layer {
            Some(layer) => {
                if !store.can_provide_blob(layer.descriptor.digest()) {
                    return Ok(false);
                }
                self.stack.push(Layer {
                    descriptor: layer.descriptor,
                    diff_id: layer.diff_id,
                });
                self.push_history(history(
                    created_by.to_owned(),
                    false,
                    Some(&self.scope.created),
                ));
            }
            None => {
                self.push_history(history(
                    created_by.to_owned(),
                    true,
                    Some(&self.scope.created),
                ));
            }
        }
        store.cache_touch(&key)?;
        self.remember_key(&key);
        self.cached += 1;
        if let Some(created) = cached.created {
            self.latest_cached = self.latest_cached.take().max(Some(created));
        }
        let progress = self.scope.builder.progress;
        progress.event(Event::Cached { step: step.id });
        progress.event(Event::Done {
            step: step.id,
            elapsed: step.started.elapsed(),
        });
        Ok(true)
    }

    /// Commits a step's upperdir as a layer (or an empty history entry),
    /// records it in the cache and reports the step done.
    pub(crate) fn commit_step(
        &mut self,
        step: &StepContext,
        inputs: StepInputs,
        upper: &Path,
        created_by: String,
    ) -> Result<(), StepError> {
        let store = self.scope.builder.store;
        let options = LayerOptions {
            mtime_clamp: self.scope.request.source_date_epoch,
        };
        let committed = commit_upper(
            store,
            &mut self.stack,
            upper,
            self.scope.request.compression,
            &options,
        )?;
        let (layer, blobs, chains) = match committed {
            Committed::Empty => {
                self.push_history(history(created_by, true, Some(&self.scope.created)));
                (None, Vec::new(), Vec::new())
            }
            Committed::Layer(layer) => {
                self.push_history(history(created_by, false, Some(&self.scope.created)));
                let blobs = vec![layer.descriptor.digest().clone()];
                let chains = self.stack.top().cloned().into_iter().collect();
                (
                    Some(CachedLayer {
                        descriptor: layer.descriptor,
                        diff_id: layer.diff_id,
                    }),
                    blobs,
                    chains,
                )
            }
        };
        let key = inputs.key();
        let payload = serde_json::to_value(CachedStep {
            inputs,
            redacted: false,
            layer,
            created: Some(self.scope.created.clone()),
        })
        .map_err(StepError::CacheEncode)?;
        store.cache_put(&CacheEntry::new(key.clone(), payload, blobs, chains))?;
        self.remember_key(&key);
        self.remember_sources();
        self.prev_step = Some(PrevStep {
            id: step.id,
            rebuilt: true,
        });
        self.scope.builder.progress.event(Event::Done {
            step: step.id,
            elapsed: step.started.elapsed(),
        });
        Ok(())
    }
}

/// How many recent keys a step position remembers.
const RECENT_KEYS: usize = 8;

/// The recent cache keys of one step position (a [`CacheRecord::Recent`]).
#[derive(Debug, Default, Serialize, Deserialize)]
struct RecentKeys {
    keys: Vec<String>,
}

/// The per-file digests behind one source checksum (a
/// [`CacheRecord::Files`]).
#[derive(Debug, Serialize, Deserialize)]
struct SourceFiles {
    files: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    dirs: BTreeSet<String>,
}

fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// `1873` as `1,873`.
pub(crate) fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A value short enough for one line of progress output.
fn shorten(value: &str) -> String {
    const MAX: usize = 40;
    if value.chars().count() <= MAX {
        return value.to_owned();
    }
    let head: String = value.chars().take(MAX - 1).collect();
    format!("{head}…")
}

/// `sha256:ab12…` for a digest in a message.
fn short_digest(digest: &str) -> String {
    let hex = hex_of(digest);
    format!("sha256:{}…", &hex[..hex.len().min(12)])
}

fn view(map: &BTreeMap<String, String>) -> BTreeMap<&str, &str> {
    map.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn env_map(env: &[String]) -> BTreeMap<&str, &str> {
    env.iter()
        .map(|kv| kv.split_once('=').unwrap_or((kv.as_str(), "")))
        .collect()
}

/// The first name whose value differs between two maps, with both values
/// (`None` where absent), in the order of the names.
fn first_change<'a>(
    old: &BTreeMap<&'a str, &'a str>,
    new: &BTreeMap<&'a str, &'a str>,
) -> Option<(&'a str, Option<&'a str>, Option<&'a str>)> {
    let mut names: Vec<&str> = old.keys().chain(new.keys()).copied().collect();
    names.sort_unstable();
    names.dedup();
    names.into_iter().find_map(|name| {
        let (a, b) = (old.get(name).copied(), new.get(name).copied());
        (a != b).then_some((name, a, b))
    })
}

fn was_now(old: Option<&str>, new: Option<&str>) -> String {
    format!(
        "{} -> {}",
        old.map_or_else(|| "unset".to_owned(), shorten),
        new.map_or_else(|| "unset".to_owned(), shorten)
    )
}

impl StageBuilder<'_> {
    /// The record key of this step's position: the context, the
    /// Dockerfile, the stage and the step's number in it.
    fn position_key(&self) -> String {
        let context = std::fs::canonicalize(self.scope.context.dir())
            .unwrap_or_else(|_| self.scope.context.dir().to_owned());
        let stage = self
            .stage
            .name
            .clone()
            .unwrap_or_else(|| self.stage.index.to_string());
        let text = format!(
            "{}\0{}\0{stage}\0{}",
            context.display(),
            self.scope.request.dockerfile_name,
            self.step_index
        );
        hex_of(sha256_bytes(text.as_bytes()).as_ref()).to_owned()
    }

    fn recent_keys(&self) -> RecentKeys {
        let store = self.scope.builder.store;
        store
            .cache_record_reader(CacheRecord::Recent, &self.position_key())
            .ok()
            .flatten()
            .and_then(|reader| serde_json::from_reader(reader).ok())
            .unwrap_or_default()
    }

    /// Puts `key` first in this position's recent keys. Best effort: the
    /// record only serves explanations.
    fn remember_key(&self, key: &str) {
        self.scope.builder.record_cache_key(key);
        let mut recent = self.recent_keys();
        if recent.keys.first().map(String::as_str) == Some(key) {
            return;
        }
        recent.keys.retain(|k| k != key);
        recent.keys.insert(0, key.to_owned());
        recent.keys.truncate(RECENT_KEYS);
        let _ = self.scope.builder.store.cache_record_write(
            CacheRecord::Recent,
            &self.position_key(),
            |out| serde_json::to_writer(out, &recent).map_err(std::io::Error::other),
        );
    }

    /// The current COPY/ADD's sources with their per-file digests
    /// (computed now if they were remembered).
    fn full_sources(&self) -> Option<&SourceChecksum> {
        self.sources.as_ref()?.full(&self.scope.context)
    }

    /// Keeps the file list of the sources a COPY/ADD just committed, so a
    /// later miss can name the files that changed.
    fn remember_sources(&mut self) {
        let Some(sources) = self.sources.take() else {
            return;
        };
        let store = self.scope.builder.store;
        let key = hex_of(sources.digest().as_ref()).to_owned();
        if matches!(
            store.cache_record_reader(CacheRecord::Files, &key),
            Ok(Some(_))
        ) {
            return;
        }
        let Some(sources) = sources.into_full(&self.scope.context) else {
            return;
        };
        let files = SourceFiles {
            files: sources.files,
            dirs: sources.dirs,
        };
        let _ = store.cache_record_write(CacheRecord::Files, &key, |out| {
            serde_json::to_writer(out, &files).map_err(std::io::Error::other)
        });
    }

    /// Reports why a step missed, under the step: always when an earlier
    /// build of it exists, and with `--explain` also when none does.
    fn explain_miss(&self, step: &StepContext, inputs: &StepInputs) {
        let reason = match self.nearest_earlier(inputs) {
            Some(earlier) => self.describe_change(&earlier, inputs),
            None if self.scope.request.explain => "no earlier build of this step".to_owned(),
            None => return,
        };
        let message = format!("{}: not cached: {reason}", step.text);
        self.scope.builder.progress.event(Event::Status {
            step: step.id,
            message: &message,
        });
    }

    /// The most recent earlier build at this position that ran the same
    /// kind of instruction: its inputs, and whether they were redacted
    /// (a record imported from an exported cache).
    fn nearest_earlier(&self, inputs: &StepInputs) -> Option<(StepInputs, bool)> {
        self.nearest_earlier_step(inputs)
            .map(|cached| (cached.inputs, cached.redacted))
    }

    fn nearest_earlier_step(&self, inputs: &StepInputs) -> Option<CachedStep> {
        let store = self.scope.builder.store;
        self.recent_keys().keys.iter().find_map(|key| {
            let entry = store.cache_peek(key).ok().flatten()?;
            let cached = serde_json::from_value::<CachedStep>(entry.payload).ok()?;
            (cached.inputs.op == inputs.op).then_some(cached)
        })
    }

    /// For a COPY or ADD that missed: the earlier build of it whose
    /// unchanged files can be taken instead of copied (see
    /// [`crate::copy::reuse`]). That needs the same parent, definition and
    /// output settings, sources from the build context only, one source
    /// without wildcards (so that each context path has one destination, in
    /// both builds), and the earlier build's snapshot and file list still
    /// in the store. `None` otherwise, and under `--no-cache`.
    pub(crate) fn copy_reuse(
        &self,
        copy: &CopyAdd,
        is_add: bool,
        heredocs: &[Heredoc],
        inputs: &StepInputs,
    ) -> Option<std::sync::Arc<crate::copy::reuse::Reuse>> {
        let request = self.scope.request;
        if self.scope.dry_run || request.no_cache || self.no_cache_filtered() {
            return None;
        }
        let [source] = copy.sources.as_slice() else {
            return None;
        };
        if copy.from.is_some()
            || !heredocs.is_empty()
            || source.contains(['*', '?', '[', '\\'])
            || crate::copy::fetch::is_http_url(source)
            || crate::copy::fetch::is_git_url(source)
            || (is_add && copy.checksum.is_some())
        {
            return None;
        }
        let current = self.full_sources()?;
        let earlier = self.nearest_earlier_step(inputs)?;
        if earlier.redacted {
            return None;
        }
        let old = &earlier.inputs;
        let only_context = |i: &StepInputs| i.content.keys().eq(["context"]);
        if old.version != inputs.version
            || old.parent != inputs.parent
            || old.op != inputs.op
            || old.definition != inputs.definition
            || old.env != inputs.env
            || old.output != inputs.output
            || !only_context(old)
            || !only_context(inputs)
        {
            return None;
        }
        let layer = earlier.layer?;
        let store = self.scope.builder.store;
        let chain = ChainId::child(old.parent.as_ref(), &layer.diff_id);
        store.lease_chain_id(&chain).ok()?;
        let snapshot = store.snapshot_path(&chain);
        let old_files: SourceFiles = store
            .cache_record_reader(CacheRecord::Files, hex_of(old.content.get("context")?))
            .ok()
            .flatten()
            .and_then(|reader| serde_json::from_reader(reader).ok())?;
        crate::copy::reuse::Reuse::new(&snapshot, &old_files.files, &current.files, &current.dirs)
            .ok()
            .map(std::sync::Arc::new)
    }

    /// The first input that differs, in words. Against an imported record,
    /// which keeps no values, only a changed parent, instruction or hoist
    /// version can be named.
    fn describe_change(&self, (old, redacted): &(StepInputs, bool), new: &StepInputs) -> String {
        if old.parent != new.parent {
            return match (self.prev_step, &self.stage.base) {
                (Some(prev), _) if prev.rebuilt => {
                    format!("parent step #{} was rebuilt", prev.id.0)
                }
                (Some(prev), _) => format!("parent step #{} changed", prev.id.0),
                (None, Base::Image(_)) => match &self.base_image {
                    Some((name, digest)) => format!(
                        "the base image changed ({name} now {})",
                        short_digest(digest)
                    ),
                    None => "the base image changed".to_owned(),
                },
                (None, Base::Stage(index)) => format!(
                    "the base stage {} changed",
                    self.scope.graph.stages[*index].display_name()
                ),
                (None, Base::Scratch) => "its parent changed".to_owned(),
            };
        }
        if old.op != new.op {
            return format!("the instruction changed ({} -> {})", old.op, new.op);
        }
        if old.version != new.version {
            return "the earlier build was made by another version of hoist".to_owned();
        }
        if *redacted {
            let store = self.scope.builder.store;
            if matches!(store.cache_peek(&new.key()), Ok(Some(_))) {
                return "the earlier build's layer is no longer in the store".to_owned();
            }
            return "an input changed since the imported cache's build (it keeps digests, \
                    not values)"
                .to_owned();
        }
        if let Some((name, a, b)) = first_change(&view(&old.definition), &view(&new.definition)) {
            return match name {
                "argv" => "the command changed".to_owned(),
                _ if name.starts_with("mount.") => format!("--mount changed ({})", was_now(a, b)),
                _ => format!("{name} changed ({})", was_now(a, b)),
            };
        }
        if let Some((name, a, b)) = first_change(&env_map(&old.env), &env_map(&new.env)) {
            let in_env = self
                .config
                .config
                .env
                .as_deref()
                .is_some_and(|env| crate::config::get_env(env, name).is_some());
            let is_arg = !in_env && self.args.iter().any(|(k, _)| k == name);
            let what = if is_arg { "build arg" } else { "env" };
            return format!("{what} {name} changed ({})", was_now(a, b));
        }
        if let Some((name, a, _)) = first_change(&view(&old.content), &view(&new.content)) {
            return match name {
                "context" => self.describe_files(a),
                "from" => "the stage or image it copies from changed".to_owned(),
                _ if name.starts_with("mount.") => "the files of a bind mount changed".to_owned(),
                _ if name.starts_with("heredoc.") => format!(
                    "heredoc {} changed",
                    name.splitn(3, '.').nth(2).unwrap_or(name)
                ),
                _ => match name.strip_prefix("url ") {
                    Some(url) => {
                        format!("the content of {} changed", crate::copy::fetch::redact(url))
                    }
                    None => format!("{name} changed"),
                },
            };
        }
        if old.output != new.output {
            return "the layer output settings changed".to_owned();
        }
        "the earlier build's layer is no longer in the store".to_owned()
    }

    /// `2 of 1,873 files changed (src/main.rs, Cargo.lock)`.
    fn describe_files(&self, old_digest: Option<&str>) -> String {
        let Some(current) = self.full_sources() else {
            return "the source files changed".to_owned();
        };
        let store = self.scope.builder.store;
        let earlier = old_digest.and_then(|digest| {
            let reader = store
                .cache_record_reader(CacheRecord::Files, hex_of(digest))
                .ok()
                .flatten()?;
            serde_json::from_reader::<_, SourceFiles>(reader).ok()
        });
        let Some(earlier) = earlier else {
            return "the source files changed".to_owned();
        };
        let earlier = SourceChecksum {
            digest: current.digest.clone(),
            files: earlier.files,
            dirs: earlier.dirs,
        };
        let changed = current.changed_non_dirs(&earlier);
        if changed.is_empty() {
            return "the selected files are the same but selected differently".to_owned();
        }
        const SHOWN: usize = 5;
        let mut list = changed
            .iter()
            .take(SHOWN)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if changed.len() > SHOWN {
            list.push_str(", …");
        }
        let total = current.file_count().max(changed.len());
        let noun = if total == 1 { "file" } else { "files" };
        format!(
            "{} of {} {noun} changed ({list})",
            thousands(changed.len()),
            thousands(total)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_change_with_every_input_and_only_then() {
        let base = || {
            let mut inputs = StepInputs::new(None, "RUN");
            inputs.define("argv", "[\"/bin/sh\" \"-c\" \"true\"]");
            inputs
        };
        let key = base().key();
        assert_eq!(key, base().key(), "keys are deterministic");
        assert_eq!(key.len(), 64);

        let mut other_parent = base();
        other_parent.parent = Some(
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
                .parse()
                .unwrap(),
        );
        let mut other_env = base();
        other_env.env.push("A=1".to_owned());
        let mut other_content = base();
        other_content
            .content
            .insert("sources".to_owned(), "sha256:00".to_owned());
        let mut other_output = base();
        other_output
            .output
            .insert("compression".to_owned(), "zstd".to_owned());
        let mut other_def = base();
        other_def.define("user", "1000");
        for (name, changed) in [
            ("parent", other_parent),
            ("env", other_env),
            ("content", other_content),
            ("output", other_output),
            ("definition", other_def),
        ] {
            assert_ne!(changed.key(), key, "{name} must change the key");
        }
    }

    /// An exported record keeps its layer, its creation time and the
    /// digest-level inputs; every value is gone.
    #[test]
    fn r8_an_exported_record_keeps_no_input_values() {
        let mut inputs = StepInputs::new(None, "ADD");
        inputs.define("sources", "[\"http://ci:s3cret@host/f\"]");
        inputs.env.push("TOKEN=s3cret".to_owned());
        inputs.content.insert(
            "url http://ci:s3cret@host/f".to_owned(),
            "sha256:00".to_owned(),
        );
        inputs
            .output
            .insert("compression".to_owned(), "s3cret".to_owned());
        let payload = serde_json::to_value(CachedStep {
            inputs: inputs.clone(),
            redacted: false,
            layer: None,
            created: Some("2024-01-01T00:00:00Z".to_owned()),
        })
        .unwrap();
        assert!(
            payload.to_string().contains("s3cret"),
            "the case has values"
        );
        let exported = redact_for_export(&payload);
        assert!(!exported.to_string().contains("s3cret"), "{exported}");
        let step: CachedStep = serde_json::from_value(exported).unwrap();
        assert!(step.redacted);
        assert_eq!(step.inputs, inputs.redacted());
        assert_eq!(step.inputs.op, "ADD");
        assert_eq!(step.created.as_deref(), Some("2024-01-01T00:00:00Z"));
        assert_eq!(
            redact_for_export(&serde_json::json!({"unknown": "s3cret"})),
            serde_json::Value::Null,
            "what is not a step record is not exported"
        );
    }
}
