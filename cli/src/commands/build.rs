//! `hoist build`: `docker build`'s flags and output, with no daemon.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use hoist_builder::args::{Platform, parse_build_args};
use hoist_builder::layer::Compression;
use hoist_builder::{BuildError, BuildRequest, Builder, SandboxOptions};
use hoist_sandbox::{NamespaceSandbox, Network};
use hoist_store::Store;

use crate::globals::Globals;
use crate::progress;
use crate::render;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The build context: a directory, or `-` for a tar archive on stdin
    #[arg(value_name = "PATH")]
    context: PathBuf,
    /// Name of the Dockerfile (default: PATH/Dockerfile); `-` reads stdin
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<PathBuf>,
    /// Name and optionally a tag (`name:tag`); may be repeated
    #[arg(short = 't', long = "tag", value_name = "NAME")]
    tags: Vec<String>,
    /// Set the target build stage to build
    #[arg(long)]
    target: Option<String>,
    /// Set build-time variables (`KEY=VALUE`, or `KEY` to take it from the
    /// environment)
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    build_args: Vec<String>,
    /// Set metadata for an image (`KEY=VALUE`)
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// Set the target platform (only the host's is supported)
    #[arg(long)]
    platform: Option<String>,
    /// The networking mode for RUN instructions
    #[arg(long, default_value = "default", value_parser = ["default", "host", "none"])]
    network: String,
    /// Do not use the cache when building the image
    #[arg(long)]
    no_cache: bool,
    /// Secret to expose to the build (`id=ID,src=FILE` or `id=ID,env=VAR`)
    #[arg(long = "secret", value_name = "SPEC")]
    secrets: Vec<String>,
    /// SSH agent socket to expose to the build (`default`,
    /// `default=SOCKET`, `ID=SOCKET`)
    #[arg(long = "ssh", value_name = "SPEC")]
    ssh: Vec<String>,
    /// Export the build cache: `type=local,dest=DIR` or `type=registry,ref=REF`,
    /// with `[,mode=min|max][,mounts=true][,compression=gzip|zstd][,ignore-error=true]`
    #[arg(long = "cache-to", value_name = "SPEC")]
    cache_to: Vec<String>,
    /// Import a build cache: `type=local,src=DIR`, `type=registry,ref=REF` or `REF`
    #[arg(long = "cache-from", value_name = "SPEC")]
    cache_from: Vec<String>,
    /// Do not cache the specified stages
    #[arg(long = "no-cache-filter", value_name = "STAGE", value_delimiter = ',')]
    no_cache_filter: Vec<String>,
    /// Predict which steps the cache has and why the others would run,
    /// without running anything or writing an image
    #[arg(long)]
    dry_run: bool,
    /// Say why each step that runs was not taken from the cache, also when
    /// it never ran before
    #[arg(long)]
    explain: bool,
    /// Write the image ID to the file
    #[arg(long, value_name = "FILE")]
    iidfile: Option<PathBuf>,
    /// Suppress the build output and print the image ID on success
    #[arg(short, long)]
    quiet: bool,
    /// Set the type of progress output
    #[arg(long, value_enum, default_value = "auto")]
    progress: progress::Mode,
    /// Output destination: `type=docker|oci,dest=FILE.tar`,
    /// `type=local,dest=DIR` or `type=tar,dest=FILE`
    #[arg(short = 'o', long = "output", value_name = "SPEC")]
    outputs: Vec<String>,
    /// Layer compression of `--output type=oci`: gzip[:LEVEL], zstd[:LEVEL]
    /// or uncompressed (the store keeps layers uncompressed)
    #[arg(long, default_value = "gzip")]
    compression: String,
    /// Always attempt to pull a newer version of the base images (a
    /// manifest HEAD; the image is pulled only when its digest changed)
    #[arg(long)]
    pull: bool,
    /// Shorthand for `--output=type=registry`: push the tagged image
    #[arg(long)]
    push: bool,
    /// Security options for RUN: seccomp=unconfined, seccomp=PROFILE.json,
    /// no-new-privileges[=false], systempaths=unconfined
    #[arg(long = "security-opt", value_name = "OPT")]
    security_opts: Vec<String>,
    /// How many independent stages to build at the same time (hoist's own
    /// flag; the image is the same for any value) [default: the number
    /// of CPUs]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    jobs: Option<u16>,
    /// Extra privileged entitlement: security.insecure (for
    /// `RUN --security=insecure`)
    #[arg(long = "allow", value_name = "ENTITLEMENT")]
    allow: Vec<String>,
    #[command(flatten)]
    resources: Box<crate::security::ResourceArgs>,
}

