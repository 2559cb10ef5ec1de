//! `hoist import`: make a one-layer image from a root filesystem tarball,
//! with `docker import`'s `--change` and `--message`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use hoist_builder::config::{
    command_argv, expose, healthcheck_config, is_valid_signal, parse_ports, set_env,
};
use hoist_parser::Instruction;
use hoist_store::image_config::{EmptyObject, ImageConfig, RuntimeConfig};
use hoist_store::import::{ImportOptions, import};

use crate::globals::Globals;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The tarball (gzip, zstd or plain; "-" reads stdin)
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// The name to tag the image with
    #[arg(value_name = "REPOSITORY[:TAG]")]
    reference: Option<String>,
    /// Set the platform of the image (only linux/amd64 for now)
    #[arg(long, default_value = "linux/amd64")]
    platform: String,
    /// Set the commit message for the imported image
    #[arg(short, long)]
    message: Option<String>,
    /// Apply a Dockerfile instruction to the image config (CMD,
    /// ENTRYPOINT, ENV, EXPOSE, HEALTHCHECK, LABEL, ONBUILD, STOPSIGNAL,
    /// USER, VOLUME, WORKDIR); repeatable
    #[arg(short, long = "change", value_name = "INSTRUCTION")]
    changes: Vec<String>,
}

pub fn run(args: Args, globals: &Globals) -> anyhow::Result<ExitCode> {
    let (os, architecture) = args
        .platform
        .split_once('/')
        .with_context(|| format!("invalid platform {:?}: expected os/arch", args.platform))?;
    // Checked before anything is read or stored.
    let config = apply_changes(&args.changes)?;
    let store = globals.open_store()?;
    let source = args.file.display().to_string();
    let opts = ImportOptions {
        architecture: architecture.to_owned(),
        os: os.to_owned(),
        source: source.clone(),
        message: args.message.clone(),
        config,
        created: crate::epoch::source_date_epoch(None)?.and_then(crate::epoch::rfc3339),
        ..ImportOptions::default()
    };
    let (image, _) = if args.file.as_os_str() == "-" {
        import(
            &store,
            std::io::stdin().lock(),
            args.reference.as_deref(),
            &opts,
        )
    } else {
        let file = fs_err::File::open(&args.file)?;
        import(&store, file, args.reference.as_deref(), &opts)
    }
    .with_context(|| format!("importing {source}"))?;
    println!("{}", image.id());
    Ok(ExitCode::SUCCESS)
}

