//! Parser benchmark: time to parse a generated 10,000-instruction Dockerfile
//! (the budget is 20 ms), and peak heap use at 10k, 20k and 40k
//! instructions to show memory grows linearly with the input.
//!
//! `cargo bench -p hoist-parser` runs it (release profile); set
//! `HOIST_BENCH_RUNS` to change the number of timed runs (default 31).
//! A counting global allocator measures the heap; it is the only `unsafe`
//! outside the sandbox, since `GlobalAlloc` cannot be implemented safely.
#![allow(unsafe_code)]
#![allow(clippy::print_stdout)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Forwards to the system allocator and tracks live and peak bytes.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

impl Counting {
    fn grew(size: usize) {
        let live = LIVE.fetch_add(size, Ordering::Relaxed) + size;
        PEAK.fetch_max(live, Ordering::Relaxed);
    }

    fn shrank(size: usize) {
        LIVE.fetch_sub(size, Ordering::Relaxed);
    }

    /// Starts a new peak measurement from the current live bytes.
    fn reset_peak() -> usize {
        let live = LIVE.load(Ordering::Relaxed);
        PEAK.store(live, Ordering::Relaxed);
        live
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees hold; the counters have no effect on
// the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc`'s contract, which we forward.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            Self::grew(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            Self::grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, i.e. from `System`, with
        // this `layout`, as the caller guarantees.
        unsafe { System.dealloc(ptr, layout) };
        Self::shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller upholds `realloc`'s contract, which we forward.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            Self::shrank(layout.size());
            Self::grew(new_size);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Appends instruction `i` of a realistic multi-stage Dockerfile: a new
/// stage every 50 instructions, otherwise a rotating mix of every
/// instruction, flags, mounts, continuations, comments and heredocs.
fn push_instruction(out: &mut String, i: usize, stage: &mut usize) {
    if i.is_multiple_of(50) {
        *stage += 1;
        let _ = writeln!(out, "\n# stage {stage}");
        let _ = match *stage {
            1 => writeln!(
                out,
                "FROM --platform=$BUILDPLATFORM debian:bookworm-slim AS s1"
            ),
            n => writeln!(out, "FROM s{} AS s{n}", n - 1),
        };
        return;
    }
    let s = *stage;
    let _ = match i % 25 {
        0 => writeln!(out, "ARG VERSION_{i}=1.{i}.0"),
        1 => writeln!(
            out,
            "ENV PATH=/opt/app{i}/bin:$PATH LANG=C.UTF-8 MSG=\"hello {i}\""
        ),
        2 => writeln!(
            out,
            "RUN apt-get update && \\\n    apt-get install -y --no-install-recommends \\\n        ca-certificates curl-{i} \\\n    && rm -rf /var/lib/apt/lists/*"
        ),
        3 => writeln!(
            out,
            "LABEL org.opencontainers.image.version=\"${{VERSION_{i}:-dev}}\" \\\n      maintainer=\"team{i}@example.com\""
        ),
        4 => match s {
            1 => writeln!(
                out,
                "COPY --from=busybox:1.36 --chmod=0755 /bin/busybox /bin/"
            ),
            _ => writeln!(
                out,
                "COPY --from=s{} --chown=1000:1000 --chmod=0755 /opt/app/bin/ /usr/local/bin/",
                s - 1
            ),
        },
        5 => writeln!(out, "WORKDIR /src/{i}"),
        6 => writeln!(
            out,
            "RUN --mount=type=cache,target=/root/.cache/go-build,sharing=locked \\\n    --mount=type=bind,source=go.sum,target=go.sum \\\n    go build -o /out/app{i} ./cmd/app"
        ),
        7 => writeln!(out, "RUN [\"/bin/sh\", \"-c\", \"echo exec form {i}\"]"),
        8 => writeln!(
            out,
            "RUN <<EOF\nset -eux\necho heredoc {i} > /etc/motd\nchmod 0644 /etc/motd\nEOF"
        ),
        9 => writeln!(
            out,
            "COPY <<-EOT /etc/app/{i}.conf\n\tlisten = 80{i}\n\tworkers = 4\n\tEOT"
        ),
        10 => writeln!(
            out,
            "ADD --checksum=sha256:24454f830cdb571e2c4ad15481119c43b3cafd48dd869a9b2945d1036d1dc68d https://example.com/archive-{i}.tar.gz /tmp/"
        ),
        11 => writeln!(out, "EXPOSE 80{}/tcp 9{}/udp", i % 10, i % 100),
        12 => writeln!(out, "USER app{i}:app"),
        13 => writeln!(out, "VOLUME [\"/data/{i}\", \"/cache\"]"),
        14 => writeln!(out, "ENV LEGACY_{i} value with spaces {i}"),
        15 => writeln!(
            out,
            "HEALTHCHECK --interval=30s --timeout=3s --start-period=5s --retries=3 \\\n    CMD curl -fsS http://localhost:80{}/health || exit 1",
            i % 10
        ),
        16 => writeln!(out, "SHELL [\"/bin/bash\", \"-o\", \"pipefail\", \"-c\"]"),
        17 => writeln!(out, "STOPSIGNAL SIGTERM"),
        18 => writeln!(out, "ONBUILD RUN echo triggered {i}"),
        19 => writeln!(
            out,
            "# a comment about step {i}\nRUN --network=none \\\n    # a comment inside the continuation\n    make -j4 \\\n\n    test-{i}"
        ),
        20 => writeln!(out, "COPY --link --exclude=*.md --parents src/{i}/ ./"),
        21 => writeln!(
            out,
            "ENTRYPOINT [\"/usr/local/bin/app{i}\", \"--config\", \"/etc/app\"]"
        ),
        22 => writeln!(out, "CMD [\"serve\", \"--port\", \"80{}\"]", i % 10),
        23 => writeln!(out, "run echo lower-case {i} $HOME ${{VERSION_{i}}}"),
        _ => writeln!(
            out,
            "ADD --chown=app:app --keep-git-dir=true https://example.com/repo.git#v{i} /src/repo"
        ),
    };
}

/// A Dockerfile of exactly `count` instructions.
fn generate(count: usize) -> String {
    let mut out = String::from("# syntax=docker/dockerfile:1\n# escape=\\\n\nARG BUILDPLATFORM\n");
    let mut stage = 0;
    for i in 0..count.saturating_sub(1) {
        push_instruction(&mut out, i, &mut stage);
    }
    out
}

fn parse_checked(source: &str, count: usize) {
    match hoist_parser::parse(source) {
        Ok(dockerfile) => assert_eq!(
            dockerfile.instructions.len(),
            count,
            "the generated Dockerfile should have {count} instructions"
        ),
        Err(err) => panic!(
            "the generated Dockerfile does not parse: {}",
            err.render("Dockerfile", source)
        ),
    }
}

/// CPU time this thread has run (Linux `/proc/thread-self/schedstat`), so
/// the figure holds on a loaded machine where wall time does not.
fn thread_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    // `cargo test --benches` passes --bench only under `cargo bench`; run
    // once quickly otherwise so the test profile still checks it parses.
    let benching = std::env::args().any(|arg| arg == "--bench");
    let runs: usize = std::env::var("HOIST_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if benching { 31 } else { 1 });

    let source = generate(10_000);
    parse_checked(&source, 10_000);
    let mut wall = Vec::with_capacity(runs);
    let mut cpu = Vec::with_capacity(runs);
    for _ in 0..runs {
        let cpu_start = thread_cpu_time();
        let start = Instant::now();
        let parsed = hoist_parser::parse(black_box(&source));
        wall.push(start.elapsed());
        if let (Some(before), Some(after)) = (cpu_start, thread_cpu_time()) {
            cpu.push(after.saturating_sub(before));
        }
        drop(black_box(parsed));
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let min = wall.iter().min().copied().unwrap_or_default();
    let med = median(wall);
    // On a busy machine the thread's CPU time is the fairer figure.
    let cpu_med = (!cpu.is_empty()).then(|| median(cpu));
    let judged = cpu_med.unwrap_or(med);
    println!(
        "parse 10000 instructions ({} lines, {} KiB), {runs} runs: wall median {:.2} ms, min {:.2} ms; cpu median {}",
        source.lines().count(),
        source.len() / 1024,
        ms(med),
        ms(min),
        cpu_med.map_or_else(|| "n/a".to_owned(), |d| format!("{:.2} ms", ms(d))),
    );
    println!(
        "  budget 20 ms: {}",
        if judged < Duration::from_millis(20) {
            "ok"
        } else {
            "OVER"
        }
    );

    println!("peak heap and cpu time of one parse (source excluded):");
    let mut per_instruction = Vec::new();
    for count in [10_000, 20_000, 40_000] {
        let source = generate(count);
        let base = Counting::reset_peak();
        let cpu_start = thread_cpu_time();
        let parsed = hoist_parser::parse(black_box(&source));
        let cpu = cpu_start
            .zip(thread_cpu_time())
            .map(|(a, b)| b.saturating_sub(a));
        let peak = PEAK.load(Ordering::Relaxed) - base;
        let retained = LIVE.load(Ordering::Relaxed).saturating_sub(base);
        drop(black_box(parsed));
        let ratio = peak as f64 / count as f64;
        per_instruction.push(ratio);
        println!(
            "  {count:>6} instructions, {:>6} KiB source: peak {:>7} KiB, result {:>7} KiB, {:.0} B/instruction, cpu {}",
            source.len() / 1024,
            peak / 1024,
            retained / 1024,
            ratio,
            cpu.map_or_else(|| "n/a".to_owned(), |d| format!("{:.1} ms", ms(d))),
        );
    }
    let (lo, hi) = per_instruction
        .iter()
        .fold((f64::MAX, 0f64), |(lo, hi), &r| (lo.min(r), hi.max(r)));
    println!(
        "  bytes per instruction vary by {:.1}% from 10k to 40k ({})",
        (hi / lo - 1.0) * 100.0,
        if hi / lo < 1.25 {
            "linear"
        } else {
            "NOT linear"
        }
    );
}
