//! Manifest media types, size limits and platform choice
//! (<https://github.com/opencontainers/image-spec/blob/main/media-types.md>,
//! Docker's image manifest v2 schema 2).

use std::fmt;

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};

use crate::digest::parse_digest;
use crate::registry::RegistryError;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// Layer media types hoist can extract.
const LAYER_TYPES: &[&str] = &[
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar",
];

/// What a manifest request may return, best first (the `Accept` header).
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// Manifests and indexes above this size are refused (BuildKit's limit).
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;
/// Image configs above this size are refused.
pub const MAX_CONFIG_SIZE: u64 = 8 << 20;

/// The OCI media type for a Docker schema2 one: the manifest, its config
/// and its layers (as containers/image converts them); `None` for media
/// types that are not Docker's.
fn oci_media_type(docker: &str) -> Option<&'static str> {
    Some(match docker {
        DOCKER_MANIFEST => OCI_MANIFEST,
        DOCKER_CONFIG => "application/vnd.oci.image.config.v1+json",
        "application/vnd.docker.image.rootfs.diff.tar" => "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.docker.image.rootfs.diff.tar.gzip" => {
            "application/vnd.oci.image.layer.v1.tar+gzip"
        }
        "application/vnd.docker.image.rootfs.diff.tar.zstd" => {
            "application/vnd.oci.image.layer.v1.tar+zstd"
        }
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        }
        _ => return None,
    })
}

/// The OCI form of a Docker schema2 image manifest: the same config and
/// layers (digests, sizes, URLs) under OCI media types, which is what
/// other tools reading an OCI layout (skopeo's `oci:`, umoci) accept.
/// `None` when the manifest uses no Docker media type.
/// (<https://github.com/opencontainers/image-spec/blob/main/media-types.md#compatibility-matrix>)
pub fn docker_manifest_to_oci(what: &str, bytes: &[u8]) -> Result<Option<Vec<u8>>, RegistryError> {
    let mut manifest: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|err| RegistryError::invalid(what, err))?;
    let mut changed = false;
    let mut convert = |value: &mut serde_json::Value| {
        if let Some(oci) = value.as_str().and_then(oci_media_type) {
            *value = serde_json::Value::from(oci);
            changed = true;
        }
    };
    if let Some(media_type) = manifest.get_mut("mediaType") {
        convert(media_type);
    }
    if let Some(media_type) = manifest.pointer_mut("/config/mediaType") {
        convert(media_type);
    }
    if let Some(layers) = manifest.get_mut("layers").and_then(|l| l.as_array_mut()) {
        for layer in layers {
            if let Some(media_type) = layer.get_mut("mediaType") {
                convert(media_type);
            }
        }
    }
    if !changed {
        return Ok(None);
    }
    if let Some(object) = manifest.as_object_mut() {
        object
            .entry("mediaType")
            .or_insert_with(|| serde_json::Value::from(OCI_MANIFEST));
    }
    serde_json::to_vec(&manifest)
        .map(Some)
        .map_err(|err| RegistryError::invalid(what, err))
}

/// A manifest as the registry sent it.
pub enum Fetched {
    Manifest(Box<ImageManifest>),
    Index(Box<ImageIndex>),
}

