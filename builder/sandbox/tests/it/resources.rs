//! docker build's resource flags, enforced with cgroups (issue 10), and
//! resource exhaustion stopped by them (issue 11).

use hoist_sandbox::{
    CollectIo, DEFAULT_PIDS_LIMIT, Resources, RunSpec, Sandbox, SandboxError, Ulimit,
};

use crate::sandbox::{ephemeral, run, sandbox, sh};

fn run_with(resources: Resources, script: &str) -> (i32, String, String) {
    let mut spec = ephemeral(sh(script));
    spec.resources = resources;
    run(&spec)
}

fn try_run(spec: &RunSpec) -> Result<(i32, String), SandboxError> {
    let (sb, _state) = sandbox();
    let mut io = CollectIo::new();
    let status = sb.run(spec, &mut io)?;
    Ok((status.code().unwrap_or(-1), io.stdout_str()))
}

/// The run is moved into a cgroup of its own in every hierarchy it has a
/// limit in, which is the root of its cgroup namespace (the namespace is
/// made once the run is in its cgroup, as runc makes it) and what its
/// /sys/fs/cgroup shows, read-only, as BuildKit HEAD's runc mounts it.
#[test]
fn r10_the_run_has_a_cgroup_of_its_own() {
    let resources = Resources {
        memory: Some(64 << 20),
        cpuset_cpus: Some("0".into()),
        pids_limit: Some(100),
        ..Resources::default()
    };
    let (code, out, err) = run_with(
        resources,
        "grep -E ':(memory|pids|cpuset):' /proc/self/cgroup | cut -d: -f3; \
         if [ -f /sys/fs/cgroup/cgroup.controllers ]; then \
           d=/sys/fs/cgroup; cat $d/memory.max $d/pids.max $d/cpuset.cpus; \
         else \
           d=/sys/fs/cgroup/pids; cat /sys/fs/cgroup/memory/memory.limit_in_bytes \
             $d/pids.max /sys/fs/cgroup/cpuset/cpuset.cpus; \
         fi; \
         mkdir $d/probe 2>/dev/null && echo writable || echo read-only",
    );
    assert_eq!(code, 0, "{err}");
    let unified = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let roots = if unified { "" } else { "/\n/\n/\n" };
    assert_eq!(out, format!("{roots}67108864\n100\n0\nread-only\n"));
}

/// The values written, read from the host while the run is alive.
#[test]
fn r10_limits_are_visible_from_the_host() {
    let resources = Resources {
        memory: Some(64 << 20),
        cpu_shares: Some(512),
        cpu_quota: Some(50_000),
        cpu_period: Some(100_000),
        pids_limit: Some(100),
        ..Resources::default()
    };
    let (code, out, err) = run_with(resources, "cat /proc/self/cgroup");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("pids:/\n"), "{out}");
    // While a run sleeps, its cgroup files hold the limits.
    let handle = std::thread::spawn(|| {
        let resources = Resources {
            memory: Some(64 << 20),
            pids_limit: Some(100),
            cpu_shares: Some(512),
            ..Resources::default()
        };
        run_with(resources, "sleep 3")
    });
    let find = |controller: &str, file: &str| -> Option<String> {
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let rel = own
            .lines()
            .find(|l| {
                l.split(':')
                    .nth(1)
                    .is_some_and(|c| c.split(',').any(|x| x == controller))
            })
            .and_then(|l| l.split(':').nth(2))
            .unwrap_or("/")
            .trim_start_matches('/')
            .to_owned();
        let base = std::path::Path::new("/sys/fs/cgroup")
            .join(controller)
            .join(rel);
        std::fs::read_dir(&base)
            .ok()?
            .flatten()
            // This test process's runs only: tests run side by side.
            .find(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("hoist-{}-", std::process::id()))
            })
            .and_then(|e| std::fs::read_to_string(e.path().join(file)).ok())
    };
    let mut seen = None;
    for _ in 0..200 {
        if let (Some(m), Some(p), Some(c)) = (
            find("memory", "memory.limit_in_bytes"),
            find("pids", "pids.max"),
            find("cpu", "cpu.shares"),
        ) {
            seen = Some((m, p, c));
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let (code, _, err) = handle.join().unwrap();
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        seen,
        Some(("67108864\n".into(), "100\n".into(), "512\n".into()))
    );
}

