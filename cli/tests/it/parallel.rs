//! Parallel stages (issue 8) with the real sandbox: stages that can only
//! finish together, the same image for any `--jobs`, and a failure that
//! cancels a running sibling and leaves nothing behind, and the TTY display
//! of stages running together, read off a terminal emulator. Overlap is
//! proved by what the RUNs saw, never by timing.

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{Hoist, dockerfile_context, running_with_arg};

/// Stages `a` and `b` whose RUNs can only finish once both have started
/// (see [`meet`]), and a final stage that copies both results.
pub(crate) fn meeting_stages() -> String {
    format!(
        "FROM busybox AS a\n{}\nFROM busybox AS b\n{}\n\
         FROM busybox\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n",
        meet("a", "b"),
        meet("b", "a")
    )
}

/// A RUN that marks its arrival in a cache mount shared by the stages,
/// then waits (up to 60 s, a guard against hanging) for `other`'s mark and
/// fails with 9 if it never comes.
fn meet(me: &str, other: &str) -> String {
    format!(
        "RUN --mount=type=cache,target=/meet,id=meet touch /meet/{me}; i=0; \
         while [ ! -e /meet/{other} ]; do i=$((i+1)); [ $i -lt 1200 ] || exit 9; sleep 0.05; done; \
         echo {me} met {other}; echo {me} > /{me}"
    )
}

#[test]
fn r8_independent_stages_run_at_the_same_time() {
    let hoist = Hoist::with_busybox();
    let ctx = dockerfile_context(&meeting_stages());
    let log = hoist.build(ctx.path(), &["--jobs", "2", "-t", "met"]);
    assert!(log.contains("a met b") && log.contains("b met a"), "{log}");
    assert_eq!(hoist.exec("met", &["cat", "/a", "/b"]), "a\nb\n");
}

#[test]
fn r8_jobs_1_and_parallel_builds_give_the_same_image() {
    let hoist = Hoist::with_busybox();
    let mut df = String::new();
    for name in ["one", "two", "three", "four"] {
        df.push_str(&format!(
            "FROM busybox AS {name}\nRUN echo {name} > /{name} && mkdir -p /d/{name}\n"
        ));
    }
    df.push_str("FROM busybox\n");
    for name in ["four", "two", "three", "one"] {
        df.push_str(&format!("COPY --from={name} /{name} /d/{name}/ /out/\n"));
    }
    df.push_str("CMD [\"cat\", \"/out/one\"]\n");
    let ctx = dockerfile_context(&df);
    let build = |jobs: &str| {
        let out = hoist
            .command(&[
                "build",
                "-q",
                "--no-cache",
                "--jobs",
                jobs,
                ctx.path().to_str().unwrap(),
            ])
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "--jobs {jobs}: {stderr}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let sequential = build("1");
    let parallel = build("4");
    assert!(sequential.starts_with("sha256:"), "{sequential}");
    assert_eq!(sequential, parallel, "image ID, --jobs 1 vs --jobs 4");
}

#[test]
fn r8_a_failing_stage_cancels_a_running_sibling_and_leaves_nothing() {
    let hoist = Hoist::with_busybox();
    // `long` sleeps long after marking that it runs; `failing` fails once
    // it sees the mark, so `long` is running when the build fails.
    let ctx = dockerfile_context(
        "FROM busybox AS long\n\
         RUN --mount=type=cache,target=/meet,id=meet touch /meet/long; sleep 985\n\
         FROM busybox AS failing\n\
         RUN --mount=type=cache,target=/meet,id=meet i=0; \
         while [ ! -e /meet/long ]; do i=$((i+1)); [ $i -lt 1200 ] || exit 9; sleep 0.05; done; exit 3\n\
         FROM busybox\nCOPY --from=long /etc/hostname /l\nCOPY --from=failing /etc/hostname /f\n",
    );
    let mut child = hoist
        .command(&[
            "build",
            "--progress=plain",
            "--jobs",
            "2",
            ctx.path().to_str().unwrap(),
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut log = String::new();
        stderr.read_to_string(&mut log).unwrap();
        log
    });
    // A guard against a build that waits for its `sleep 985` instead of
    // killing it; not a measure.
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the build did not cancel its running stage");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = reader.join().unwrap();
    assert!(!status.success(), "{log}");
    // The failing step's error is the one reported, with its line.
    let error = log
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line:\n{log}"));
    assert!(error.contains("Dockerfile:4:1: [failing 2/2] RUN"), "{log}");
    assert!(error.contains("exit code: 3"), "{log}");
    // The sibling's step shows as cancelled, as BuildKit shows it.
    let long_step = log
        .lines()
        .find(|l| l.contains("[long 2/2] RUN"))
        .and_then(|l| l.split(' ').next())
        .unwrap_or_else(|| panic!("no long step:\n{log}"));
    assert!(log.contains(&format!("{long_step} CANCELED")), "{log}");
    // Nothing is left: no process, no mount, no temporary directory.
    assert!(
        !running_with_arg(b"985"),
        "the cancelled RUN outlived the build"
    );
    let root = hoist.root().to_str().unwrap();
    let host = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert_eq!(
        crate::common::mounts_under(&host, root),
        Vec::<String>::new(),
        "{log}"
    );
    crate::common::assert_no_temp_leftovers(&hoist);
    hoist.ok(&["fsck"]);
}

/// The terminal the TTY display is drawn on: wide enough that no step line
/// wraps, tall enough that nothing scrolls away.
const TTY_ROWS: u16 = 60;
const TTY_COLS: u16 = 300;

/// Runs `hoist` with stdout and stderr on a pseudo-terminal of its own and
/// feeds everything it draws to a terminal emulator; `frame` sees the
/// screen's rows after every read. Returns the exit status and the final
/// screen.
fn run_on_a_terminal(
    hoist: &Hoist,
    args: &[&str],
    mut frame: impl FnMut(&[String]),
) -> (std::process::ExitStatus, String) {
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};
    let size = nix::pty::Winsize {
        ws_row: TTY_ROWS,
        ws_col: TTY_COLS,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&size), None).expect("openpty: a pseudo-terminal is needed");
    // openpty(3) leaves both ends inheritable: only hoist's stdout and
    // stderr may hold the terminal, or reading it never ends.
    for fd in [&pty.master, &pty.slave] {
        fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).unwrap();
    }
    let mut cmd = hoist.command(args);
    cmd.env("TERM", "xterm")
        .env_remove("NO_COLOR")
        .stdout(Stdio::from(pty.slave.try_clone().unwrap()))
        .stderr(Stdio::from(pty.slave));
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    let mut master = std::fs::File::from(pty.master);
    let mut parser = vt100::Parser::new(
        std::num::NonZeroU16::new(TTY_ROWS).unwrap(),
        std::num::NonZeroU16::new(TTY_COLS).unwrap(),
        0,
    );
    let mut buf = [0u8; 4096];
    loop {
        match master.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                parser.process(&buf[..n]);
                frame(&screen_rows(parser.screen()));
            }
            // Linux reports EIO once the last holder of the terminal's
            // other end has closed it.
            Err(err) if err.raw_os_error() == Some(nix::libc::EIO) => break,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => panic!("reading the terminal: {err}"),
        }
    }
    let status = child.wait().unwrap();
    (status, screen_rows(parser.screen()).join("\n"))
}

