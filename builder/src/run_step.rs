//! RUN: the command in a fresh sandbox over the stage's layers; the
//! upperdir becomes the step's layer.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use hoist_parser::instruction::{Network as RunNetwork, Run, Security, ShellOrExec};
use hoist_parser::{MountType, RunMount};

use crate::args::PROXY_ARGS;
use crate::args::Platform;
use crate::cache::RunDefinition;
use crate::config::{get_env, set_env, with_shell};
use crate::error::StepError;
use crate::native::Snapshotter;
use crate::progress::{Event, Progress, StepId, Stream};
use crate::rootfs::Scratch;
use crate::stage::{StageBuilder, StepContext};
use hoist_sandbox::{
    DEFAULT_PATH, EtcFiles, Mount, MountGuard, MountKind, Network, Rootfs, RunIo, RunSpec, Stdin,
    User, mount_overlay_read_only,
};

/// How many trailing lines of output a failed RUN shows.
const TAIL_LINES: usize = 10;

impl StageBuilder<'_> {
    pub(crate) fn run_step(&mut self, step: &StepContext, run: &Run) -> Result<(), StepError> {
        let host = Platform::host();
        if self.platform.os != host.os || self.platform.architecture != host.architecture {
            return Err(StepError::ForeignPlatform {
                platform: Box::new(self.platform.clone()),
                host: Box::new(host),
            });
        }
        let insecure = run.security == Some(Security::Insecure);
        if insecure && !self.scope.request.sandbox.allow_insecure {
            return Err(StepError::NotAllowed("security.insecure"));
        }
        if !run.devices.is_empty() {
            return Err(StepError::Devices(run.devices.clone()));
        }
        let (argv, script) = self.run_argv(run)?;
        let env = self.run_env();
        let cwd = self.workdir_path();
        let user = self.config.config.user.clone().unwrap_or_default();
        let network = match run.network {
            Some(RunNetwork::None) => Network::None,
            Some(RunNetwork::Host) => Network::Host,
            Some(RunNetwork::Default) | None => self.scope.request.network,
        };
        let created_by = format!(
            "RUN {}{} # buildkit",
            self.run_args_prefix(),
            argv.join(" ")
        );

        let inputs = self.run_inputs(&RunDefinition {
            run,
            argv: &argv,
            env: &env,
            cwd: &cwd,
            user: &user,
            network,
        })?;
        if self.try_cache(step, &inputs, &created_by)? {
            return Ok(());
        }

        let (scratch, lowerdirs) = self.prepare_step()?;
        let native = match scratch.snapshotter {
            Snapshotter::Overlayfs => None,
            Snapshotter::Native => Some(scratch.native_root(&lowerdirs)?),
        };
        let root_dirs = match &native {
            Some(root) => vec![root.path().to_owned()],
            None => lowerdirs.clone(),
        };
        let mut env = env;
        let resolved_user = resolve_user(&root_dirs, &user, &scratch.mountpoint, Some(&mut env))?;
        let mut guards = Vec::new();
        let mut views = Vec::new();
        let leases = crate::cache_mount::Leases::default();
        let mut mounts = self.run_mounts(run, &scratch, &mut guards, &mut views, &leases)?;
        let secrets = crate::secrets::RunSecrets::prepare(
            &run.mounts,
            &self.workdir_path(),
            &self.scope.request.secrets,
        )?;
        mounts.extend(secrets.mounts.iter().cloned());
        for (name, value) in &secrets.env {
            set_env(&mut env, name, value);
        }
        if let Some((name, body)) = script {
            mounts.push(script_mount(&scratch, &name, &body)?);
        }

        let rootfs = match &native {
            Some(root) => Rootfs::Directory {
                path: root.path().to_owned(),
            },
            None => Rootfs::Overlay {
                lowerdirs,
                upperdir: scratch.upper.clone(),
                workdir: scratch.work.clone(),
            },
        };
        let mut spec = RunSpec::new(rootfs, Vec::new());
        // The bytes the Dockerfile holds, also where they are not UTF-8.
        let bytes = |text: &String| {
            use std::os::unix::ffi::OsStringExt;
            std::ffi::OsString::from_vec(hoist_parser::bytes::encode(text).into_owned())
        };
        spec.args = argv.iter().map(bytes).collect();
        spec.env = env.iter().map(bytes).collect();
        spec.cwd = cwd;
        spec.user = resolved_user;
        spec.network = network;
        spec.etc = EtcFiles::generated(&spec.hostname, network);
        // BuildKit binds /etc/hosts and /etc/resolv.conf for RUN, but
        // leaves the image's /etc/hostname (or its absence) alone.
        spec.etc.hostname = None;
        spec.mounts = mounts;
        spec.security = self.scope.request.sandbox.security.clone();
        spec.security.insecure = insecure;
        spec.resources = self.scope.request.sandbox.resources.clone();
        if let Some(hosts) = &mut spec.etc.hosts {
            for (host, ip) in &self.scope.request.sandbox.add_hosts {
                hosts.push_str(&format!("{ip}\t{host}\n"));
            }
        }

        let mut io = StepIo::new(self.scope.builder.progress, step.id);
        let status = self.scope.builder.sandbox.run(&spec, &mut io)?;
        drop(views);
        drop(guards);
        drop(secrets);
        drop(leases);
        if !status.success() {
            let code = status
                .code()
                .or_else(|| {
                    use std::os::unix::process::ExitStatusExt;
                    status.signal().map(|s| 128 + s)
                })
                .unwrap_or(-1);
            return Err(StepError::RunFailed {
                command: hoist_parser::bytes::lossy(&argv.join(" ")).into_owned(),
                code,
                output_tail: io.tail(),
            });
        }
        if let Some(root) = native {
            root.diff_into(&scratch.upper)?;
        }
        self.commit_step(step, inputs, &scratch.upper, created_by)
    }

    /// The argv of a RUN, heredocs included, as BuildKit's `dispatchRun`
    /// builds it, plus the script to mount at `/dev/pipes/<name>` when the
    /// command is a single heredoc with a shebang.
    #[allow(clippy::type_complexity)]
    fn run_argv(&self, run: &Run) -> Result<(Vec<String>, Option<(String, String)>), StepError> {
        let line = match &run.command {
            ShellOrExec::Exec(args) => return Ok((args.clone(), None)),
            ShellOrExec::Shell(line) => line,
        };
        let Some(first) = run.heredocs.first() else {
            return Ok((with_shell(&self.config, line), None));
        };
        let is_bare_heredoc = run.heredocs.len() == 1
            && line.trim().starts_with("<<")
            && !line.trim().contains(char::is_whitespace);
        if is_bare_heredoc {
            let body = first.body().into_owned();
            if body.starts_with("#!") {
                let path = format!("{PIPES_DIR}/{}", first.name);
                let argv = with_shell(&self.config, &path);
                return Ok((argv, Some((first.name.clone(), body))));
            }
            return Ok((with_shell(&self.config, &body), None));
        }
        let mut script = line.clone();
        for heredoc in &run.heredocs {
            script.push('\n');
            script.push_str(&heredoc.content);
            script.push_str(&heredoc.name);
        }
        Ok((with_shell(&self.config, &script), None))
    }

    /// The environment of a RUN: the image's ENV (with Docker's default
    /// PATH), then the stage's ARGs that ENV does not shadow, then the
    /// proxy build args.
    fn run_env(&self) -> Vec<String> {
        let mut env = self.config.config.env.clone().unwrap_or_default();
        if get_env(&env, "PATH").is_none() {
            env.insert(0, format!("PATH={DEFAULT_PATH}"));
        }
        let image_env = env.clone();
        for (key, value) in &self.args {
            if let Some(value) = value
                && get_env(&image_env, key).is_none()
            {
                set_env(&mut env, key, value);
            }
        }
        for key in PROXY_ARGS {
            if let Some(value) = self.scope.request.build_args.get(*key)
                && get_env(&env, key).is_none()
            {
                set_env(&mut env, key, value);
            }
        }
        env
    }

    /// `RUN --mount`: tmpfs, cache (a directory in the store kept across
    /// builds) and read-only binds from the context or a stage.
    fn run_mounts(
        &self,
        run: &Run,
        scratch: &Scratch,
        guards: &mut Vec<MountGuard>,
        views: &mut Vec<View>,
        leases: &crate::cache_mount::Leases,
    ) -> Result<Vec<Mount>, StepError> {
        let mut mounts = Vec::new();
        for (index, mount) in run.mounts.iter().enumerate() {
            if matches!(mount.kind, MountType::Secret | MountType::Ssh) {
                // Staged by `RunSecrets`.
                continue;
            }
            let target = mount_target(mount, &self.workdir_path())?;
            let kind = match mount.kind {
                MountType::Tmpfs => MountKind::Tmpfs {
                    size_bytes: mount.size,
                    mode: 0o1777,
                },
                MountType::Cache => {
                    let dir = self.cache_mount_dir(mount, &target, leases)?;
                    MountKind::Bind {
                        source: dir,
                        read_only: mount.readonly,
                    }
                }
                MountType::Bind => {
                    let root = match &mount.from {
                        None => self.scope.request.context.clone(),
                        Some(from) => {
                            let stack = self.source_stack(from)?;
                            let lowerdirs = stack.lowerdirs(self.scope.builder.store)?;
                            let at = scratch.mountpoint.with_file_name(format!("from{index}"));
                            fs_err::create_dir_all(&at)
                                .map_err(StepError::io("creating a mount point"))?;
                            let view = mount_view(&lowerdirs, &at, scratch.snapshotter)?;
                            let root = view.root().to_owned();
                            views.push(view);
                            root
                        }
                    };
                    let source = mount.source.as_deref().unwrap_or("/");
                    let mut path =
                        crate::copy::resolve_in_root(&root, source).map_err(StepError::Copy)?;
                    if mount.from.is_none() {
                        path = self.filtered_context(&root, &path, scratch, guards)?;
                    }
                    if mount.readonly {
                        MountKind::Bind {
                            source: path,
                            read_only: true,
                        }
                    } else {
                        MountKind::Bind {
                            source: writable_copy(&path, scratch, guards)?,
                            read_only: false,
                        }
                    }
                }
                MountType::Secret | MountType::Ssh => continue,
            };
            mounts.push(Mount { target, kind });
        }
        Ok(mounts)
    }

    /// A bind mount of the context shows it as BuildKit sends it: without
    /// what `.dockerignore` excludes. A directory is mounted through an
    /// overlay whose top layer whites the excluded entries out.
    fn filtered_context(
        &self,
        root: &Path,
        path: &Path,
        scratch: &Scratch,
        guards: &mut Vec<MountGuard>,
    ) -> Result<PathBuf, StepError> {
        let context = &self.scope.context;
        // An excluded source never gets here: its checksum (the step's
        // key) already found it missing.
        let rel = path.strip_prefix(root).unwrap_or(Path::new(""));
        if !path.is_dir() {
            return Ok(path.to_owned());
        }
        let n = guards.len();
        let whiteouts = scratch.side_dir(&format!("ignored{n}"))?;
        let hidden = context
            .write_ignore_whiteouts(rel, &whiteouts)
            .map_err(StepError::Context)?;
        if hidden == 0 {
            return Ok(path.to_owned());
        }
        let at = scratch.side_dir(&format!("context{n}"))?;
        let guard = mount_overlay_read_only(&[whiteouts, path.to_owned()], &at)?;
        guards.push(guard);
        Ok(at)
    }

    /// A cache mount's directory: `hoist/mounts/<sha256(id)>` in the store,
    /// where `id` defaults to the target path, as in BuildKit; held for
    /// the RUN as its `sharing` says.
    fn cache_mount_dir(
        &self,
        mount: &RunMount,
        target: &str,
        leases: &crate::cache_mount::Leases,
    ) -> Result<PathBuf, StepError> {
        let id = mount.id.clone().unwrap_or_else(|| target.to_owned());
        let store = self.scope.builder.store;
        leases.acquire(
            &store.root().join("hoist/mounts"),
            store.tmp_dir(),
            &id,
            mount.sharing.unwrap_or(hoist_parser::Sharing::Shared),
            crate::cache_mount::Owner {
                uid: mount.uid.unwrap_or(0),
                gid: mount.gid.unwrap_or(0),
                mode: mount.mode.unwrap_or(0o755),
            },
        )
    }
}