/// A RUN that fills memory past `--memory` fails with a clear error, not
/// a hang or a bare "exit code 137".
#[test]
fn r11_memory_fill_is_stopped_by_the_memory_limit() {
    let mut spec = ephemeral(sh(
        "a=$(head -c 256m /dev/zero | tr '\\0' x); echo survived",
    ));
    spec.resources = Resources {
        memory: Some(32 << 20),
        memory_swap: Some(32 << 20),
        ..Resources::default()
    };
    match try_run(&spec) {
        Err(SandboxError::OutOfMemory { limit }) => assert_eq!(limit, 32 << 20),
        other => panic!("expected out of memory, got {other:?}"),
    }
    let msg = SandboxError::OutOfMemory { limit: 32 << 20 }.to_string();
    assert!(msg.starts_with("out of memory"), "{msg}");
}

/// A fork bomb stops at the pids limit: forks fail with EAGAIN and the run
/// ends; the host's process table is untouched.
#[test]
fn r11_fork_bomb_is_stopped_by_the_pids_limit() {
    let resources = Resources {
        pids_limit: Some(32),
        ..Resources::default()
    };
    let (code, _, err) = run_with(
        resources,
        "i=0; while [ $i -lt 64 ]; do sleep 30 & i=$((i+1)); done; echo not-reached",
    );
    assert_ne!(code, 0, "64 processes cannot start under a limit of 32");
    assert!(
        err.contains("can't fork") && err.contains("Resource temporarily unavailable"),
        "{err}"
    );
    // A real bomb ends too: PID 1 returns, and its namespace goes with it.
    let (code, _, _) = run_with(
        Resources {
            pids_limit: Some(64),
            ..Resources::default()
        },
        "b() { b | b & }; b; sleep 1",
    );
    assert!(code == 0 || code == 2, "{code}");
    assert_eq!(DEFAULT_PIDS_LIMIT, 4096);
}

#[test]
fn r10_ulimit_and_shm_size_apply() {
    let resources = Resources {
        ulimits: vec![
            Ulimit::parse("nofile=256:512").unwrap(),
            Ulimit::parse("core=0").unwrap(),
        ],
        shm_size: Some(8 << 20),
        ..Resources::default()
    };
    let (code, out, err) = run_with(
        resources,
        "ulimit -n; ulimit -Hn; ulimit -c; df -k /dev/shm | awk 'NR==2 {print $2}'",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "256\n512\n0\n8192\n");
    for (spec, want) in [
        ("nofile", "invalid ulimit argument: nofile"),
        ("bogus=1", "invalid ulimit type: bogus"),
        (
            "nofile=10:5",
            "soft limit must be less than or equal to hard limit",
        ),
    ] {
        let err = Ulimit::parse(spec).unwrap_err().to_string();
        assert!(err.contains(want), "{spec}: {err}");
    }
}

/// A SIGKILLed builder cannot remove its runs' cgroups; the next builder
/// removes those of builders that are gone.
#[test]
fn r11_cgroups_of_killed_builders_are_swept() {
    // No process has a pid this high (pid_max is at most 2^22).
    let stale = std::path::Path::new("/sys/fs/cgroup/pids/hoist-99999999-0");
    std::fs::create_dir(stale).unwrap();
    let (code, _, err) = run_with(Resources::default(), "true");
    assert_eq!(code, 0, "{err}");
    assert!(!stale.exists(), "the stale cgroup is removed");
}
