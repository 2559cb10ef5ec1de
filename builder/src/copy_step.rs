//! COPY, ADD and WORKDIR: filesystem steps that run in the builder itself,
//! writing into a merged overlay view whose upperdir becomes the layer.

use hoist_parser::expand::expand_heredoc;
use hoist_parser::instruction::CopyAdd;
use hoist_parser::syntax::Heredoc;

use crate::context_memo::Sources;
use crate::copy::SourceView;
use crate::error::StepError;
use crate::http_source::UrlContent;
use crate::progress::Event;
use crate::rootfs::{LayerStack, Scratch};
use crate::run_step::{mount_view, resolve_user};
use crate::stage::{StageBuilder, StepContext};
use crate::user::resolve_chown;
use hoist_store::inroot::Root;

impl StageBuilder<'_> {
    /// WORKDIR: sets the config's working directory and creates it (owned
    /// by the current USER) when missing. A directory that already exists
    /// gives an empty diff, hence no layer.
    pub(crate) fn workdir(&mut self, step: &StepContext, path: &str) -> Result<(), StepError> {
        let dir = crate::copy::join_workdir(&self.workdir_path(), path);
        self.config.config.working_dir = Some(dir.clone());
        let created_by = format!("WORKDIR {dir}");
        let user = self.config.config.user.clone().unwrap_or_default();
        let inputs = self.workdir_inputs(&dir, &user);
        if self.try_cache(step, &inputs, &created_by)? {
            return Ok(());
        }
        let (scratch, lowerdirs) = self.prepare_step()?;
        {
            let merged = scratch.mount_merged(&lowerdirs)?;
            // The merged root is one directory: nothing more to mount.
            let root = [merged.target().to_owned()];
            let owner = resolve_user(&root, &user, &scratch.mountpoint, None)?;
            crate::copy::mkdir_all_in_root(merged.target(), &dir, owner.uid, owner.gid)
                .map_err(StepError::Copy)?;
            merged.unmount()?;
        }
        self.commit_step(step, inputs, &scratch.upper, created_by)
    }

    /// COPY and ADD.
    pub(crate) fn copy_step(
        &mut self,
        step: &StepContext,
        copy: &CopyAdd,
        is_add: bool,
    ) -> Result<(), StepError> {
        let dest = crate::copy::join_workdir(&self.workdir_path(), &copy.dest);
        // Keep a trailing slash: it means "into this directory".
        let dest = if copy.dest.ends_with('/') && !dest.ends_with('/') {
            format!("{dest}/")
        } else {
            dest
        };
        let created_by = copy_created_by(copy, is_add);
        let source_stack = copy
            .from
            .as_deref()
            .map(|from| self.source_stack(from))
            .transpose()?;

        let heredocs = self.expand_heredocs(&copy.heredocs)?;
        // ADD of a URL without --checksum is keyed by what the URL serves
        // now, as BuildKit's: resolve it first (once; the copy below uses
        // the same content).
        let urls = if is_add && copy.checksum.is_none() {
            self.resolve_urls(step, &copy.sources)?
        } else {
            Vec::new()
        };
        let url_contents: Vec<(String, String)> = urls
            .iter()
            .map(|(url, content)| (url.clone(), content.identity()))
            .collect();
        let inputs = self.copy_inputs(
            copy,
            is_add,
            &dest,
            &heredocs,
            source_stack.as_ref(),
            &url_contents,
        )?;
        if self.scope.request.explain
            && let Some(Sources::Remembered { walk, .. }) = &self.sources
        {
            let message = format!(
                "{}: sources unchanged since an earlier build ({} entries statted, none read)",
                step.text,
                crate::cache::thousands(walk.len())
            );
            self.scope.builder.progress.event(Event::Status {
                step: step.id,
                message: &message,
            });
        }
        if self.try_cache(step, &inputs, &created_by)? {
            return Ok(());
        }
        let prefetched = self.take_downloads(urls)?;

        // A miss whose earlier build differs only in some files takes the
        // unchanged ones from that build; if anything goes wrong there, the
        // step is copied again from scratch, which gives the same result.
        let reuse = self.copy_reuse(copy, is_add, &heredocs, &inputs);
        let job = CopyStep {
            copy,
            is_add,
            dest: &dest,
            heredocs: &heredocs,
            source_stack: source_stack.as_ref(),
            prefetched: prefetched.as_ref(),
        };
        let scratch = match &reuse {
            Some(reuse) => match self.copy_to_scratch(&job, Some(reuse)) {
                Ok(scratch) => {
                    let taken = reuse.taken();
                    let noun = if taken == 1 { "file" } else { "files" };
                    let message = format!(
                        "{}: reused {} unchanged {noun} of an earlier build",
                        step.text,
                        crate::cache::thousands(taken)
                    );
                    self.scope
                        .builder
                        .progress
                        .event(crate::progress::Event::Status {
                            step: step.id,
                            message: &message,
                        });
                    scratch
                }
                Err(_) => self.copy_to_scratch(&job, None)?,
            },
            None => self.copy_to_scratch(&job, None)?,
        };
        self.commit_step(step, inputs, &scratch.upper, created_by)
    }

    /// Runs a COPY or ADD into a fresh upperdir over the stage's
    /// filesystem, taking unchanged files from `reuse` when given.
    fn copy_to_scratch(
        &self,
        job: &CopyStep<'_>,
        reuse: Option<&std::sync::Arc<crate::copy::reuse::Reuse>>,
    ) -> Result<Scratch, StepError> {
        let store = self.scope.builder.store;
        let copy = job.copy;
        let (scratch, lowerdirs) = self.prepare_step()?;
        // The source view for --from: mounted read-only beside the target.
        let from_mount = scratch.mountpoint.with_file_name("from");
        let mut from_guard = None;
        let from_root = match job.source_stack {
            Some(stack) => {
                let dirs = stack.lowerdirs(store)?;
                let root = if dirs.is_empty() {
                    scratch.empty_lower()?
                } else {
                    fs_err::create_dir_all(&from_mount)
                        .map_err(StepError::io("creating a mount point"))?;
                    let view = mount_view(&dirs, &from_mount, scratch.snapshotter)?;
                    let root = view.root().to_owned();
                    from_guard = Some(view);
                    root
                };
                Some(Root::open(&root).map_err(StepError::io("opening the --from root"))?)
            }
            None => None,
        };
        let source = match &from_root {
            Some(root) => SourceView { root, ignore: None },
            None => self.scope.context.view(),
        };
        {
            let merged = scratch.mount_merged(&lowerdirs)?;
            // --chown names resolve in the image being built (BuildKit's
            // chown rules: a lone uid keeps gid = uid).
            let chown = copy
                .chown
                .as_deref()
                .map(|spec| resolve_chown(merged.target(), spec))
                .transpose()?;
            let request = crate::copy::CopyRequest {
                source,
                preserve_owner: job.source_stack.is_some(),
                sources: &copy.sources,
                heredocs: job.heredocs,
                dest: job.dest,
                chown,
                chmod: copy.chmod.as_deref(),
                exclude: &copy.exclude,
                parents: copy.parents,
                is_add: job.is_add,
                checksum: copy.checksum.as_deref(),
                unpack: copy.unpack,
                prefetched: job.prefetched,
                reuse,
            };
            crate::copy::copy_into(merged.target(), &request).map_err(StepError::Copy)?;
            merged.unmount()?;
        }
        drop(from_guard);
        if let Some(reuse) = reuse {
            reuse
                .link_into(&scratch.upper)
                .map_err(StepError::io("linking unchanged files of an earlier build"))?;
        }
        Ok(scratch)
    }

    /// Heredoc sources as files get them: chomped, and with variables
    /// expanded unless the delimiter was quoted (BuildKit's `ExpandRaw`).
    fn expand_heredocs(&self, heredocs: &[Heredoc]) -> Result<Vec<Heredoc>, StepError> {
        heredocs
            .iter()
            .map(|heredoc| {
                let body = heredoc.body();
                let content = if heredoc.expand {
                    expand_heredoc(&body, &|name| self.lookup(name)).map_err(|source| {
                        StepError::Heredoc {
                            name: heredoc.name.clone(),
                            source,
                        }
                    })?
                } else {
                    body.into_owned()
                };
                Ok(Heredoc {
                    content,
                    chomp: false,
                    ..heredoc.clone()
                })
            })
            .collect()
    }

    /// The filesystem a `--from` names: a stage (by name or index) built
    /// earlier in this build, or an image in the store.
    pub(crate) fn source_stack(&self, from: &str) -> Result<LayerStack, StepError> {
        let graph = self.scope.graph;
        let index = graph.stage_by_name(from).or_else(|| {
            from.parse::<usize>()
                .ok()
                .filter(|i| *i < graph.stages.len())
        });
        if let Some(index) = index {
            return self.stage_result(index).map(|result| result.stack.clone());
        }
        let image = self.scope.builder.image_for(from, &self.platform)?;
        Ok(LayerStack::from_layers(image.layers()))
    }
}