pub fn run(args: Args, globals: &Globals) -> anyhow::Result<ExitCode> {
    let store = globals.open_store()?;
    empty_old_trash(&store);
    let outputs = args
        .outputs
        .iter()
        .map(|spec| crate::output::Output::parse(spec))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let compression = Compression::parse(&args.compression)?;
    // `--push` and `type=registry` push to the `-t` tags, or to `name=`.
    let mut push_targets: Vec<String> = Vec::new();
    let registry_outputs = outputs
        .iter()
        .filter(|o| o.kind == crate::output::Kind::Registry);
    for output in registry_outputs.clone() {
        push_targets.extend(output.names.iter().cloned());
    }
    let wants_tags = args.push || registry_outputs.clone().any(|o| o.names.is_empty());
    if wants_tags {
        if args.tags.is_empty() {
            bail!("tag is needed when pushing to registry");
        }
        push_targets.extend(args.tags.iter().cloned());
    }
    push_targets.dedup();
    let platform = match &args.platform {
        None => Platform::host(),
        Some(spec) => Platform::parse(spec)
            .with_context(|| format!("invalid platform {spec:?}: expected os/arch[/variant]"))?,
    };
    for label in &args.labels {
        if !label.contains('=') {
            bail!("invalid label {label:?}: expected KEY=VALUE");
        }
    }
    for tag in &args.tags {
        hoist_store::Reference::parse(tag).with_context(|| format!("invalid tag {tag:?}"))?;
    }
    let build_args = parse_build_args(args.build_args.iter().map(String::as_str), |key| {
        std::env::var(key).ok()
    });
    let source_date_epoch =
        crate::epoch::source_date_epoch(build_args.get("SOURCE_DATE_EPOCH").map(String::as_str))?;

    let context = BuildInputs::prepare(&store, &args.context, args.file.as_deref())?;
    let dockerfile = render::read_dockerfile(&context.dockerfile)?;
    {
        // The builder parses again and reports errors; this parse is for
        // the warnings, which docker build shows whether or not it fails.
        let (warnings, error_on_warning) = hoist_parser::parse(&dockerfile.text)
            .map(|df| {
                let mut all = hoist_builder::args::platform_args(&platform, &Platform::host());
                all.extend(build_args.clone());
                let mut warnings = df.warnings.clone();
                warnings.extend(hoist_parser::check_from(&df, &all));
                // COPY and ADD sources .dockerignore excludes, in the
                // stages this build runs.
                let ignore = hoist_builder::dockerignore::load_for_build(
                    &context.dir,
                    context.dockerfile_on_disk().as_deref(),
                );
                if let (Ok(Some(ignore)), Ok(graph)) =
                    (ignore, hoist_parser::Graph::build(&df, &all))
                    && let Ok(stages) = graph.stages_for_target(args.target.as_deref())
                {
                    warnings.extend(hoist_builder::checks::copy_ignored_files(
                        &df, &graph, &stages, &ignore,
                    ));
                }
                warnings.sort_by_key(|w| w.span.line);
                (warnings, hoist_parser::check_is_error(&df))
            })
            .unwrap_or_default();
        if !args.quiet {
            dockerfile.print_warnings(&warnings);
        }
        // `# check=error=true`: the checks' warnings fail the build before
        // it starts, at the first one's line, as BuildKit fails the
        // Dockerfile's conversion.
        // hoist's own findings (no rule) are not BuildKit checks.
        let mut violations = warnings.iter().filter(|w| !w.rule.is_empty()).peekable();
        if error_on_warning && let Some(first) = violations.peek() {
            bail!(
                "{}:{}:1: {}",
                dockerfile.name,
                first.span.line,
                hoist_parser::lint_violation_message(violations.map(|w| w.rule))
            );
        }
    }
    let labels: BTreeMap<String, String> = args
        .labels
        .iter()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let request = BuildRequest {
        dockerfile: dockerfile.text.clone(),
        dockerfile_name: dockerfile.name.clone(),
        context: context.dir.clone(),
        dockerfile_path: context.dockerfile_on_disk(),
        target: args.target.clone(),
        build_args,
        labels,
        platform,
        network: if args.network == "none" {
            Network::None
        } else {
            Network::Host
        },
        no_cache: args.no_cache,
        explain: args.explain,
        no_cache_filter: args.no_cache_filter.clone(),
        secrets: build_secrets(&args.secrets, &args.ssh)?,
        // Layers stay uncompressed on this machine; they are compressed
        // (once) when an image leaves it.
        compression: Compression::Uncompressed,
        source_date_epoch,
        sandbox: SandboxOptions {
            security: crate::security::parse_security_opts(&args.security_opts)?,
            allow_insecure: crate::security::parse_allow(&args.allow)?,
            resources: args.resources.resources()?,
            add_hosts: args.resources.add_hosts()?,
        },
    };

    let mode = if args.quiet {
        progress::Mode::Quiet
    } else {
        args.progress
    };
    let drawer = progress::drawer(mode);
    let sandbox = NamespaceSandbox::new(store.tmp_dir().join("sandbox"))?;
    hoist_sandbox::cancel_on_interrupt(sandbox.cancel_handle());
    let client = std::sync::Arc::new(globals.registry_client()?);
    let cache_to = args
        .cache_to
        .iter()
        .map(|spec| parse_cache_to(spec))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let cache_from = args
        .cache_from
        .iter()
        .map(|spec| parse_cache_from(spec))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for source in &cache_from {
        // As BuildKit: a cache that cannot be imported is a warning, and
        // the build goes on without it.
        let (what, imported) = match source {
            CacheSource::Local(dir) => (
                dir.display().to_string(),
                hoist_builder::cache_export::import_local(&store, dir),
            ),
            CacheSource::Registry(reference) => (
                reference.familiar_string(),
                hoist_builder::cache_export::import_registry(&store, client.clone(), reference),
            ),
        };
        let line = match imported {
            Ok(records) => format!("{records} cache records"),
            Err(err) => format!("WARNING: failed to import cache from {what}: {err}"),
        };
        drawer.note(&format!("importing cache manifest from {what}"), &[line]);
    }
    let mut builder = Builder::new(&store, &sandbox, drawer.as_ref())
        .with_registry(&client, args.pull)
        .with_cancel(sandbox.cancel_handle());
    if let Some(jobs) = args.jobs {
        builder = builder.with_jobs(usize::from(jobs));
    }
    if args.dry_run {
        let predicted = builder
            .dry_run(&request)
            .map_err(|err| failed(drawer.as_ref(), &dockerfile, &err))?;
        drawer.note(
            "dry run",
            &[format!(
                "{} of {} steps cached, {} would run",
                predicted.cached,
                predicted.steps,
                predicted.steps - predicted.cached
            )],
        );
        drawer.finish();
        return Ok(ExitCode::SUCCESS);
    }
    let built = builder
        .build(&request)
        .map_err(|err| failed(drawer.as_ref(), &dockerfile, &err))?;

    let image = &built.image;
    // Imported steps the build used become local once their layers are.
    store.persist_imported_cache()?;
    let layers: Vec<_> = image
        .layers()
        .iter()
        .map(|l| l.descriptor.digest().clone())
        .collect();
    for to in &cache_to {
        use hoist_builder::cache_export::{export_local, export_registry};
        let keys = builder.used_cache_keys();
        let (what, exported) = match &to.target {
            CacheTarget::Local(dir) => (
                dir.display().to_string(),
                export_local(&store, &keys, &layers, to.mode, to.mounts, dir),
            ),
            CacheTarget::Registry(reference) => (
                reference.familiar_string(),
                export_registry(
                    &store,
                    &client,
                    reference,
                    &keys,
                    &layers,
                    to.mode,
                    to.mounts,
                    to.compression,
                ),
            ),
        };
        let line = match exported {
            Ok(records) => format!("{records} cache records"),
            Err(err) if to.ignore_error => {
                format!("WARNING: failed to export cache to {what}: {err}")
            }
            Err(err) => {
                return Err(err).with_context(|| format!("exporting the build cache to {what}"));
            }
        };
        drawer.note(&format!("exporting cache to {what}"), &[line]);
    }
    let id = image.id().to_string();
    let mut lines = vec![format!("writing image {id} done")];
    for tag in &args.tags {
        let reference = store.tag(tag, image)?;
        lines.push(format!("naming to {reference} done"));
    }
    if args.tags.is_empty() {
        store.add_untagged(image)?;
    }
    drawer.note("exporting to image", &lines);
    for output in &outputs {
        output.write(&store, image, &args.tags, compression)?;
        if output.kind != crate::output::Kind::Registry {
            drawer.note(&format!("exporting to {output}"), &[]);
        }
    }
    for target in &push_targets {
        let reference = hoist_store::Reference::parse_tagged(target)?;
        let lines = std::sync::Mutex::new(Vec::new());
        let recorder = PushLines(&lines);
        let mut options = hoist_store::registry::PushOptions::new(&recorder);
        options.compression = Some(compression);
        let pushed = client
            .push(&store, image, &reference, &options)
            .with_context(|| format!("pushing {}", reference.familiar_string()));
        let mut lines = lines.into_inner().unwrap_or_else(|p| p.into_inner());
        match pushed {
            Ok(pushed) => {
                lines.push(format!(
                    "pushing manifest for {reference}@{} done",
                    pushed.digest
                ));
                drawer.note(&format!("pushing {reference}"), &lines);
            }
            Err(err) => {
                drawer.finish();
                return Err(err);
            }
        }
    }
    drawer.finish();
    if let Some(path) = &args.iidfile {
        fs_err::write(crate::globals::absolute(path)?, &id)?;
    }
    if args.quiet {
        println!("{id}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The build context directory and the Dockerfile's location.
struct BuildInputs {
    dir: PathBuf,
    dockerfile: PathBuf,
    /// A context read from stdin, extracted into the store's temp space
    /// (moved to the trash when dropped).
    extracted: Option<hoist_builder::context::BuildContext>,
    trash: PathBuf,
}

impl Drop for BuildInputs {
    /// A context from stdin goes to the store's trash with one rename
    /// rather than be deleted as the build ends (its temp directory's own
    /// delete then finds nothing).
    fn drop(&mut self) {
        if self.extracted.is_some() {
            let _ = hoist_store::trash::move_in(&self.trash, &self.dir, "stdin-context");
        }
    }
}

impl BuildInputs {
    fn prepare(store: &Store, context: &Path, file: Option<&Path>) -> anyhow::Result<Self> {
        let stdin_context = context == Path::new("-");
        if stdin_context && file == Some(Path::new("-")) {
            bail!("the context and the Dockerfile cannot both be read from stdin");
        }
        let (dir, extracted) = if stdin_context {
            let context = hoist_builder::context::BuildContext::from_tar(
                std::io::stdin().lock(),
                store.tmp_dir(),
                None,
            )
            .context("reading the build context from stdin")?;
            (context.dir().to_owned(), Some(context))
        } else {
            let meta = fs_err::metadata(context).with_context(|| {
                format!("unable to prepare context: path {:?} not found", context)
            })?;
            if !meta.is_dir() {
                bail!(
                    "unable to prepare context: path {:?} is not a directory",
                    context
                );
            }
            (crate::globals::absolute(context)?, None)
        };
        let dockerfile = match file {
            Some(file) => crate::globals::absolute(file)?,
            None => dir.join("Dockerfile"),
        };
        Ok(Self {
            dir,
            dockerfile,
            extracted,
            trash: store.trash_dir(),
        })
    }

    fn dockerfile_on_disk(&self) -> Option<PathBuf> {
        (self.dockerfile != Path::new("-")).then(|| self.dockerfile.clone())
    }
}

/// Deletes what earlier builds threw away (see [`hoist_store::trash`]):
/// trees a few minutes old, on an idle-priority thread while this build
/// works (whatever is left when it ends waits for the next build); or, when
/// the disk is nearly full, all of it before this build needs the space.
fn empty_old_trash(store: &Store) {
    use hoist_store::trash::{BUILD_MIN_AGE, empty_trash, nearly_full};
    let trash = store.trash_dir();
    if nearly_full(store.root()) {
        empty_trash(&trash, std::time::Duration::ZERO);
        return;
    }
    // Without a thread, the trash waits for the next build or GC.
    let _ = hoist_sandbox::spawn_idle("hoist-trash", move || empty_trash(&trash, BUILD_MIN_AGE));
}

/// A failed build or dry run as the user sees it, with the progress
/// display closed first.
fn failed(
    drawer: &dyn progress::Drawer,
    dockerfile: &render::Source,
    err: &BuildError,
) -> anyhow::Error {
    drawer.finish();
    match err {
        BuildError::Parse { error, .. } => render::parse_error(dockerfile, error),
        err => render::build_error(dockerfile, err),
    }
}

/// `--secret` and `--ssh`, as `docker buildx build` reads them. A secret's
/// content never shows in a message.
fn build_secrets(
    secrets: &[String],
    ssh: &[String],
) -> anyhow::Result<hoist_builder::secrets::BuildSecrets> {
    use hoist_builder::secrets::{BuildSecrets, SecretValue};
    let mut out = BuildSecrets::default();
    for spec in secrets {
        let (mut id, mut src, mut env, mut kind) = (None, None, None, None);
        for field in spec.split(',') {
            let (key, value) = field.split_once('=').unwrap_or((field, ""));
            match key.to_ascii_lowercase().as_str() {
                "id" => id = Some(value.to_owned()),
                "src" | "source" => src = Some(value.to_owned()),
                "env" => env = Some(value.to_owned()),
                "type" if value == "file" || value == "env" => kind = Some(value.to_owned()),
                _ => bail!(
                    "invalid --secret {spec:?}: unexpected {key:?} (expected id=ID,src=FILE or id=ID,env=VAR)"
                ),
            }
        }
        let Some(id) = id.filter(|id| !id.is_empty()) else {
            bail!("invalid --secret {spec:?}: an id is required");
        };
        // `type=env,src=VAR` names a variable too; an id alone is a
        // variable of that name when one is set, else a file.
        if kind.as_deref() == Some("env") && env.is_none() {
            env = src.take().or_else(|| Some(id.clone()));
        }
        if src.is_none() && env.is_none() {
            if std::env::var_os(&id).is_some() && kind.as_deref() != Some("file") {
                env = Some(id.clone());
            } else {
                src = Some(id.clone());
            }
        }
        let bytes = match (&src, &env) {
            (Some(path), _) => {
                fs_err::read(path).with_context(|| format!("reading secret {id} from {path}"))?
            }
            (None, Some(var)) => std::env::var_os(var)
                .with_context(|| format!("secret {id}: environment variable {var} is not set"))?
                .into_encoded_bytes(),
            (None, None) => unreachable!("a source was chosen above"),
        };
        let value = SecretValue::new(bytes).map_err(|e| anyhow::anyhow!("secret {id}: {e}"))?;
        out.secrets.insert(id, value);
    }
    for spec in ssh {
        let (id, paths) = spec.split_once('=').unwrap_or((spec.as_str(), ""));
        if id.is_empty() {
            bail!("invalid --ssh {spec:?}: expected ID[=SOCKET]");
        }
        let socket = match paths.split(',').find(|p| !p.is_empty()) {
            Some(path) => PathBuf::from(path),
            None => std::env::var_os("SSH_AUTH_SOCK")
                .map(PathBuf::from)
                .with_context(|| format!("--ssh {id}: SSH_AUTH_SOCK is not set"))?,
        };
        use std::os::unix::fs::FileTypeExt;
        let meta = fs_err::metadata(&socket).with_context(|| format!("--ssh {id}"))?;
        if !meta.file_type().is_socket() {
            bail!(
                "--ssh {id}: {} is not an agent socket (key files are not supported: load them into ssh-agent)",
                socket.display()
            );
        }
        out.ssh.insert(id.to_owned(), socket);
    }
    Ok(out)
}

/// Collects a push's layer lines for the build's progress display.
struct PushLines<'a>(&'a std::sync::Mutex<Vec<String>>);

impl PushLines<'_> {
    fn push(&self, line: String) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(line);
    }
}

