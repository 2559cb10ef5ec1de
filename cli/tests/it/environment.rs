//! The process environment a RUN and `hoist run` get: what runc gives a
//! container under BuildKit and Docker (issue 10).

use crate::common::{Hoist, dockerfile_context};

/// runc sets `HOME` from the passwd entry of the user when the image does
/// not set it: root's home, a named user's home, `/` for a uid without an
/// entry; an image's own `HOME` wins.
#[test]
fn r10_run_gets_home_from_the_users_passwd_entry() {
    let hoist = Hoist::with_busybox();
    let ctx = dockerfile_context(
        "FROM busybox\n\
         RUN echo \"$HOME\" > /tmp/1-root\n\
         USER app\n\
         RUN echo \"$HOME\" > /tmp/2-app\n\
         USER nobody\n\
         RUN echo \"$HOME\" > /tmp/3-nobody\n\
         USER 4242\n\
         RUN echo \"$HOME\" > /tmp/4-uid-without-entry\n\
         USER root\n\
         ENV HOME=/custom\n\
         RUN echo \"$HOME\" > /tmp/5-image-env\n\
         ENV HOME=\n\
         RUN echo \"$HOME\" > /tmp/6-empty-image-env\n",
    );
    hoist.build(ctx.path(), &["-t", "homes:latest"]);
    let out = hoist.exec(
        "homes:latest",
        &[
            "sh",
            "-c",
            "for f in /tmp/[1-6]-*; do echo ${f#/tmp/}=$(cat $f); done",
        ],
    );
    assert_eq!(
        out,
        "1-root=/root\n2-app=/home/app\n3-nobody=/nonexistent\n4-uid-without-entry=/\n\
         5-image-env=/custom\n6-empty-image-env=/root\n"
    );
    // HOME is not written into the image's config: it is the runtime's.
    let env = hoist.inspect("busybox:latest")["Config"]["Env"].clone();
    assert!(
        !env.to_string().contains("HOME"),
        "busybox config env has no HOME: {env}"
    );
}

#[test]
fn r10_hoist_run_gets_home_too() {
    let hoist = Hoist::with_busybox();
    let cases: [(&[&str], &str); 4] = [
        (&[], "/root\n"),
        (&["-u", "app"], "/home/app\n"),
        (&["-u", "nobody"], "/nonexistent\n"),
        (&["-u", "4242"], "/\n"),
    ];
    for (flags, want) in cases {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["busybox", "sh", "-c", "echo $HOME"]);
        assert_eq!(hoist.ok(&args), want, "hoist {args:?}");
    }
    let out = hoist.ok(&[
        "run",
        "--rm",
        "-e",
        "HOME=/x",
        "busybox",
        "sh",
        "-c",
        "echo $HOME",
    ]);
    assert_eq!(out, "/x\n", "-e HOME wins");
}

/// The process environment of a RUN, value by value, as BuildKit HEAD's
/// runc gives it (probed under both with the same Dockerfile).
#[test]
fn r10_run_environment_matches_buildkit_head() {
    let hoist = Hoist::with_busybox();
    let ctx = dockerfile_context(
        "FROM busybox\n\
         RUN mkdir /out && cd /out && \
           ls -A /dev | tr '\\n' ' ' > dev && \
           stat -c '%a %s' /dev/shm /dev/mqueue /dev/null /dev/tty > devmodes && \
           df -k /dev/shm | awk 'NR==2 {print $2}' > shmsize && \
           umask > umask && hostname > hostname && id > id && \
           cat /etc/hostname > etchostname && \
           awk '{print $5, $6}' /proc/self/mountinfo | grep -E '^/(proc|sys|dev/shm|dev/mqueue|dev/pts|etc/hosts|etc/resolv.conf|proc/sys|proc/keys|sys/firmware) ' | sort > mounts && \
           grep -E '^(CapBnd|NoNewPrivs|Seccomp):' /proc/self/status > status && \
           wc -c < /proc/keys > keys && ls -A /sys/firmware | wc -l > firmware && \
           ((test -p /dev/stdin && echo pipe || echo not-a-pipe); wc -c) > stdin\n",
    );
    hoist.build(ctx.path(), &["--network", "none", "-t", "env:latest"]);
    let read = |f: &str| hoist.exec("env:latest", &["cat", &format!("/out/{f}")]);
    let cases = [
        (
            "dev",
            "fd full mqueue null ptmx pts random shm stderr stdin stdout tty urandom zero ",
        ),
        ("devmodes", "1777 40\n1777 40\n666 0\n666 0\n"),
        ("shmsize", "65536\n"),
        ("umask", "0022\n"),
        ("hostname", "buildkitsandbox\n"),
        ("id", "uid=0(root) gid=0(root) groups=0(root)\n"),
        // The image's own file: BuildKit binds none over it for RUN.
        ("etchostname", "hoist-test\n"),
        (
            "mounts",
            "/dev/mqueue rw,nosuid,nodev,noexec,relatime\n\
             /dev/pts rw,nosuid,noexec,relatime\n\
             /dev/shm rw,nosuid,nodev,noexec,relatime\n\
             /etc/hosts ro,nosuid,nodev,noexec,relatime\n\
             /etc/resolv.conf ro,nosuid,nodev,noexec,relatime\n\
             /proc rw,nosuid,nodev,noexec,relatime\n\
             /proc/keys rw,nosuid\n\
             /proc/sys ro,nosuid,nodev,noexec,relatime\n\
             /sys ro,nosuid,nodev,noexec,relatime\n\
             /sys/firmware ro,relatime\n",
        ),
        (
            "status",
            "CapBnd:\t00000000a80425fb\nNoNewPrivs:\t0\nSeccomp:\t2\n",
        ),
        ("keys", "0\n"),
        ("firmware", "0\n"),
        // An empty pipe, as BuildKit's.
        ("stdin", "pipe\n0\n"),
    ];
    for (file, want) in cases {
        assert_eq!(read(file), want, "/out/{file}");
    }
}

