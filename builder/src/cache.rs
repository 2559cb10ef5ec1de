//! The one home of the build cache: what goes into a filesystem step's key
//! ([`StepInputs`], assembled here for RUN, COPY, ADD and WORKDIR), the
//! lookup, and the commit of a step's result.
//!
//! Keys follow BuildKit's semantics: a step is reused when its parent
//! filesystem, its definition and the content it reads are the same. Every
//! input that goes into a key is kept, by name, in the cache entry, so that
//! a later miss can be explained by diffing the inputs of the nearest entry.

use std::collections::BTreeMap;
use std::path::Path;

use hoist_parser::instruction::{CopyAdd, Run};
use hoist_parser::syntax::Heredoc;
use hoist_store::digest::{ChainId, sha256_bytes};
use hoist_store::{CacheEntry, CacheRecord, Layer, Store};
use serde::{Deserialize, Serialize};

use crate::config::{go_quoted_list, history};
use crate::context::{BuildContext, ChecksumOptions};
use crate::error::StepError;
use crate::layer::LayerOptions;
use crate::progress::Event;
use crate::rootfs::{Committed, LayerStack, commit_upper};
use crate::stage::{StageBuilder, StepContext};
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
    inputs: StepInputs,
    /// The layer the step made; `None` when its diff was empty.
    layer: Option<CachedLayer>,
    /// When the step first ran: a build that reuses every step reuses this
    /// time too, so an unchanged rebuild gives the same image ID.
    #[serde(default)]
    created: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct CachedLayer {
    descriptor: oci_spec::image::Descriptor,
    diff_id: hoist_store::digest::DiffId,
}

/// The store record that keeps a context directory's file digests, keyed by
/// the directory's canonical path; `None` for a context unpacked into the
/// store's temporary space (it never comes back).
fn context_index_key(store: &Store, context: &BuildContext) -> Option<String> {
    let dir = std::fs::canonicalize(context.dir()).ok()?;
    let tmp = store.root().join("hoist/tmp");
    let tmp = std::fs::canonicalize(&tmp).unwrap_or(tmp);
    if dir.starts_with(&tmp) {
        return None;
    }
    let digest = sha256_bytes(dir.as_os_str().as_encoded_bytes());
    Some(digest.to_string()["sha256:".len()..].to_owned())
}

/// Loads what an earlier build learnt about a context's files, so that an
/// unchanged file costs a stat and is not read again. A missing or
/// unreadable record only means files are hashed again.
pub fn load_context_index(store: &Store, context: &BuildContext) {
    let Some(key) = context_index_key(store, context) else {
        return;
    };
    if let Ok(Some(reader)) = store.cache_record_reader(CacheRecord::ContextIndex, &key) {
        // A corrupt record is as good as none: it is rewritten below.
        let _ = context.digests().load(reader);
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
    /// environment the command sees.
    pub(crate) fn run_inputs(&self, run: &RunDefinition<'_>) -> StepInputs {
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
        }
        inputs.env = run.env.to_vec();
        inputs
    }

    /// COPY's and ADD's key: the flags, the destination, and the content of
    /// the sources (heredocs, a `--from` filesystem, or the context files
    /// the sources select).
    pub(crate) fn copy_inputs(
        &self,
        copy: &CopyAdd,
        is_add: bool,
        dest: &str,
        heredocs: &[Heredoc],
        source_stack: Option<&LayerStack>,
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
        for (i, heredoc) in heredocs.iter().enumerate() {
            inputs.content.insert(
                format!("heredoc.{i}.{}", heredoc.name),
                sha256_bytes(heredoc.content.as_bytes()).to_string(),
            );
        }
        match source_stack {
            // A stage's or image's filesystem is named by its chain ID.
            Some(stack) => {
                let top = stack
                    .top()
                    .map_or_else(|| "scratch".to_owned(), |c| c.to_string());
                inputs.content.insert("from".into(), top);
            }
            None => {
                let options = ChecksumOptions {
                    exclude: copy.exclude.clone(),
                    ..ChecksumOptions::default()
                };
                let sum = self
                    .scope
                    .context
                    .checksum(&copy.sources, &options)
                    .map_err(|err| StepError::Invalid(err.to_string()))?;
                inputs
                    .content
                    .insert("context".into(), sum.digest.to_string());
            }
        }
        Ok(inputs)
    }

    /// Looks a filesystem step up in the cache. On a hit the cached layer
    /// (if any) is appended and the step is reported as cached.
    pub(crate) fn try_cache(
        &mut self,
        step: &StepContext,
        inputs: &StepInputs,
        created_by: &str,
    ) -> Result<bool, StepError> {
        if self.scope.request.no_cache {
            return Ok(false);
        }
        let store = self.scope.builder.store;
        let key = inputs.key();
        let Some(entry) = store.cache_get(&key)? else {
            return Ok(false);
        };
        let Ok(cached) = serde_json::from_value::<CachedStep>(entry.payload) else {
            return Ok(false);
        };
        if cached.inputs != *inputs {
            return Ok(false);
        }
        match cached.layer {
            Some(layer) => {
                if !store.has_blob(layer.descriptor.digest()) {
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
            layer,
            created: Some(self.scope.created.clone()),
        })
        .map_err(|e| StepError::Invalid(format!("encoding a cache entry: {e}")))?;
        store.cache_put(&CacheEntry::new(key, payload, blobs, chains))?;
        self.scope.builder.progress.event(Event::Done {
            step: step.id,
            elapsed: step.started.elapsed(),
        });
        Ok(())
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
}
