//! `hoist info`: the store and what the kernel offers the builder, shaped
//! like `docker info`, for bug reports and for finding out why a rootless
//! build cannot mount.

use std::process::ExitCode;

use serde_json::json;

use crate::commands::images::human_size;
use crate::globals::Globals;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Format output: "json", or a Go template such as "{{.StoreRoot}}"
    #[arg(short, long, value_name = "FORMAT")]
    format: Option<String>,
}

pub fn run(args: Args, globals: &Globals) -> anyhow::Result<ExitCode> {
    let store = globals.open_store()?;
    let usage = store.disk_usage()?;
    let used =
        usage.images_size + usage.unreferenced_blobs_size + usage.snapshots_size + usage.cache_size;
    // An ordinary user's hoist re-executes itself as root of a user
    // namespace; either way the build is rootless.
    let rootless = hoist_sandbox::in_user_namespace() || !hoist_sandbox::running_as_root();
    let kernel = read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_default();
    let overlay = read_trimmed("/proc/filesystems").is_some_and(|f| {
        f.lines()
            .any(|l| l.split_whitespace().last() == Some("overlay"))
    });
    let userxattr = kernel_at_least(&kernel, (5, 11));
    let cgroup = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "2"
    } else if std::path::Path::new("/sys/fs/cgroup").is_dir() {
        "1"
    } else {
        "none"
    };
    let seccomp = read_trimmed("/proc/self/status")
        .is_some_and(|s| s.lines().any(|l| l.starts_with("Seccomp:")));
    let user_namespaces = read_trimmed("/proc/sys/user/max_user_namespaces")
        .and_then(|n| n.parse::<u64>().ok())
        .is_some_and(|n| n > 0);

    // Rootless, the user namespace's map: one line (a single ID) means
    // there was no subordinate range to use.
    let uid_map: Vec<String> = if rootless {
        read_trimmed("/proc/self/uid_map")
            .unwrap_or_default()
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    } else {
        Vec::new()
    };
    let info = json!({
        "StoreRoot": store.root().display().to_string(),
        "StorageUsed": used,
        "Images": usage.images,
        "Rootless": rootless,
        "UidMap": uid_map,
        "KernelVersion": kernel,
        "OperatingSystem": std::env::consts::OS,
        "Architecture": crate::commands::version::go_arch(std::env::consts::ARCH),
        "Overlay": overlay,
        "OverlayUserxattr": userxattr,
        "CgroupVersion": cgroup,
        "Seccomp": seccomp,
        "UserNamespaces": user_namespaces,
    });
    let yes = |b: bool| if b { "yes" } else { "no" };
    let out = match args.format.as_deref() {
        Some(format) => crate::template::render_one(format, &info)?,
        None => {
            let arch = crate::commands::version::go_arch(std::env::consts::ARCH);
            let sections = [
                (
                    "Store",
                    vec![
                        ("Root", store.root().display().to_string()),
                        ("Storage used", human_size(used, 3)),
                        ("Images", usage.images.to_string()),
                        ("Rootless", rootless.to_string()),
                        (
                            "UID map",
                            match uid_map.len() {
                                0 => "-".to_owned(),
                                1 => format!("{} (a single ID: no subordinate range)", uid_map[0]),
                                _ => uid_map.join(", "),
                            },
                        ),
                    ],
                ),
                (
                    "Kernel",
                    vec![
                        ("Version", kernel.clone()),
                        ("OS/Arch", format!("{}/{arch}", std::env::consts::OS)),
                        ("Overlay", yes(overlay).to_owned()),
                        (
                            "Overlay userxattr",
                            format!("{} (rootless overlay needs 5.11+)", yes(userxattr)),
                        ),
                        ("Cgroup version", cgroup.to_owned()),
                        (
                            "Seccomp",
                            if seccomp {
                                "available"
                            } else {
                                "not available"
                            }
                            .to_owned(),
                        ),
                        ("User namespaces", yes(user_namespaces).to_owned()),
                    ],
                ),
            ];
            let mut text = String::new();
            for (title, rows) in sections {
                text.push_str(title);
                text.push_str(":\n");
                for (key, value) in rows {
                    text.push_str(&format!(" {:<18} {value}\n", format!("{key}:")));
                }
            }
            text
        }
    };
    crate::commands::write_stdout(out.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Whether a kernel release such as `6.1.0-18-amd64` is at least `want`.
fn kernel_at_least(release: &str, want: (u32, u32)) -> bool {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    (major, minor) >= want
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r10_kernel_versions() {
        let cases = [
            ("6.1.0-18-amd64", true),
            ("5.11.0", true),
            ("5.10.209", false),
            ("4.19.0", false),
            ("", false),
        ];
        for (release, want) in cases {
            assert_eq!(kernel_at_least(release, (5, 11)), want, "case {release}");
        }
    }
}
