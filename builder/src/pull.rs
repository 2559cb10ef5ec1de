//! Images a build names (`FROM`, `COPY --from`, `RUN --mount=from=`) that
//! the store lacks are pulled from their registry, as BuildKit does; with
//! `--pull`, a manifest HEAD checks whether the registry has a newer one.
//! An image for another platform than its tag's is found through the
//! index both were pulled through, so it too is pulled once.

use std::time::Instant;

use hoist_store::registry::{self, Client, PullOptions, TransferProgress};
use hoist_store::{Image, Reference, StoreError};
use oci_spec::image::Descriptor;

use crate::args::Platform;
use crate::build::Builder;
use crate::error::StepError;
use crate::progress::{Event, StepId};

/// What resolving an image needs: nothing more, or a pull.
pub(crate) enum Plan {
    Ready(Box<Image>),
    Pull {
        reference: Reference,
        /// Tag the pulled image (not when the store's tag names an image
        /// for another platform).
        tag: bool,
        /// The store has no image of that name.
        missing: bool,
        /// The untagged image for another platform than the tag's that
        /// `--pull` found out of date: once the newer one is pulled, the
        /// store no longer lists it, so that a later build without
        /// `--pull` does not resolve the name to it again.
        replaces: Option<hoist_store::digest::Digest>,
    },
}