/// A screen row by row. indicatif fills each line to the terminal's width
/// and lets the terminal wrap to the next, so the emulator's `contents()`
/// would join the rows into one.
fn screen_rows(screen: &vt100::Screen) -> Vec<String> {
    screen
        .rows(0, TTY_COLS)
        .map(|row| row.trim_end().to_owned())
        .collect()
}

/// The steps a screen shows as running groups (a spinner, not ` => `):
/// their `[stage n/m] INSTRUCTION` prefixes.
fn running_steps(rows: &[String]) -> Vec<String> {
    rows.iter()
        .filter(|line| !line.starts_with(" => ") && !line.starts_with("    "))
        .filter_map(|line| {
            let start = line.find('[')?;
            let end = start + line[start..].find(']')?;
            let word = line[end + 1..].split_whitespace().next()?;
            Some(format!("{} {word}", &line[start..=end]))
        })
        .collect()
}

/// Issue 8: "The TTY display shows one group per running stage". Two
/// stages whose RUNs can only finish together are drawn as two running
/// groups on one screen, and the build ends with every step as one finished
/// line, no group left behind, and the image named.
#[test]
fn r8_tty_display_shows_a_group_per_running_stage() {
    let hoist = Hoist::with_busybox();
    let ctx = dockerfile_context(&meeting_stages());
    let both = ["[a 2/2] RUN".to_owned(), "[b 2/2] RUN".to_owned()];
    let mut together = None;
    let mut seen = Vec::new();
    let (status, screen) = run_on_a_terminal(
        &hoist,
        // No --progress: on a terminal the default is the TTY display.
        &[
            "build",
            "--jobs",
            "2",
            "-t",
            "met",
            ctx.path().to_str().unwrap(),
        ],
        |screen| {
            let running = running_steps(screen);
            for step in &running {
                if !seen.contains(step) {
                    seen.push(step.clone());
                }
            }
            if together.is_none() && both.iter().all(|step| running.contains(step)) {
                together = Some(screen.join("\n"));
            }
        },
    );
    assert!(status.success(), "hoist build failed ({status}):\n{screen}");
    assert!(
        together.is_some(),
        "no screen showed both RUNs running; running steps seen: {seen:?}\nfinal screen:\n{screen}"
    );
    let together = together.unwrap_or_default();
    // The final screen: every step once as a finished line, in no group.
    let rows: Vec<String> = screen.lines().map(str::to_owned).collect();
    assert_eq!(running_steps(&rows), Vec::<String>::new(), "{screen}");
    for step in [
        "[a 1/2] FROM docker.io/library/busybox:latest",
        "[a 2/2] RUN",
        "[b 1/2] FROM docker.io/library/busybox:latest",
        "[b 2/2] RUN",
        "[stage-2 1/3] FROM docker.io/library/busybox:latest",
        "[stage-2 2/3] COPY --from=a /a /a",
        "[stage-2 3/3] COPY --from=b /b /b",
        "exporting to image",
    ] {
        let finished = format!(" => {step}");
        assert_eq!(
            screen.lines().filter(|l| l.starts_with(&finished)).count(),
            1,
            "{finished:?} once on the final screen:\n{screen}\n(both running:\n{together})"
        );
    }
    assert!(
        screen
            .lines()
            .any(|l| l.trim() == "naming to docker.io/library/met:latest done"),
        "{screen}"
    );
    assert_eq!(hoist.exec("met", &["cat", "/a", "/b"]), "a\nb\n");
}
