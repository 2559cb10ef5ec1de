//! `hoist debug ast|graph`: the parser's view of a Dockerfile, for tooling
//! and for comparing against BuildKit's parser fixtures.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use hoist_parser::{Graph, dump};

use crate::globals::Globals;
use crate::render::{Source, parse_error, read_dockerfile};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Print the parse tree of a Dockerfile (BuildKit's dump format)
    Ast(AstArgs),
    /// Print the stages of a Dockerfile and their dependencies
    Graph(GraphArgs),
}

#[derive(Debug, clap::Args)]
pub struct AstArgs {
    /// The Dockerfile (`-` for stdin)
    #[arg(short = 'f', long = "file", default_value = "Dockerfile")]
    file: PathBuf,
    /// Print the typed instructions with their spans as JSON
    #[arg(long, conflicts_with = "raw")]
    json: bool,
    /// Only parse as BuildKit's parser does, without checking instructions
    /// (for BuildKit's fixtures, which hold instructions it would reject)
    #[arg(long)]
    raw: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphFormat {
    Text,
    Dot,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct GraphArgs {
    /// The Dockerfile (`-` for stdin)
    #[arg(short = 'f', long = "file", default_value = "Dockerfile")]
    file: PathBuf,
    /// Only the stages this stage needs (default: the last stage)
    #[arg(long)]
    target: Option<String>,
    /// A build-time variable, `KEY=VALUE` (repeatable)
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    build_args: Vec<String>,
    #[arg(long, value_enum, default_value_t = GraphFormat::Text)]
    format: GraphFormat,
}

pub fn run(command: Command, _globals: &Globals) -> anyhow::Result<ExitCode> {
    let out = match command {
        Command::Ast(args) => ast(&args)?,
        Command::Graph(args) => graph(&args)?,
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn ast(args: &AstArgs) -> anyhow::Result<String> {
    let source = read_dockerfile(&args.file)?;
    if args.raw {
        let ast = hoist_parser::parse_ast(&source.text).map_err(|e| parse_error(&source, &e))?;
        source.print_warnings(&ast.warnings);
        return Ok(dump::dump(&ast.nodes));
    }
    let df = hoist_parser::parse(&source.text).map_err(|e| parse_error(&source, &e))?;
    source.print_warnings(&df.warnings);
    if args.json {
        let mut s = serde_json::to_string_pretty(&df)?;
        s.push('\n');
        // Bytes that are not UTF-8 as Go's JSON encoder writes them.
        return Ok(hoist_parser::bytes::lossy(&s).into_owned());
    }
    let nodes: Vec<_> = df.instructions.into_iter().map(|s| s.node).collect();
    Ok(dump::dump(&nodes))
}

fn graph(args: &GraphArgs) -> anyhow::Result<String> {
    let source: Source = read_dockerfile(&args.file)?;
    let df = hoist_parser::parse(&source.text).map_err(|e| parse_error(&source, &e))?;
    let mut build_args = BTreeMap::new();
    for kv in &args.build_args {
        // `--build-arg NAME` alone takes the value from the environment, as
        // `docker build` does.
        match kv.split_once('=') {
            Some((k, v)) => build_args.insert(k.to_owned(), v.to_owned()),
            None => match std::env::var(kv) {
                Ok(v) => build_args.insert(kv.clone(), v),
                Err(_) => continue,
            },
        };
    }
    let graph = Graph::build(&df, &build_args).map_err(|e| parse_error(&source, &e))?;
    let order = graph
        .stages_for_target(args.target.as_deref())
        .map_err(|e| parse_error(&source, &e))?;
    Ok(match args.format {
        GraphFormat::Dot => graph.to_dot(),
        GraphFormat::Json => {
            let mut s = serde_json::to_string_pretty(&serde_json::json!({
                "graph": graph,
                "build_order": order,
            }))?;
            s.push('\n');
            s
        }
        GraphFormat::Text => {
            let mut s = graph.to_text();
            let names: Vec<String> = order
                .iter()
                .map(|&i| graph.stages[i].display_name())
                .collect();
            s.push_str(&format!("build order: {}\n", names.join(" -> ")));
            s
        }
    })
}
