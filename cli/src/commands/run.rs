//! `hoist run`: smoke-test an image the way `docker run` would run it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use hoist_builder::run_image::{RunOptions, run_image};
use hoist_sandbox::{NamespaceSandbox, Network, RunIo, Stdin};

use crate::globals::Globals;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Accepted for compatibility: hoist never keeps a container
    #[arg(long)]
    rm: bool,
    /// Keep STDIN open
    #[arg(short, long)]
    interactive: bool,
    /// Set environment variables (`KEY=VALUE`, or `KEY` from the environment)
    #[arg(short = 'e', long = "env", value_name = "KEY[=VALUE]")]
    env: Vec<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir")]
    workdir: Option<String>,
    /// Username or UID (format: `<name|uid>[:<group|gid>]`)
    #[arg(short = 'u', long = "user")]
    user: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    entrypoint: Option<String>,
    /// Connect the container to a network: host or none
    #[arg(long, default_value = "host", value_parser = ["host", "none"])]
    network: String,
    /// Container host name
    #[arg(long = "hostname")]
    hostname: Option<String>,
    /// Security options: seccomp=unconfined, seccomp=PROFILE.json,
    /// no-new-privileges[=false], systempaths=unconfined
    #[arg(long = "security-opt", value_name = "OPT")]
    security_opts: Vec<String>,
    /// Bind mount a volume (`SRC:DST[:ro|rw]`)
    #[arg(short = 'v', long = "volume", value_name = "SRC:DST[:ro]")]
    volumes: Vec<String>,
    /// The image to run
    image: String,
    /// The command and its arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

pub fn run(args: Args, globals: &Globals) -> anyhow::Result<ExitCode> {
    let _ = args.rm;
    let store = globals.open_store()?;
    let image = store
        .resolve(&args.image)
        .with_context(|| format!("unable to find image {:?}", args.image))?;
    let mut volumes = Vec::new();
    for spec in &args.volumes {
        volumes.push(parse_volume(spec)?);
    }
    let options = RunOptions {
        command: args.command,
        entrypoint: args.entrypoint,
        env: args.env,
        workdir: args.workdir,
        user: args.user,
        network: Some(if args.network == "none" {
            Network::None
        } else {
            Network::Host
        }),
        volumes,
        hostname: args.hostname,
        security: crate::security::parse_security_opts(&args.security_opts)?,
    };
    let sandbox = NamespaceSandbox::new(store.tmp_dir().join("sandbox"))?;
    hoist_sandbox::cancel_on_interrupt(sandbox.cancel_handle());
    let mut io = PassThrough {
        interactive: args.interactive,
    };
    let status = run_image(&store, &sandbox, &image, &options, &mut io)?;
    let code = status.code().unwrap_or_else(|| {
        use std::os::unix::process::ExitStatusExt;
        128 + status.signal().unwrap_or(0)
    });
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(255)))
}

/// `SRC:DST[:ro|rw]`, with SRC made absolute like Docker requires.
fn parse_volume(spec: &str) -> anyhow::Result<(PathBuf, String, bool)> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, target, read_only) = match parts.as_slice() {
        [source, target] => (*source, *target, false),
        [source, target, "ro"] => (*source, *target, true),
        [source, target, "rw"] => (*source, *target, false),
        _ => bail!("invalid volume specification {spec:?}: expected SRC:DST[:ro]"),
    };
    if !target.starts_with('/') {
        bail!("invalid volume specification {spec:?}: the destination must be absolute");
    }
    let source = fs_err::canonicalize(source)
        .with_context(|| format!("invalid volume specification {spec:?}"))?;
    Ok((source, target.to_owned(), read_only))
}

/// The container's output goes straight to ours.
struct PassThrough {
    interactive: bool,
}

impl RunIo for PassThrough {
    fn stdout(&mut self, chunk: &[u8]) {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(chunk).and_then(|()| out.flush());
    }

    fn stderr(&mut self, chunk: &[u8]) {
        use std::io::Write;
        let _ = std::io::stderr().lock().write_all(chunk);
    }

    fn stdin(&mut self) -> Stdin {
        if !self.interactive {
            return Stdin::Null;
        }
        match std::io::stdin().as_fd().try_clone_to_owned() {
            Ok(fd) => Stdin::Fd(fd),
            Err(_) => Stdin::Null,
        }
    }
}

use std::os::fd::AsFd;