impl hoist_store::registry::TransferProgress for PushLines<'_> {
    fn exists(&self, layer: &oci_spec::image::Descriptor) {
        self.push(format!("{}: layer already exists", layer.digest()));
    }
    fn finished(&self, layer: &oci_spec::image::Descriptor) {
        self.push(format!("{} {} done", layer.digest(), layer.size()));
    }
    fn mounted(&self, layer: &oci_spec::image::Descriptor, from: &str) {
        self.push(format!("{}: mounted from {from}", layer.digest()));
    }
}

/// Where `--cache-to` sends the cache.
#[derive(Debug, PartialEq)]
enum CacheTarget {
    Local(PathBuf),
    Registry(hoist_store::Reference),
}

/// One `--cache-to`.
#[derive(Debug, PartialEq)]
struct CacheTo {
    target: CacheTarget,
    mode: hoist_builder::cache_export::ExportMode,
    mounts: bool,
    compression: Compression,
    /// `ignore-error=true`: a failed export is a warning.
    ignore_error: bool,
}

/// `--cache-to type=local,dest=DIR|type=registry,ref=REF` with
/// `[,mode=min|max][,mounts=true][,compression=..][,compression-level=N]
/// [,ignore-error=true]`, BuildKit's attributes (`image-manifest` and
/// `oci-mediatypes` are accepted when true: that is what hoist writes).
fn parse_cache_to(spec: &str) -> anyhow::Result<CacheTo> {
    use hoist_builder::cache_export::ExportMode;
    let (mut kind, mut dest, mut reference) = (None, None, None);
    let (mut mode, mut mounts, mut ignore_error) = (ExportMode::Min, false, false);
    let (mut algorithm, mut level) = ("gzip".to_owned(), None);
    let bool_value = |field: &str, value: &str| match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => bail!("invalid --cache-to {spec:?}: {field} must be true or false"),
    };
    for field in spec.split(',') {
        match field.split_once('=') {
            Some(("type", value)) => kind = Some(value),
            Some(("dest", value)) => dest = Some(PathBuf::from(value)),
            Some(("ref", value)) => reference = Some(value),
            Some(("mode", "min")) => mode = ExportMode::Min,
            Some(("mode", "max")) => mode = ExportMode::Max,
            Some(("mounts", value)) => mounts = bool_value("mounts", value)?,
            Some(("ignore-error", value)) => ignore_error = bool_value("ignore-error", value)?,
            Some(("compression", value)) => algorithm = value.to_owned(),
            Some(("compression-level", value)) => level = Some(value.to_owned()),
            Some((name @ ("image-manifest" | "oci-mediatypes"), value)) => {
                if !bool_value(name, value)? {
                    bail!(
                        "invalid --cache-to {spec:?}: hoist writes OCI image manifests only ({name}=false is not supported)"
                    );
                }
            }
            _ => bail!("invalid --cache-to {spec:?}: unexpected {field:?}"),
        }
    }
    let compression = match level {
        Some(level) => Compression::parse(&format!("{algorithm}:{level}")),
        None => Compression::parse(&algorithm),
    }
    .with_context(|| format!("invalid --cache-to {spec:?}"))?;
    let target = match (kind, dest, reference) {
        (Some("local"), Some(dest), None) => CacheTarget::Local(dest),
        (Some("local"), None, _) => bail!("invalid --cache-to {spec:?}: dest=DIR is required"),
        (Some("registry"), None, Some(reference)) => CacheTarget::Registry(
            hoist_store::Reference::parse_tagged(reference)
                .with_context(|| format!("invalid --cache-to {spec:?}"))?,
        ),
        (Some("registry"), _, None) => {
            bail!("invalid --cache-to {spec:?}: ref=REF is required")
        }
        (Some("local" | "registry"), _, _) => {
            bail!("invalid --cache-to {spec:?}: dest= is for type=local, ref= for type=registry")
        }
        _ => bail!("invalid --cache-to {spec:?}: only type=local and type=registry are supported"),
    };
    Ok(CacheTo {
        target,
        mode,
        mounts,
        compression,
        ignore_error,
    })
}

