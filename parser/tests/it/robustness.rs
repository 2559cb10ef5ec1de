//! Random Dockerfile-shaped input never panics the parser, and every span
//! it reports lies inside the source on character boundaries. (The
//! cargo-fuzz target explores further; this keeps a quick net in CI.)

use hoist_parser::{Graph, Span};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

const TOKENS: &[&str] = &[
    "FROM",
    "RUN",
    "COPY",
    "ADD",
    "ENV",
    "ARG",
    "ONBUILD",
    "HEALTHCHECK",
    "CMD",
    "SHELL",
    "LABEL",
    "from",
    "AS",
    "x",
    "a=b",
    "\"",
    "'",
    "\\",
    "`",
    "\n",
    "\r\n",
    " ",
    "\t",
    "#",
    "# escape=`",
    "# syntax=x",
    "--from=0",
    "--mount=type=cache,target=/c",
    "--link",
    "--",
    "<<EOF",
    "<<-EOF",
    "EOF",
    "\tEOF",
    "[",
    "]",
    "\"a\"",
    ",",
    "1",
    "${A:-b}",
    "$A",
    "é",
    "😀",
    "\u{feff}",
    "\u{a0}",
    "NONE",
    "CMD",
    "--interval=5s",
    "=",
    "<<'Q'",
    "Q",
    "3<<X",
    "X",
];

fn check_span(src: &str, span: Span, what: &str) {
    if span.line == 0 {
        return;
    }
    assert!(
        src.get(span.range()).is_some(),
        "{what}: span {span:?} not on char boundaries of {src:?}"
    );
}

#[test]
fn random_input_never_panics_and_spans_stay_in_bounds() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..20_000 {
        let n = (rng.next() % 40) as usize;
        let mut src = String::new();
        for _ in 0..n {
            src.push_str(rng.pick(TOKENS));
            if rng.next().is_multiple_of(3) {
                src.push(' ');
            }
        }
        match hoist_parser::parse(&src) {
            Err(e) => {
                check_span(&src, e.span, "error");
                let _ = e.render("Dockerfile", &src);
            }
            Ok(df) => {
                for s in &df.instructions {
                    check_span(&src, s.span, "instruction");
                    let _ = s.expanded(&|_| Some("v".into()), df.escape());
                }
                if let Ok(g) = Graph::build(&df, &Default::default()) {
                    let _ = g.stages_for_target(None);
                    let _ = g.to_dot();
                } else if let Err(e) = Graph::build(&df, &Default::default()) {
                    check_span(&src, e.span, "graph error");
                }
            }
        }
        let _ = hoist_parser::parse_ast(&src).map(|a| hoist_parser::dump::dump(&a.nodes));
    }
}