/// Classifies and parses manifest bytes. The media type comes from the
/// body's `mediaType`, else from the `Content-Type` header.
pub fn parse_manifest(
    what: &str,
    bytes: &[u8],
    content_type: Option<&str>,
) -> Result<Fetched, RegistryError> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "schemaVersion", default)]
        schema_version: u32,
        #[serde(rename = "mediaType", default)]
        media_type: Option<String>,
        #[serde(default)]
        manifests: Option<serde_json::Value>,
    }
    let probe: Probe =
        serde_json::from_slice(bytes).map_err(|err| RegistryError::invalid(what, err))?;
    let header = content_type
        .map(|t| t.split(';').next().unwrap_or(t).trim().to_owned())
        .filter(|t| !t.is_empty() && t != "application/json" && t != "text/plain");
    let media_type = probe.media_type.clone().or(header).unwrap_or_default();
    if probe.schema_version == 1
        || media_type == DOCKER_SCHEMA1
        || media_type == DOCKER_SCHEMA1_SIGNED
    {
        return Err(RegistryError::Schema1 {
            reference: what.to_owned(),
        });
    }
    if probe.schema_version != 2 {
        return Err(RegistryError::invalid(
            what,
            format!("unsupported schemaVersion {}", probe.schema_version),
        ));
    }
    let is_index = match media_type.as_str() {
        OCI_INDEX | DOCKER_MANIFEST_LIST => true,
        OCI_MANIFEST | DOCKER_MANIFEST => false,
        // An OCI index may omit its media type.
        "" => probe.manifests.is_some(),
        other => {
            return Err(RegistryError::invalid(
                what,
                format!("unsupported manifest media type {other:?}"),
            ));
        }
    };
    if is_index {
        let index: ImageIndex =
            serde_json::from_slice(bytes).map_err(|err| RegistryError::invalid(what, err))?;
        for entry in index.manifests() {
            validate_descriptor(what, entry, MAX_MANIFEST_SIZE)?;
        }
        Ok(Fetched::Index(Box::new(index)))
    } else {
        let manifest: ImageManifest =
            serde_json::from_slice(bytes).map_err(|err| RegistryError::invalid(what, err))?;
        validate_image_manifest(what, &manifest)?;
        Ok(Fetched::Manifest(Box::new(manifest)))
    }
}

/// Checks every descriptor of an image manifest before anything is
/// fetched: sha256 digests, sizes within bounds, known media types.
fn validate_image_manifest(what: &str, manifest: &ImageManifest) -> Result<(), RegistryError> {
    let config = manifest.config();
    validate_descriptor(what, config, MAX_CONFIG_SIZE)?;
    let config_type = config.media_type().to_string();
    if config_type != OCI_CONFIG && config_type != DOCKER_CONFIG {
        return Err(RegistryError::invalid(
            what,
            format!(
                "config media type {config_type:?} is not an image config (is this an artifact?)"
            ),
        ));
    }
    for layer in manifest.layers() {
        validate_descriptor(what, layer, u64::MAX)?;
        let layer_type = layer.media_type().to_string();
        if !LAYER_TYPES.contains(&layer_type.as_str()) {
            return Err(RegistryError::invalid(
                what,
                format!(
                    "layer {} has unsupported media type {layer_type:?}",
                    layer.digest()
                ),
            ));
        }
    }
    Ok(())
}

fn validate_descriptor(
    what: &str,
    descriptor: &Descriptor,
    limit: u64,
) -> Result<(), RegistryError> {
    parse_digest(descriptor.digest().as_ref()).map_err(|err| RegistryError::invalid(what, err))?;
    if descriptor.size() > limit {
        return Err(RegistryError::TooLarge {
            what: format!("{what}: {}", descriptor.digest()),
            limit,
        });
    }
    Ok(())
}