/// `bind,rw`: a view of `path` the RUN may write to, whose writes are
/// discarded with the step's scratch space (BuildKit's rule): an overlay
/// with a throwaway upperdir for a directory, a copy for a file.
fn writable_copy(
    path: &Path,
    scratch: &Scratch,
    guards: &mut Vec<MountGuard>,
) -> Result<PathBuf, StepError> {
    let n = guards.len();
    let meta = fs_err::metadata(path).map_err(StepError::io("reading a bind mount source"))?;
    if !meta.is_dir() {
        let dir = scratch.side_dir(&format!("bind{n}"))?;
        let copy = dir.join("file");
        fs_err::copy(path, &copy).map_err(StepError::io("copying a bind mount source"))?;
        return Ok(copy);
    }
    if scratch.snapshotter == Snapshotter::Native {
        // No guard is kept, so `n` does not tell two copies apart.
        static COPIES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let k = COPIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let copy = scratch.side_dir(&format!("bind-copy{k}"))?;
        crate::native::NativeRoot::fill(&copy, &[path.to_owned()])?;
        return Ok(copy);
    }
    let upper = scratch.side_dir(&format!("bind{n}-upper"))?;
    let work = scratch.side_dir(&format!("bind{n}-work"))?;
    let target = scratch.side_dir(&format!("bind{n}"))?;
    let guard = hoist_sandbox::mount_overlay(&[path.to_owned()], &upper, &work, &target)?;
    guards.push(guard);
    Ok(target)
}

