//! The Dockerfile parser on arbitrary input: no panic, and every span it
//! reports (instructions, ONBUILD triggers, warnings, errors) lies inside
//! the input on character boundaries. On success the rest of the pipeline
//! a build runs over a parsed file must not panic either: the
//! `hoist debug ast` dump, word expansion of every instruction, and the
//! stage graph. Crashes are kept in testdata/fuzz/parse/.
#![no_main]

use hoist_parser::{Graph, Span, dump};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

fn check_span(what: &str, span: &Span, source: &str) {
    let range = span.range();
    assert!(
        range.start <= range.end
            && range.end <= source.len()
            && source.is_char_boundary(range.start)
            && source.is_char_boundary(range.end),
        "{what} span {span:?} is outside the {}-byte input or splits a character",
        source.len()
    );
}

fn check_node(node: &hoist_parser::Node, source: &str) {
    check_span("node", &node.span, source);
    if let Some(child) = &node.child {
        check_node(child, source);
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    match hoist_parser::parse(source) {
        Ok(dockerfile) => {
            for spanned in &dockerfile.instructions {
                check_span("instruction", &spanned.span, source);
                check_node(&spanned.node, source);
                let _ = spanned.text(source);
                // Expansion with every variable set, then with none.
                let _ = spanned.expanded(&|name| Some(format!("v-{name} x")), dockerfile.escape());
                let _ = spanned.expanded(&|_| None, dockerfile.escape());
            }
            for warning in &dockerfile.warnings {
                check_span("warning", &warning.span, source);
            }
            let nodes: Vec<_> = dockerfile
                .instructions
                .iter()
                .map(|s| s.node.clone())
                .collect();
            let _ = dump::dump(&nodes);
            let _ = dump::dump_heredocs(&nodes);
            if let Ok(graph) = Graph::build(&dockerfile, &BTreeMap::new()) {
                let _ = graph.stages_for_target(None);
                let _ = graph.to_text();
                let _ = graph.to_dot();
            }
        }
        Err(err) => {
            check_span("error", &err.span, source);
            let _ = err.to_string();
            let _ = err.render("Dockerfile", source);
        }
    }
});
