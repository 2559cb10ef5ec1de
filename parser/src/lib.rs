//! hoist-parser: turns Dockerfile text into typed instructions and a graph
//! of stages. Pure: `&str` in, values out; no filesystem, no processes.
//!
//! The layers follow BuildKit's Dockerfile frontend so its behaviour can be
//! matched case by case: [`syntax`] builds the raw tree BuildKit's parser
//! builds (what `hoist debug ast` dumps with [`dump`]), [`instruction`]
//! gives each node its typed meaning and checks it, [`expand`] is the shell
//! word expansion applied at build time, and [`graph`] resolves stages and
//! their dependencies.

#![forbid(unsafe_code)]

pub mod bytes;
pub mod dump;
pub mod error;
pub mod expand;
mod flags;
pub mod graph;
pub mod instruction;
mod json;
mod lint;
pub mod mount;
mod suggest;
pub mod syntax;

pub use error::{ErrorKind, ParseError, Span};
pub use graph::{Base, Dependency, DependencyKind, Graph, PLATFORM_ARGS, Stage, StageIndex};
pub use instruction::{
    ArgDecl, CopyAdd, Dockerfile, From, Healthcheck, Instruction, KeyValue, Network, Onbuild, Run,
    Security, ShellOrExec, Spanned,
};
pub use lint::{
    check_from, check_is_error, lint_violation_message, skips_check, undefined_var_message,
};
pub use mount::{MountType, RunMount, Sharing};
pub use syntax::{Ast, Directives, Heredoc, Node, Warning, parse_ast};

/// Parses and checks a Dockerfile.
///
/// Every instruction is checked as BuildKit checks it when it builds
/// (arguments, flags, mounts, ONBUILD triggers); words are not expanded yet,
/// see [`Instruction::expand`].
pub fn parse(source: &str) -> Result<Dockerfile, ParseError> {
    // Instructions average well over 32 bytes; reserving for that avoids
    // growing (and copying) a vector of large elements again and again.
    let mut instructions = Vec::with_capacity(source.len() / 32 + 1);
    let mut trigger_warnings = Vec::new();
    // One pass: each node is checked as soon as it is built, so a large
    // file never holds two trees.
    let (directives, mut warnings) = syntax::parse_nodes(source, |node| {
        let mut instruction = instruction::from_node(&node).map_err(|e| {
            ParseError::new(syntax::char_column(source, e.span), e.kind).within(node.span)
        })?;
        if let Instruction::Onbuild(Onbuild {
            invalid: Some(err), ..
        }) = &mut instruction
        {
            err.span = syntax::char_column(source, err.span);
            trigger_warnings.push(Warning {
                span: err.span,
                rule: "",
                message: format!(
                    "ONBUILD trigger kept as written, but a build FROM this image will fail: {}",
                    err.kind
                ),
            });
        }
        instructions.push(Spanned {
            instruction,
            span: node.span,
            node,
        });
        Ok(())
    })?;
    instructions.shrink_to_fit();
    let skip = lint::Skip::from_directive(directives.check.as_deref());
    warnings.retain(|w| w.rule.is_empty() || !skip.skips(w.rule));
    for spanned in &instructions {
        lint::check(spanned, &skip, &mut warnings);
    }
    lint::check_file(&instructions, &skip, &mut warnings);
    warnings.extend(trigger_warnings);
    warnings.sort_by_key(|w| w.span.offset);
    Ok(Dockerfile {
        directives,
        instructions,
        warnings,
    })
}