/// Where BuildKit mounts a shebang heredoc for RUN to execute.
const PIPES_DIR: &str = "/dev/pipes";

/// A heredoc script, written 0755 in the step's scratch space and mounted
/// read-only at `/dev/pipes`, so it runs with its own interpreter and
/// never lands in the layer.
fn script_mount(scratch: &Scratch, name: &str, body: &str) -> Result<Mount, StepError> {
    use std::os::unix::fs::PermissionsExt;
    if name.contains('/') || name.is_empty() || name == "." || name == ".." {
        return Err(StepError::HeredocName(name.to_owned()));
    }
    let dir = scratch.side_dir("pipes")?;
    let file = dir.join(name);
    fs_err::write(&file, body).map_err(StepError::io("writing a heredoc script"))?;
    fs_err::set_permissions(&file, std::fs::Permissions::from_mode(0o755))
        .map_err(StepError::io("making a heredoc script executable"))?;
    Ok(Mount {
        target: PIPES_DIR.to_owned(),
        kind: MountKind::Bind {
            source: dir,
            read_only: true,
        },
    })
}

fn mount_target(mount: &RunMount, workdir: &str) -> Result<String, StepError> {
    let target = mount
        .target
        .as_deref()
        .ok_or_else(|| StepError::MountTarget {
            mount: mount.raw.clone(),
        })?;
    Ok(crate::copy::join_workdir(workdir, target))
}