/// `os/arch[/variant]`, normalised as containerd does (`arm64` is
/// `arm64/v8`, `arm` is `arm/v7`, `x86_64` is `amd64`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// Parses `linux/arm64`, `linux/arm/v7`, `arm64` (linux implied).
    pub fn parse(input: &str) -> Result<Platform, RegistryError> {
        let parts: Vec<&str> = input.split('/').collect();
        let (os, arch, variant) = match parts.as_slice() {
            [arch] => ("linux", *arch, None),
            [os, arch] => (*os, *arch, None),
            [os, arch, variant] => (*os, *arch, Some(*variant)),
            _ => return Err(RegistryError::InvalidPlatform(input.to_owned())),
        };
        if os.is_empty() || arch.is_empty() || variant.is_some_and(str::is_empty) {
            return Err(RegistryError::InvalidPlatform(input.to_owned()));
        }
        Ok(Platform::normalized(
            &os.to_lowercase(),
            &arch.to_lowercase(),
            variant.map(str::to_lowercase).as_deref(),
        ))
    }

    /// The platform hoist runs on.
    pub fn host() -> Platform {
        Platform::normalized(std::env::consts::OS, std::env::consts::ARCH, None)
    }

    pub fn normalized(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        // A bare number is a variant without its `v` (`arm/7`).
        let variant = variant.filter(|v| !v.is_empty()).map(|v| {
            if v.bytes().all(|b| b.is_ascii_digit()) {
                format!("v{v}")
            } else {
                v.to_owned()
            }
        });
        let (architecture, variant) = match (architecture, variant) {
            ("x86_64" | "x86-64" | "amd64", Some(v)) if v == "v1" => ("amd64", None),
            ("x86_64" | "x86-64" | "amd64", v) => ("amd64", v),
            ("aarch64" | "arm64", None) => ("arm64", Some("v8".to_owned())),
            ("aarch64" | "arm64", v) => ("arm64", v),
            ("armhf", _) => ("arm", Some("v7".to_owned())),
            ("armel", _) => ("arm", Some("v6".to_owned())),
            ("arm", None) => ("arm", Some("v7".to_owned())),
            ("i386" | "i686" | "x86", _) => ("386", None),
            (arch, v) => (arch, v),
        };
        Platform {
            os: if os == "macos" {
                "darwin".to_owned()
            } else {
                os.to_owned()
            },
            architecture: architecture.to_owned(),
            variant,
        }
    }

    /// Whether an index entry's platform is this one. An entry without a
    /// variant matches a wanted default variant (`arm64` = `arm64/v8`).
    pub fn matches(&self, descriptor: &Descriptor) -> bool {
        let Some(platform) = descriptor.platform() else {
            return false;
        };
        let other = Platform::normalized(
            &platform.os().to_string(),
            &platform.architecture().to_string(),
            platform.variant().as_deref(),
        );
        other.os == self.os
            && other.architecture == self.architecture
            && (other.variant == self.variant || self.variant.is_none())
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// Picks `wanted` among an index's entries; the error lists what the
/// index has.
pub fn choose_platform<'i>(
    index: &'i ImageIndex,
    wanted: &Platform,
) -> Result<&'i Descriptor, RegistryError> {
    let is_manifest = |d: &&Descriptor| {
        let t = d.media_type().to_string();
        t == OCI_MANIFEST || t == DOCKER_MANIFEST
    };
    index
        .manifests()
        .iter()
        .filter(is_manifest)
        .find(|d| wanted.matches(d))
        .ok_or_else(|| {
            let mut available: Vec<String> = index
                .manifests()
                .iter()
                .filter(is_manifest)
                .filter_map(|d| d.platform().as_ref())
                .filter(|p| p.os().to_string() != "unknown")
                .map(|p| {
                    Platform::normalized(
                        &p.os().to_string(),
                        &p.architecture().to_string(),
                        p.variant().as_deref(),
                    )
                    .to_string()
                })
                .collect();
            available.dedup();
            RegistryError::NoMatchingPlatform {
                wanted: wanted.to_string(),
                available: if available.is_empty() {
                    "none".to_owned()
                } else {
                    available.join(", ")
                },
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_manifests_become_oci_with_the_same_blobs() {
        let layer = |media_type: &str| serde_json::json!({"mediaType": media_type, "size": 3, "digest": format!("sha256:{}", "a".repeat(64))});
        let cases = [
            (
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                Some("application/vnd.oci.image.layer.v1.tar+gzip"),
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar",
                Some("application/vnd.oci.image.layer.v1.tar"),
            ),
            (
                "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                Some("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"),
            ),
            ("application/vnd.oci.image.layer.v1.tar+gzip", None),
        ];
        for (docker, oci) in cases {
            let config_type = if oci.is_some() {
                DOCKER_CONFIG
            } else {
                "application/vnd.oci.image.config.v1+json"
            };
            let media_type = if oci.is_some() {
                DOCKER_MANIFEST
            } else {
                OCI_MANIFEST
            };
            let manifest = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": media_type,
                "config": {"mediaType": config_type, "size": 2, "digest": format!("sha256:{}", "b".repeat(64))},
                "layers": [layer(docker)],
            });
            let converted = docker_manifest_to_oci("m", manifest.to_string().as_bytes()).unwrap();
            let Some(oci) = oci else {
                assert!(
                    converted.is_none(),
                    "case {docker}: an OCI manifest stays as it is"
                );
                continue;
            };
            let converted: serde_json::Value = serde_json::from_slice(&converted.unwrap()).unwrap();
            assert_eq!(converted["mediaType"], OCI_MANIFEST, "case {docker}");
            assert_eq!(
                converted["config"]["mediaType"], "application/vnd.oci.image.config.v1+json",
                "case {docker}"
            );
            assert_eq!(converted["layers"][0]["mediaType"], oci, "case {docker}");
            assert_eq!(
                converted["layers"][0]["digest"], manifest["layers"][0]["digest"],
                "case {docker}"
            );
            assert_eq!(
                converted["config"]["digest"], manifest["config"]["digest"],
                "case {docker}"
            );
        }
    }

    #[test]
    fn platforms_normalise_like_containerd() {
        for (input, want) in [
            ("linux/amd64", "linux/amd64"),
            ("linux/x86_64", "linux/amd64"),
            ("arm64", "linux/arm64/v8"),
            ("linux/arm64/v8", "linux/arm64/v8"),
            ("linux/aarch64", "linux/arm64/v8"),
            ("linux/arm", "linux/arm/v7"),
            ("linux/arm/v7", "linux/arm/v7"),
            ("linux/arm/v6", "linux/arm/v6"),
            ("linux/386", "linux/386"),
        ] {
            assert_eq!(Platform::parse(input).unwrap().to_string(), want, "{input}");
        }
        for bad in ["", "linux/", "a/b/c/d", "linux/arm/"] {
            assert!(Platform::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }

    fn index(platforms: &[(&str, &str, Option<&str>)]) -> ImageIndex {
        let manifests: Vec<serde_json::Value> = platforms
            .iter()
            .enumerate()
            .map(|(i, (os, arch, variant))| {
                let mut platform = serde_json::json!({"os": os, "architecture": arch});
                if let Some(v) = variant {
                    platform["variant"] = (*v).into();
                }
                serde_json::json!({
                    "mediaType": OCI_MANIFEST,
                    "size": 100 + i,
                    "digest": format!("sha256:{:064x}", i + 1),
                    "platform": platform,
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": manifests,
        }))
        .unwrap()
    }

    #[test]
    fn platform_choice_with_variants() {
        let idx = index(&[
            ("linux", "amd64", None),
            ("linux", "arm", Some("v7")),
            ("linux", "arm64", None),
            ("unknown", "unknown", None),
        ]);
        for (wanted, size) in [
            ("linux/amd64", 100),
            ("linux/arm/v7", 101),
            ("linux/arm64/v8", 102),
            ("linux/arm64", 102),
        ] {
            let chosen = choose_platform(&idx, &Platform::parse(wanted).unwrap()).unwrap();
            assert_eq!(chosen.size(), size, "{wanted}");
        }
        let err = choose_platform(&idx, &Platform::parse("linux/s390x").unwrap())
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "no matching manifest for linux/s390x in the manifest list entries \
             (available: linux/amd64, linux/arm/v7, linux/arm64/v8)"
        );
    }

    #[test]
    fn manifests_are_classified_and_validated() {
        let schema1 = br#"{"schemaVersion":1,"name":"a","tag":"b","fsLayers":[]}"#;
        assert!(matches!(
            parse_manifest("x", schema1, None),
            Err(RegistryError::Schema1 { .. })
        ));
        let zero = format!("sha256:{:064x}", 0);
        let manifest = |layer_type: &str, digest: &str| {
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"mediaType":"{DOCKER_CONFIG}","size":2,"digest":"{zero}"}},"layers":[{{"mediaType":"{layer_type}","size":3,"digest":"{digest}"}}]}}"#
            )
        };
        let ok = manifest("application/vnd.docker.image.rootfs.diff.tar.gzip", &zero);
        assert!(matches!(
            parse_manifest("x", ok.as_bytes(), None),
            Ok(Fetched::Manifest(_))
        ));
        let bad_type = manifest("application/x-foo", &zero);
        assert!(parse_manifest("x", bad_type.as_bytes(), None).is_err());
        let bad_digest = manifest(
            "application/vnd.oci.image.layer.v1.tar",
            "sha512:00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        );
        assert!(parse_manifest("x", bad_digest.as_bytes(), None).is_err());
        let untyped_index = r#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(
            parse_manifest("x", untyped_index.as_bytes(), None),
            Ok(Fetched::Index(_))
        ));
    }
}
