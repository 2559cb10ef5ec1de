//! Cache keys for steps that change the filesystem (RUN, COPY, ADD,
//! WORKDIR), with BuildKit's semantics: a step is reused when its parent
//! filesystem, its definition and the content it reads are the same.
//!
//! Every input that goes into a key is kept, by name, in the cache entry
//! ([`StepInputs`]), so that a later miss can be explained by diffing the
//! inputs of the nearest entry ("COPY . /app: 2 files changed: ...").

use std::collections::BTreeMap;

use hoist_store::digest::{ChainId, sha256_bytes};
use serde::{Deserialize, Serialize};

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