/// A merged view of `lowerdirs` (top first), read-only unless copied.
pub(crate) struct View {
    root: PathBuf,
    _guard: Option<MountGuard>,
}

impl View {
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }
}

/// A merged read-only view of `lowerdirs` at `at` (an empty directory); a
/// single directory is used as it is (no mount needed). The native
/// snapshotter copies the layers into `at` instead of mounting them.
pub(crate) fn mount_view(
    lowerdirs: &[PathBuf],
    at: &Path,
    snapshotter: Snapshotter,
) -> Result<View, StepError> {
    if lowerdirs.len() <= 1 {
        return Ok(View {
            root: lowerdirs[0].clone(),
            _guard: None,
        });
    }
    let guard = match snapshotter {
        Snapshotter::Overlayfs => Some(mount_overlay_read_only(lowerdirs, at)?),
        Snapshotter::Native => {
            let bottom_first: Vec<PathBuf> = lowerdirs.iter().rev().cloned().collect();
            crate::native::NativeRoot::fill(at, &bottom_first)?;
            None
        }
    };
    Ok(View {
        root: at.to_owned(),
        _guard: guard,
    })
}

/// USER resolved against the image's own /etc/passwd and /etc/group. With
/// an `env` that has no `HOME`, sets it as runc does for every process it
/// starts: the home of the user's passwd entry, `/` when there is none.
pub(crate) fn resolve_user(
    lowerdirs: &[PathBuf],
    user: &str,
    scratch_mount: &Path,
    env: Option<&mut Vec<String>>,
) -> Result<User, StepError> {
    let is_root = user.is_empty() || user == "root" || user == "0" || user == "0:0";
    // runc replaces an empty HOME too (it tests `os.Getenv("HOME") == ""`).
    let needs_home = env
        .as_deref()
        .is_some_and(|env| get_env(env, "HOME").is_none_or(str::is_empty));
    // Without an environment (WORKDIR's owner) only the IDs matter.
    if is_root && env.is_none() {
        return Ok(User::ROOT);
    }
    // A RUN or WORKDIR of the native snapshotter passes its one root
    // directory; `hoist run` mounts the image's layers.
    let view = mount_view(lowerdirs, scratch_mount, Snapshotter::Overlayfs)?;
    let db = crate::user::UserDb::load(view.root())?;
    // Root is looked up by uid 0, whatever its name (and works without a
    // passwd file), as runc does.
    let spec = if user.is_empty() || user == "root" {
        "0"
    } else {
        user
    };
    let resolved = db.resolve(spec)?;
    let home = resolved.home;
    let user = User {
        uid: resolved.uid,
        gid: resolved.gid,
        additional_gids: resolved.additional_gids,
    };
    if let Some(env) = env
        && needs_home
    {
        set_env(env, "HOME", &home);
    }
    Ok(user)
}