/// Docker's `BuildFromConfig`: the changes are parsed as one Dockerfile,
/// only the commit-time instructions are allowed, and each is applied in
/// order to an empty config (with variables expanded from the ENV set so
/// far, as a build does).
fn apply_changes(changes: &[String]) -> anyhow::Result<RuntimeConfig> {
    let mut config = ImageConfig::default();
    if changes.is_empty() {
        return Ok(config.config);
    }
    let text = changes.join("\n");
    let df = hoist_parser::parse(&text)
        .map_err(|e| anyhow::anyhow!("invalid --change: {}", e.render("--change", &text)))?;
    for spanned in &df.instructions {
        let allowed = [
            "cmd",
            "entrypoint",
            "healthcheck",
            "env",
            "expose",
            "label",
            "onbuild",
            "stopsignal",
            "user",
            "volume",
            "workdir",
        ];
        if !allowed.contains(&spanned.node.name.to_ascii_lowercase().as_str()) {
            bail!("{} is not a valid change command", spanned.node.name);
        }
        let env = config.config.env.clone().unwrap_or_default();
        let lookup = |name: &str| hoist_builder::config::get_env(&env, name).map(str::to_owned);
        let instruction = spanned.expanded(&lookup, df.escape()).map_err(|e| {
            anyhow::anyhow!("invalid --change {:?}: {}", spanned.text(&text), e.kind)
        })?;
        if let Instruction::Cmd(command) | Instruction::Entrypoint(command) = &instruction {
            let argv = command_argv(&config, command);
            if matches!(instruction, Instruction::Cmd(_)) {
                config.config.cmd = Some(argv);
            } else {
                config.config.entrypoint = Some(argv);
            }
            continue;
        }
        if let Instruction::Expose(specs) = &instruction {
            let ports = parse_ports(specs)
                .map_err(|m| anyhow::anyhow!("invalid --change {:?}: {m}", spanned.text(&text)))?;
            expose(&mut config, &ports);
            continue;
        }
        let c = &mut config.config;
        match instruction {
            Instruction::Healthcheck(check) => c.healthcheck = Some(healthcheck_config(&check)),
            Instruction::Env(pairs) => {
                let env = c.env.get_or_insert_with(Vec::new);
                for kv in pairs {
                    set_env(env, &kv.key, &kv.value);
                }
            }
            Instruction::Label(pairs) => {
                let labels = c.labels.get_or_insert_with(Default::default);
                for kv in pairs {
                    labels.insert(kv.key, kv.value);
                }
            }
            Instruction::Onbuild(onbuild) => {
                c.on_build
                    .get_or_insert_with(Vec::new)
                    .push(onbuild.expression);
            }
            Instruction::Stopsignal(signal) => {
                if !is_valid_signal(&signal) {
                    bail!(
                        "invalid --change {:?}: invalid signal: {signal}",
                        spanned.text(&text)
                    );
                }
                c.stop_signal = Some(signal);
            }
            Instruction::User(user) => c.user = Some(user),
            Instruction::Volume(volumes) => {
                let set = c.volumes.get_or_insert_with(Default::default);
                for volume in volumes {
                    set.insert(volume, EmptyObject {});
                }
            }
            Instruction::Workdir(dir) => {
                let current = c.working_dir.clone().unwrap_or_else(|| "/".to_owned());
                c.working_dir = Some(hoist_builder::copy::join_workdir(&current, &dir));
            }
            other => bail!("{} is not a valid change command", other.name()),
        }
    }
    Ok(config.config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changes(list: &[&str]) -> anyhow::Result<RuntimeConfig> {
        apply_changes(&list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn r10_import_changes() {
        let c = changes(&[
            "ENV PATH=/usr/local/bin:/usr/bin:/bin",
            "ENV HOME=/root",
            "ENV GREETING=\"hi $HOME\"",
            "CMD [\"bash\"]",
            "ENTRYPOINT /entry.sh",
            "EXPOSE 80 443/udp",
            "LABEL a=b",
            "USER app",
            "WORKDIR /srv",
            "WORKDIR data",
            "VOLUME /data",
            "STOPSIGNAL SIGINT",
            "ONBUILD RUN make",
            "HEALTHCHECK --interval=5s CMD true",
        ])
        .unwrap();
        assert_eq!(
            c.env.as_deref().unwrap(),
            [
                "PATH=/usr/local/bin:/usr/bin:/bin",
                "HOME=/root",
                "GREETING=hi /root"
            ]
        );
        assert_eq!(c.cmd.unwrap(), ["bash"]);
        assert_eq!(c.entrypoint.unwrap(), ["/bin/sh", "-c", "/entry.sh"]);
        let ports: Vec<&String> = c.exposed_ports.as_ref().unwrap().keys().collect();
        assert_eq!(ports, ["443/udp", "80/tcp"]);
        assert_eq!(c.labels.unwrap()["a"], "b");
        assert_eq!(c.user.as_deref(), Some("app"));
        assert_eq!(c.working_dir.as_deref(), Some("/srv/data"));
        assert!(c.volumes.unwrap().contains_key("/data"));
        assert_eq!(c.stop_signal.as_deref(), Some("SIGINT"));
        assert_eq!(c.on_build.unwrap(), ["RUN make"]);
        assert!(c.healthcheck.is_some());
    }

    #[test]
    fn r10_import_change_errors() {
        let cases = [
            ("RUN echo hi", "RUN is not a valid change command"),
            ("from busybox", "from is not a valid change command"),
            ("COPY a b", "COPY is not a valid change command"),
            (
                "CMDD x",
                "unknown instruction \"CMDD\" (did you mean \"CMD\"?)",
            ),
            ("ENV", "ENV requires at least one argument"),
            (
                "STOPSIGNAL SIGNOPE",
                "invalid --change \"STOPSIGNAL SIGNOPE\": invalid signal: SIGNOPE",
            ),
        ];
        for (change, want) in cases {
            let err = format!("{:#}", changes(&[change]).unwrap_err());
            assert!(err.contains(want), "case {change}: {err}");
        }
    }
}