impl Builder<'_> {
    /// The image `reference` names, pulled for `platform` when the store
    /// lacks it (or, with `--pull`, when the registry's digest changed).
    pub(crate) fn image_for(
        &self,
        reference: &str,
        platform: &Platform,
    ) -> Result<Image, StepError> {
        // Stages built at the same time that need the same image pull it
        // once: the second finds it in the store.
        let lock = self.pull_lock(reference);
        let _held = lock.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(err) = self.take_failed_image(reference, platform) {
            return Err(err);
        }
        match self.plan_image(reference, platform)? {
            Plan::Ready(image) => Ok(*image),
            plan => self.pull_planned(&plan, platform, None),
        }
    }

    /// Whether `reference` for `platform` needs a pull (with `--pull`,
    /// this asks the registry for its digest).
    pub(crate) fn plan_image(
        &self,
        reference: &str,
        platform: &Platform,
    ) -> Result<Plan, StepError> {
        let local = self.store.resolve(reference);
        let Some(client) = self.registry else {
            return local
                .map(|image| Plan::Ready(Box::new(image)))
                .map_err(|err| match err {
                    StoreError::ImageNotFound(_) => StepError::ImageNotInStore {
                        reference: reference.to_owned(),
                    },
                    other => StepError::Store(other),
                });
        };
        let normalized = match Reference::parse_normalized(reference) {
            Ok(normalized) => normalized.with_default_tag(),
            // Image IDs and other local names: the store's answer stands.
            Err(_) => {
                return local
                    .map(|image| Plan::Ready(Box::new(image)))
                    .map_err(StepError::Store);
            }
        };
        let pull = |tag, missing| Plan::Pull {
            reference: normalized.clone(),
            tag,
            missing,
            replaces: None,
        };
        let image = match local {
            Ok(image) => image,
            Err(StoreError::ImageNotFound(_)) => return Ok(pull(true, true)),
            Err(other) => return Err(StepError::Store(other)),
        };
        // The store's image of that name is for another platform: the one
        // asked for is the one pulled before through the same index (the
        // store keeps the index), else it is pulled, leaving the tag where
        // it points (BuildKit resolves every image for the stage's
        // platform).
        let tagged = is_for(&image, platform);
        let image = if tagged {
            image
        } else {
            let wanted = registry::Platform::normalized(
                &platform.os,
                &platform.architecture,
                platform.variant.as_deref(),
            );
            match self
                .store
                .image_for_platform(&image, &wanted)
                .map_err(StepError::Store)?
            {
                Some(image) if is_for(&image, platform) => image,
                _ => return Ok(pull(false, false)),
            }
        };
        if !self.always_pull || normalized.digest().is_some() {
            return Ok(Plan::Ready(Box::new(image)));
        }
        let remote = client
            .resolve_digest(&normalized)
            .map_err(|err| pull_error(&normalized, err))?;
        let known = format!("{}@{remote}", normalized.name());
        if self.store.repo_digests(image.digest()).contains(&known) {
            return Ok(Plan::Ready(Box::new(image)));
        }
        Ok(Plan::Pull {
            reference: normalized,
            tag: tagged,
            missing: false,
            replaces: (!tagged).then(|| image.digest().clone()),
        })
    }

    /// Carries out a [`Plan::Pull`] as progress step `step` (a new one
    /// when `None`).
    pub(crate) fn pull_planned(
        &self,
        plan: &Plan,
        platform: &Platform,
        step: Option<StepId>,
    ) -> Result<Image, StepError> {
        let (reference, tag, missing, replaces) = match plan {
            Plan::Ready(image) => return Ok((**image).clone()),
            Plan::Pull {
                reference,
                tag,
                missing,
                replaces,
            } => (reference, *tag, *missing, replaces),
        };
        let client = self
            .registry
            .expect("a pull is planned only with a registry client");
        let image = self
            .pull(client, reference, platform, tag, step)
            .map_err(|err| match err {
                err @ StepError::Resolve { .. } if missing => {
                    StepError::NotInStoreEither(Box::new(err))
                }
                other => other,
            })?;
        if let Some(old) = replaces
            && old != image.digest()
            && self
                .store
                .names_of(old)
                .map_err(StepError::Store)?
                .is_empty()
        {
            self.store.remove_image(old).map_err(StepError::Store)?;
        }
        Ok(image)
    }

    fn pull(
        &self,
        client: &Client,
        reference: &Reference,
        platform: &Platform,
        tag: bool,
        step: Option<StepId>,
    ) -> Result<Image, StepError> {
        let step = step.unwrap_or_else(|| self.progress_step());
        let started = Instant::now();
        let name = format!("[internal] pull {reference}");
        self.progress.event(Event::Started { step, name: &name });
        let progress = PullEvents {
            builder: self,
            step,
        };
        let mut options = PullOptions::new(&progress);
        options.tag = tag;
        options.platform = Some(registry::Platform::normalized(
            &platform.os,
            &platform.architecture,
            platform.variant.as_deref(),
        ));
        let pulled = client.pull(self.store, reference, &options);
        let elapsed = started.elapsed();
        let pulled = match pulled {
            Ok(pulled) => pulled,
            Err(err) => {
                self.progress.event(Event::Failed { step, elapsed });
                return Err(pull_error(reference, err));
            }
        };
        let message = format!("resolve {reference}@{} done", pulled.repo_digest);
        self.progress.event(Event::Status {
            step,
            message: &message,
        });
        self.progress.event(Event::Done { step, elapsed });
        // Resolved again so that the image and its snapshots are leased.
        self.store
            .resolve(pulled.image.digest().as_ref())
            .map_err(StepError::Store)
    }
}

/// Whether `image`'s config says it is for `platform` (OS and
/// architecture; a config without them is taken to be).
fn is_for(image: &Image, platform: &Platform) -> bool {
    let config = image.config_json();
    let field = |name: &str| config.get(name).and_then(|v| v.as_str()).unwrap_or("");
    let (os, architecture) = (field("os"), field("architecture"));
    (os.is_empty() || os == platform.os)
        && (architecture.is_empty() || architecture == platform.architecture)
}

fn pull_error(reference: &Reference, err: registry::RegistryError) -> StepError {
    StepError::Resolve {
        reference: reference.to_string(),
        source: err,
    }
}

/// Layer progress as status lines of the pull step.
struct PullEvents<'b, 'a> {
    builder: &'b Builder<'a>,
    step: StepId,
}

impl TransferProgress for PullEvents<'_, '_> {
    fn finished(&self, layer: &Descriptor) {
        let message = format!("{} {} done", layer.digest(), layer.size());
        self.builder.progress.event(Event::Status {
            step: self.step,
            message: &message,
        });
    }
}
