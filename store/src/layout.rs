//! index.json: read without a lock (it is only ever replaced by rename),
//! edited under the exclusive lock.
//! (<https://github.com/opencontainers/image-spec/blob/main/image-layout.md#indexjson-file>)

use oci_spec::image::ImageIndex;

use crate::store::Store;
use crate::{Result, StoreError};

impl Store {
    /// The current index.json.
    pub(crate) fn read_index(&self) -> Result<ImageIndex> {
        let path = self.root().join("index.json");
        let bytes = std::fs::read(&path).map_err(StoreError::io(&path))?;
        serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
            what: path.display().to_string(),
            source,
        })
    }

    /// Applies `edit` to index.json under the exclusive lock and replaces the
    /// file atomically when `edit` reports a change (returns `true` in the
    /// first tuple field).
    pub(crate) fn update_index<T>(
        &self,
        edit: impl FnOnce(&mut ImageIndex) -> Result<(bool, T)>,
    ) -> Result<T> {
        let _guard = self.lock_exclusive()?;
        self.update_index_locked(edit)
    }

    /// [`Store::update_index`] for callers already holding the exclusive lock.
    pub(crate) fn update_index_locked<T>(
        &self,
        edit: impl FnOnce(&mut ImageIndex) -> Result<(bool, T)>,
    ) -> Result<T> {
        let mut index = self.read_index()?;
        let (changed, value) = edit(&mut index)?;
        if changed {
            let bytes = canonical_json(&index, "index.json")?;
            self.write_atomic(&self.root().join("index.json"), &bytes)?;
        }
        Ok(value)
    }
}

/// Serialises with every object's keys sorted, so that documents built from
/// oci-spec's `HashMap`s (labels, annotations) get stable digests.
pub(crate) fn canonical_json(value: &impl serde::Serialize, what: &str) -> Result<Vec<u8>> {
    let json = |source| StoreError::Json {
        what: what.to_owned(),
        source,
    };
    let mut value = serde_json::to_value(value).map_err(json)?;
    sort_keys(&mut value);
    serde_json::to_vec(&value).map_err(json)
}

fn sort_keys(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.sort_keys();
            map.values_mut().for_each(sort_keys);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(sort_keys),
        _ => {}
    }
}