/// docker build's resource flags reach every RUN.
#[test]
fn r10_resource_flags_reach_run() {
    let hoist = Hoist::with_busybox();
    let ctx = dockerfile_context(
        "FROM busybox\n\
         RUN (if [ -f /sys/fs/cgroup/cgroup.controllers ]; then \
                cd /sys/fs/cgroup && cat memory.max cpu.weight cpu.max cpuset.cpus; \
              else \
                cd /sys/fs/cgroup && cat memory/memory.limit_in_bytes cpu/cpu.shares \
                  cpu/cpu.cfs_quota_us cpuset/cpuset.cpus; \
              fi; \
              ulimit -n; ulimit -Hn; df -k /dev/shm | awk 'NR==2 {print $2}'; \
              grep myhost /etc/hosts) > /out\n",
    );
    hoist.build(
        ctx.path(),
        &[
            "-t",
            "res:latest",
            "--memory",
            "256m",
            "--cpu-shares",
            "512",
            "--cpu-period",
            "100000",
            "--cpu-quota",
            "50000",
            "--cpuset-cpus",
            "0",
            "--ulimit",
            "nofile=300:400",
            "--shm-size",
            "16m",
            "--add-host",
            "myhost:10.1.2.3",
        ],
    );
    let out = hoist.exec("res:latest", &["cat", "/out"]);
    // The limits, read from the run's own /sys/fs/cgroup: on cgroup v2
    // as runc converts them (shares 512 are weight 59).
    let limits = if unified_host() {
        "268435456\n59\n50000 100000\n0\n"
    } else {
        "268435456\n512\n50000\n0\n"
    };
    assert_eq!(out, format!("{limits}300\n400\n16384\n10.1.2.3\tmyhost\n"));
    for (flag, value, want) in [
        ("--memory", "12x", "invalid --memory \"12x\""),
        ("--ulimit", "bogus=1", "invalid ulimit type: bogus"),
        ("--add-host", "nohost", "invalid --add-host \"nohost\""),
        ("--add-host", "h:not-an-ip", "invalid IP address"),
    ] {
        let err = hoist.fails(&["build", flag, value, ctx.path().to_str().unwrap()]);
        assert!(err.contains(want), "{flag} {value}: {err}");
    }
}

/// Whether the host's /sys/fs/cgroup is cgroup v2.
fn unified_host() -> bool {
    std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// `/sys/fs/cgroup` in a RUN as BuildKit HEAD's runc mounts it (probed
/// under bkref on a cgroup v1 host): on v1 a tmpfs
/// (`rw,nosuid,nodev,noexec`) holding each of the host's hierarchies,
/// read-only and `nosuid,nodev,noexec`, rooted at the step's own cgroup; on
/// v2 one read-only cgroup2 mount in the step's cgroup namespace.
#[test]
fn r10_sys_fs_cgroup_is_the_runs_cgroup_read_only() {
    let hoist = Hoist::with_busybox();
    let ctx = dockerfile_context(
        "FROM busybox\n\
         RUN (awk '$5 ~ /^\\/sys\\/fs\\/cgroup/ {print $5, $6, $9}' /proc/self/mountinfo | sort; \
              cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/pids.max 2>/dev/null; \
              d=/sys/fs/cgroup/pids; [ -f /sys/fs/cgroup/cgroup.controllers ] && d=/sys/fs/cgroup; \
              mkdir $d/probe 2>/dev/null && echo writable || echo read-only) > /out\n",
    );
    hoist.build(ctx.path(), &["-t", "cg:latest"]);
    let out = hoist.exec("cg:latest", &["cat", "/out"]);
    let want = if unified_host() {
        "/sys/fs/cgroup ro,nosuid,nodev,noexec,relatime cgroup2\n\
         4096\n\
         read-only\n"
            .to_owned()
    } else {
        // Every v1 hierarchy the host mounts under /sys/fs/cgroup.
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let mut lines: Vec<String> = mountinfo
            .lines()
            .filter_map(|l| {
                let (left, right) = l.split_once(" - ")?;
                let point = left.split(' ').nth(4)?;
                (right.starts_with("cgroup ") && point.starts_with("/sys/fs/cgroup/"))
                    .then(|| format!("{point} ro,nosuid,nodev,noexec,relatime cgroup"))
            })
            .collect();
        assert!(lines.iter().any(|l| l.starts_with("/sys/fs/cgroup/pids ")));
        lines.push("/sys/fs/cgroup rw,nosuid,nodev,noexec,relatime tmpfs".to_owned());
        lines.sort();
        // The run's own pids cgroup: hoist's default limit, not the
        // builder's.
        format!("{}\n4096\nread-only\n", lines.join("\n"))
    };
    assert_eq!(out, want);
}