/// Where `--cache-from` reads a cache.
#[derive(Debug, PartialEq)]
enum CacheSource {
    Local(PathBuf),
    Registry(hoist_store::Reference),
}

/// `--cache-from type=local,src=DIR`, `type=registry,ref=REF`, or a bare
/// `REF` (BuildKit's shorthand for the registry).
fn parse_cache_from(spec: &str) -> anyhow::Result<CacheSource> {
    if !spec.contains('=') {
        return Ok(CacheSource::Registry(
            hoist_store::Reference::parse_tagged(spec)
                .with_context(|| format!("invalid --cache-from {spec:?}"))?,
        ));
    }
    let (mut kind, mut src, mut reference) = (None, None, None);
    for field in spec.split(',') {
        match field.split_once('=') {
            Some(("type", value)) => kind = Some(value),
            Some(("src", value)) => src = Some(PathBuf::from(value)),
            Some(("ref", value)) => reference = Some(value),
            _ => bail!("invalid --cache-from {spec:?}: unexpected {field:?}"),
        }
    }
    match (kind, src, reference) {
        (Some("local"), Some(src), None) => Ok(CacheSource::Local(src)),
        (Some("local"), None, _) => bail!("invalid --cache-from {spec:?}: src=DIR is required"),
        (Some("registry"), None, Some(reference)) => Ok(CacheSource::Registry(
            hoist_store::Reference::parse(reference)
                .with_context(|| format!("invalid --cache-from {spec:?}"))?,
        )),
        (Some("registry"), _, None) => {
            bail!("invalid --cache-from {spec:?}: ref=REF is required")
        }
        (Some("local" | "registry"), _, _) => {
            bail!("invalid --cache-from {spec:?}: src= is for type=local, ref= for type=registry")
        }
        _ => {
            bail!("invalid --cache-from {spec:?}: only type=local and type=registry are supported")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hoist_builder::cache_export::ExportMode;

    #[test]
    fn cache_specs_parse_like_buildkit_attributes() {
        let registry = |r: &str| hoist_store::Reference::parse_tagged(r).unwrap();
        // (spec, Some((target, mode, mounts, ignore-error)) or None for an error)
        type Parsed = (CacheTarget, ExportMode, bool, bool);
        let to_cases: &[(&str, Option<Parsed>)] = &[
            (
                "type=local,dest=/c",
                Some((
                    CacheTarget::Local("/c".into()),
                    ExportMode::Min,
                    false,
                    false,
                )),
            ),
            (
                "type=registry,ref=reg:5000/a/b:cache,mode=max,ignore-error=true",
                Some((
                    CacheTarget::Registry(registry("reg:5000/a/b:cache")),
                    ExportMode::Max,
                    false,
                    true,
                )),
            ),
            (
                "type=registry,ref=r/x,image-manifest=true,oci-mediatypes=true,mounts=true",
                Some((
                    CacheTarget::Registry(registry("r/x")),
                    ExportMode::Min,
                    true,
                    false,
                )),
            ),
            ("type=registry,ref=r/x,image-manifest=false", None),
            ("type=registry,dest=/c", None),
            ("type=local,ref=r/x", None),
            ("type=gha", None),
            ("type=registry,ref=r/x,compression=brotli", None),
            ("type=registry,ref=r/x,mode=all", None),
        ];
        for (spec, want) in to_cases {
            let got = parse_cache_to(spec)
                .ok()
                .map(|c| (c.target, c.mode, c.mounts, c.ignore_error));
            assert_eq!(&got, want, "{spec}");
        }
        let zstd = parse_cache_to("type=registry,ref=r/x,compression=zstd,compression-level=9");
        assert_eq!(zstd.unwrap().compression, Compression::Zstd { level: 9 });

        let from_cases: &[(&str, Option<CacheSource>)] = &[
            ("type=local,src=/c", Some(CacheSource::Local("/c".into()))),
            (
                "type=registry,ref=reg:5000/a/b:cache",
                Some(CacheSource::Registry(registry("reg:5000/a/b:cache"))),
            ),
            (
                "reg:5000/a/b:cache",
                Some(CacheSource::Registry(registry("reg:5000/a/b:cache"))),
            ),
            ("type=registry", None),
            ("type=local,src=/c,ref=r/x", None),
            ("type=s3,bucket=b", None),
        ];
        for (spec, want) in from_cases {
            assert_eq!(&parse_cache_from(spec).ok(), want, "{spec}");
        }
    }
}