/// One COPY or ADD, as [`StageBuilder::copy_to_scratch`] runs it.
struct CopyStep<'a> {
    copy: &'a CopyAdd,
    is_add: bool,
    dest: &'a str,
    heredocs: &'a [Heredoc],
    source_stack: Option<&'a LayerStack>,
    prefetched: Option<&'a crate::copy::Prefetched>,
}

/// BuildKit's history line for COPY/ADD: flags that change the result, the
/// sources and the destination as written.
fn copy_created_by(copy: &CopyAdd, is_add: bool) -> String {
    let mut text = String::from(if is_add { "ADD" } else { "COPY" });
    if copy.parents {
        text.push_str(" --parents");
    }
    if let Some(chown) = &copy.chown {
        text.push_str(&format!(" --chown={chown}"));
    }
    if let Some(chmod) = &copy.chmod {
        text.push_str(&format!(" --chmod={chmod}"));
    }
    for source in &copy.sources {
        text.push(' ');
        text.push_str(source);
    }
    for heredoc in &copy.heredocs {
        text.push_str(&format!(" <<{}", heredoc.name));
    }
    text.push(' ');
    text.push_str(&copy.dest);
    text.push_str(" # buildkit");
    text
}

impl StageBuilder<'_> {
    /// What every HTTP(S) URL among `sources` serves now (see
    /// [`crate::http_source`]), sorted by URL. Under `--dry-run` nothing
    /// is fetched: the last download the store remembers stands in, and a
    /// status line says so.
    fn resolve_urls(
        &mut self,
        step: &StepContext,
        sources: &[String],
    ) -> Result<Vec<(String, UrlContent)>, StepError> {
        use crate::copy::fetch;
        let mut urls: Vec<&String> = sources
            .iter()
            .filter(|s| fetch::is_http_url(s) && !fetch::is_git_url(s))
            .collect();
        urls.sort();
        urls.dedup();
        let store = self.scope.builder.store;
        let mut resolved = Vec::new();
        for url in urls {
            let content = if self.scope.dry_run {
                match crate::http_source::known(store, url) {
                    Some(record) => {
                        let message = format!(
                            "{}: {} not downloaded (--dry-run): predicted from its last download",
                            step.text,
                            fetch::redact(url)
                        );
                        self.scope.builder.progress.event(Event::Status {
                            step: step.id,
                            message: &message,
                        });
                        UrlContent::Predicted(record)
                    }
                    None => {
                        self.url_unknown = true;
                        UrlContent::Unknown
                    }
                }
            } else {
                crate::http_source::resolve(store, url, &std::env::temp_dir())?
            };
            resolved.push((url.clone(), content));
        }
        Ok(resolved)
    }

    /// The downloads a COPY of `urls` takes; `None` when there is none.
    fn take_downloads(
        &self,
        urls: Vec<(String, UrlContent)>,
    ) -> Result<Option<crate::copy::Prefetched>, StepError> {
        if urls.is_empty() {
            return Ok(None);
        }
        let store = self.scope.builder.store;
        let mut downloads = std::collections::HashMap::new();
        for (url, content) in urls {
            let download = content.into_download(store, &url, &std::env::temp_dir())?;
            downloads.insert(url, download);
        }
        Ok(Some(std::sync::Arc::new(std::sync::Mutex::new(downloads))))
    }
}
