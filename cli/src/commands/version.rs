//! `hoist version`: what `docker version` shows of its client, for bug
//! reports.

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Format output: "json", or a Go template such as "{{.Version}}"
    #[arg(short, long, value_name = "FORMAT")]
    format: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let commit = match env!("HOIST_GIT_COMMIT") {
        "" => "unknown",
        c => c,
    };
    let info = serde_json::json!({
        "Version": env!("CARGO_PKG_VERSION"),
        "GitCommit": commit,
        "RustVersion": env!("HOIST_RUSTC_VERSION"),
        "Os": std::env::consts::OS,
        "Arch": go_arch(std::env::consts::ARCH),
    });
    let out = match args.format.as_deref() {
        Some(format) => crate::template::render_one(format, &info)?,
        None => format!(
            "hoist:\n Version:     {}\n Git commit:  {commit}\n Rust:        {}\n OS/Arch:     {}/{}\n",
            env!("CARGO_PKG_VERSION"),
            env!("HOIST_RUSTC_VERSION"),
            std::env::consts::OS,
            go_arch(std::env::consts::ARCH),
        ),
    };
    crate::commands::write_stdout(out.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// The architecture as OCI (and Go) name it.
pub fn go_arch(arch: &str) -> &str {
    match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}