/// Streams a RUN's output to progress and keeps its last lines for the
/// error message.
struct StepIo<'a> {
    progress: &'a dyn Progress,
    step: StepId,
    tail: VecDeque<u8>,
}

impl<'a> StepIo<'a> {
    fn new(progress: &'a dyn Progress, step: StepId) -> Self {
        Self {
            progress,
            step,
            tail: VecDeque::new(),
        }
    }

    fn keep(&mut self, chunk: &[u8]) {
        const MAX_TAIL: usize = 8 * 1024;
        self.tail.extend(chunk);
        let excess = self.tail.len().saturating_sub(MAX_TAIL);
        self.tail.drain(..excess);
    }

    fn tail(&self) -> String {
        let bytes: Vec<u8> = self.tail.iter().copied().collect();
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
    }
}

impl RunIo for StepIo<'_> {
    fn stdout(&mut self, chunk: &[u8]) {
        self.keep(chunk);
        self.progress.event(Event::Output {
            step: self.step,
            stream: Stream::Stdout,
            data: chunk,
        });
    }

    fn stderr(&mut self, chunk: &[u8]) {
        self.keep(chunk);
        self.progress.event(Event::Output {
            step: self.step,
            stream: Stream::Stderr,
            data: chunk,
        });
    }

    /// An empty pipe, closed at once, as BuildKit's RUN gets: a program
    /// that tests whether stdin is a pipe sees what it sees there.
    fn stdin(&mut self) -> Stdin {
        Stdin::Bytes(Vec::new())
    }
}
