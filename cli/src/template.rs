//! The part of Go's text/template that `docker ... --format` users write:
//! field paths (`{{.ID}}`, `{{.Config.Env}}`, `{{.}}`), variables (`$`,
//! `{{$x := .ID}}`, `{{range $i, $t := .RepoTags}}`), string, number, bool
//! and nil literals, parenthesised pipelines, pipes (`{{.Config | json}}`),
//! `{{range}}`, `{{if}}` and `{{with}}` with `{{else}}`, `{{else if}}` and
//! `{{end}}`, `{{- -}}` trimming, docker's `\t` and `\n` escapes and its
//! `table` prefix. The functions are Go's `and`, `or`, `not`, `len`,
//! `index`, `print`, `printf`, `println`, `eq`, `ne`, `lt`, `le`, `gt`,
//! `ge`, and docker's `json`, `join`, `split`, `upper`, `lower`, `title`,
//! `truncate` and `pad`. Anything else (`define`, `template`, `block`) is
//! refused with an error that says what is supported, rather than printing
//! something subtly different from docker.
//!
//! The evaluator is hoist's own rather than a crate such as gtmpl: docker's
//! output depends on details a general engine does not share (values are
//! decoded JSON, printed as Go prints them: strings bare, lists as `[a b]`,
//! objects as `map[k:v]`, nil as `<no value>`; a missing field is an error
//! for `images` and `<no value>` for `inspect`; `table` headers come from
//! the fields an action reads), and it stays small enough to read.
//!
//! Numbers are JSON numbers: `eq .Size 42` compares values, where Go would
//! refuse to compare `inspect`'s float64 with an int literal.

use anyhow::{Context, bail};
use serde_json::Value;

use crate::commands::images::go_json;

/// What the template language here supports, for error messages.
const SUPPORTED: &str = "hoist's --format supports field paths ({{.ID}}, {{.Config.Env}}), \
     variables, literals, pipes, range, if and with (with else and end), and the functions \
     and, or, not, len, index, print, printf, println, eq, ne, lt, le, gt, ge, json, join, \
     split, upper, lower, title, truncate and pad";

/// A parsed `--format` template.
#[derive(Debug)]
pub struct Template {
    /// `table ...`: a header row, and columns aligned like docker's tables.
    pub table: bool,
    nodes: Vec<Node>,
}

#[derive(Debug)]
enum Node {
    Text(String),
    Action(Pipeline),
    /// `range`, `if` or `with`, its pipeline, and the two branches.
    Block {
        kind: BlockKind,
        pipeline: Pipeline,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    Range,
    If,
    With,
}

/// `[$a[, $b] := | =] command | command ...`
#[derive(Debug, Clone)]
struct Pipeline {
    /// Variables declared (`:=`) or assigned (`=`) by the pipeline.
    vars: Vec<String>,
    declare: bool,
    commands: Vec<Command>,
}

/// One command of a pipeline: a function and its arguments, or one operand.
#[derive(Debug, Clone)]
struct Command {
    args: Vec<Arg>,
}

#[derive(Debug, Clone)]
enum Arg {
    /// `.A.B` (empty for `.`).
    Field(Vec<String>),
    /// `$x.A.B` (`$` alone is the data the template was given).
    Var(String, Vec<String>),
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Nil,
    Function(String),
    /// `(pipeline)`, with fields read from its value: `(index .A 0).B`.
    Sub(Pipeline, Vec<String>),
}

/// What a missing field gives: docker evaluates `images --format` against
/// a struct (an error) and `inspect --format` against decoded JSON (Go's
/// `<no value>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    Error,
    NoValue,
}

impl Template {
    /// Parses `format` as docker does: a leading `table` is taken off,
    /// surrounding spaces trimmed, and `\t`/`\n` become tab and newline.
    pub fn parse(format: &str) -> anyhow::Result<Self> {
        let (table, body) = match format.strip_prefix("table") {
            Some(rest) => (true, rest),
            None => (false, format),
        };
        let body = body
            .trim_matches(' ')
            .replace("\\t", "\t")
            .replace("\\n", "\n");
        let nodes = parse_nodes(&body).with_context(|| format!("invalid --format {format:?}"))?;
        Ok(Self { table, nodes })
    }

    /// The template applied to `value`.
    pub fn render(&self, value: &Value, missing: Missing) -> anyhow::Result<String> {
        let mut out = String::new();
        let mut scope = Scope {
            vars: vec![("$".to_owned(), value.clone())],
            missing,
        };
        render_nodes(&self.nodes, value, &mut scope, &mut out)?;
        Ok(out)
    }

    /// The header row of a `table` template: each action gives the header
    /// of the first field it reads (`{{.ID}}` gives `IMAGE ID` when
    /// `headers` maps `ID` to it, else the upper-cased field name).
    pub fn header(&self, headers: &[(&str, &str)]) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            match node {
                Node::Text(text) => out.push_str(text),
                Node::Block { pipeline, .. } | Node::Action(pipeline) => {
                    let field =
                        pipeline
                            .commands
                            .iter()
                            .flat_map(|c| &c.args)
                            .find_map(|a| match a {
                                Arg::Field(path) => path.first().cloned(),
                                _ => None,
                            });
                    if let Some(field) = field {
                        match headers.iter().find(|(k, _)| *k == field) {
                            Some((_, h)) => out.push_str(h),
                            None => out.push_str(&field.to_uppercase()),
                        }
                    }
                }
            }
        }
        out
    }
}

/// Applies a one-off template (no table) to one value.
pub fn render_one(format: &str, value: &Value) -> anyhow::Result<String> {
    if format == "json" {
        return Ok(format!("{}\n", go_json(value, false)?));
    }
    let template = Template::parse(format)?;
    let mut out = template.render(value, Missing::NoValue)?;
    out.push('\n');
    Ok(out)
}

/// The variables in scope, innermost last, and what a missing field gives.
struct Scope {
    vars: Vec<(String, Value)>,
    missing: Missing,
}

impl Scope {
    fn get(&self, name: &str) -> anyhow::Result<&Value> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
            .with_context(|| format!("undefined variable: {name}"))
    }

    /// Binds a pipeline's value to its variables: declared ones are new
    /// (until the end of the enclosing block), assigned ones must exist.
    fn bind(&mut self, pipeline: &Pipeline, values: &[Value]) -> anyhow::Result<()> {
        for (name, value) in pipeline.vars.iter().zip(values) {
            if pipeline.declare {
                self.vars.push((name.clone(), value.clone()));
            } else {
                let slot = self
                    .vars
                    .iter_mut()
                    .rev()
                    .find(|(n, _)| n == name)
                    .with_context(|| format!("undefined variable: {name}"))?;
                slot.1 = value.clone();
            }
        }
        Ok(())
    }
}

fn render_nodes(
    nodes: &[Node],
    dot: &Value,
    scope: &mut Scope,
    out: &mut String,
) -> anyhow::Result<()> {
    for node in nodes {
        match node {
            Node::Text(text) => out.push_str(text),
            Node::Action(pipeline) => {
                let v = eval_pipeline(pipeline, dot, scope)?;
                if pipeline.vars.is_empty() {
                    out.push_str(&go_print(&v));
                } else {
                    scope.bind(pipeline, std::slice::from_ref(&v))?;
                }
            }
            Node::Block {
                kind,
                pipeline,
                body,
                otherwise,
            } => {
                let outer = scope.vars.len();
                let v = eval_pipeline(pipeline, dot, scope)?;
                match kind {
                    BlockKind::Range => {
                        // Go ranges over a map in sorted key order.
                        let items: Vec<(Value, &Value)> = match &v {
                            Value::Array(items) => items
                                .iter()
                                .enumerate()
                                .map(|(i, v)| (Value::from(i), v))
                                .collect(),
                            Value::Object(map) => {
                                let mut keys: Vec<&String> = map.keys().collect();
                                keys.sort();
                                keys.into_iter()
                                    .map(|k| (Value::String(k.clone()), &map[k]))
                                    .collect()
                            }
                            Value::Number(n) if n.as_u64().is_some() => {
                                // Go 1.22: range over an integer.
                                let n = n.as_u64().unwrap_or_default();
                                (0..n).map(|i| (Value::from(i), &Value::Null)).collect()
                            }
                            Value::Null => Vec::new(),
                            other => bail!("range can't iterate over {}", go_print(other)),
                        };
                        if items.is_empty() {
                            render_nodes(otherwise, dot, scope, out)?;
                        }
                        for (key, item) in items {
                            let item = if matches!(v, Value::Number(_)) {
                                key.clone()
                            } else {
                                item.clone()
                            };
                            match pipeline.vars.len() {
                                0 => {}
                                1 => scope.bind(pipeline, std::slice::from_ref(&item))?,
                                _ => scope.bind(pipeline, &[key, item.clone()])?,
                            }
                            render_nodes(body, &item, scope, out)?;
                            scope.vars.truncate(outer);
                        }
                    }
                    BlockKind::If | BlockKind::With => {
                        if !pipeline.vars.is_empty() {
                            scope.bind(pipeline, std::slice::from_ref(&v))?;
                        }
                        if !truthy(&v) {
                            render_nodes(otherwise, dot, scope, out)?;
                        } else if *kind == BlockKind::With {
                            render_nodes(body, &v, scope, out)?;
                        } else {
                            render_nodes(body, dot, scope, out)?;
                        }
                    }
                }
                scope.vars.truncate(outer);
            }
        }
    }
    Ok(())
}

/// Go's template truth: false, 0, nil and empty values are false.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Object(map) => !map.is_empty(),
    }
}

/// An open `range`/`if`/`with` while its body is parsed.
struct Frame {
    kind: BlockKind,
    pipeline: Pipeline,
    body: Vec<Node>,
    otherwise: Option<Vec<Node>>,
    /// Opened by `{{else if}}`/`{{else with}}`: its `{{end}}` closes the
    /// block it continues too.
    chained: bool,
}

/// The list parsed nodes go to: the innermost open block's, else the top.
fn target<'a>(stack: &'a mut [Frame], nodes: &'a mut Vec<Node>) -> &'a mut Vec<Node> {
    match stack.last_mut() {
        Some(Frame {
            otherwise: Some(list),
            ..
        }) => list,
        Some(frame) => &mut frame.body,
        None => nodes,
    }
}

fn block_kind(keyword: &str) -> Option<BlockKind> {
    match keyword {
        "range" => Some(BlockKind::Range),
        "if" => Some(BlockKind::If),
        "with" => Some(BlockKind::With),
        _ => None,
    }
}

fn parse_nodes(body: &str) -> anyhow::Result<Vec<Node>> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut nodes = Vec::new();
    let mut rest = body;
    let mut trim_next = false;
    while let Some(open) = rest.find("{{") {
        let mut text = &rest[..open];
        if trim_next {
            text = text.trim_start();
        }
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .with_context(|| format!("unclosed action at {:?}", &rest[open..]))?;
        let mut inner = &after[..close];
        if let Some(stripped) = inner.strip_prefix("- ") {
            text = text.trim_end();
            inner = stripped;
        }
        trim_next = false;
        if let Some(stripped) = inner.strip_suffix(" -") {
            trim_next = true;
            inner = stripped;
        }
        if !text.is_empty() {
            target(&mut stack, &mut nodes).push(Node::Text(text.to_owned()));
        }
        let trimmed = inner.trim();
        if trimmed.starts_with("/*") {
            // A comment.
            rest = &after[close + 2..];
            continue;
        }
        let (keyword, args) = match trimmed.split_once(char::is_whitespace) {
            Some((k, a)) => (k, a.trim()),
            None => (trimmed, ""),
        };
        match keyword {
            "range" | "if" | "with" => {
                stack.push(Frame {
                    kind: block_kind(keyword).expect("a block keyword"),
                    pipeline: parse_pipeline(args)?,
                    body: Vec::new(),
                    otherwise: None,
                    chained: false,
                });
            }
            "else" => {
                match stack.last_mut() {
                    Some(frame) if frame.otherwise.is_none() => frame.otherwise = Some(Vec::new()),
                    _ => bail!("unexpected {{{{else}}}}"),
                }
                if !args.is_empty() {
                    // `{{else if X}}` is `{{else}}{{if X}}...{{end}}`.
                    let (keyword, args) =
                        args.split_once(char::is_whitespace).unwrap_or((args, ""));
                    let kind = block_kind(keyword)
                        .filter(|k| *k != BlockKind::Range)
                        .with_context(|| {
                            format!("\"else {keyword}\" is not supported: {SUPPORTED}")
                        })?;
                    stack.push(Frame {
                        kind,
                        pipeline: parse_pipeline(args)?,
                        body: Vec::new(),
                        otherwise: None,
                        chained: true,
                    });
                }
            }
            "end" => loop {
                let frame = stack.pop().context("unexpected {{end}}")?;
                let block = Node::Block {
                    kind: frame.kind,
                    pipeline: frame.pipeline,
                    body: frame.body,
                    otherwise: frame.otherwise.unwrap_or_default(),
                };
                target(&mut stack, &mut nodes).push(block);
                if !frame.chained {
                    break;
                }
            },
            "define" | "template" | "block" | "break" | "continue" => {
                bail!("{{{{{keyword}}}}} is not supported: {SUPPORTED}")
            }
            _ => {
                let action = Node::Action(parse_pipeline(inner)?);
                target(&mut stack, &mut nodes).push(action);
            }
        }
        rest = &after[close + 2..];
    }
    let text = if trim_next { rest.trim_start() } else { rest };
    if !text.is_empty() {
        target(&mut stack, &mut nodes).push(Node::Text(text.to_owned()));
    }
    if !stack.is_empty() {
        bail!("unexpected EOF: a range, if or with has no {{{{end}}}}");
    }
    Ok(nodes)
}

fn parse_pipeline(action: &str) -> anyhow::Result<Pipeline> {
    let tokens = tokenize(action)?;
    pipeline_of(&tokens, action)
}

/// A pipeline from its tokens: declarations first, then commands split on
/// the pipes outside parentheses.
fn pipeline_of(tokens: &[Token], action: &str) -> anyhow::Result<Pipeline> {
    let mut vars = Vec::new();
    let mut declare = true;
    let mut rest = tokens;
    // `$x :=`, `$x =`, `$i, $v :=`
    let decl_end = tokens
        .iter()
        .position(|t| matches!(t, Token::Declare | Token::Assign));
    if let Some(end) = decl_end {
        let names = &tokens[..end];
        let ok = !names.is_empty()
            && names.iter().enumerate().all(|(i, t)| match t {
                Token::Word(w) if i % 2 == 0 => w.starts_with('$') && !w.contains('.'),
                Token::Comma => i % 2 == 1,
                _ => false,
            })
            && names.len() <= 3;
        if !ok {
            bail!("unexpected \":=\" or \"=\" in {action:?}");
        }
        for t in names {
            if let Token::Word(w) = t {
                vars.push(w.clone());
            }
        }
        declare = matches!(tokens[end], Token::Declare);
        rest = &tokens[end + 1..];
    }
    if rest.is_empty() {
        bail!("missing value for command");
    }
    let mut commands = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, t) in rest.iter().enumerate() {
        match t {
            Token::LParen => depth += 1,
            Token::RParen => depth = depth.checked_sub(1).context("unexpected \")\"")?,
            Token::Pipe if depth == 0 => {
                commands.push(command_of(&rest[start..i], action)?);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        bail!("unclosed left paren in {action:?}");
    }
    commands.push(command_of(&rest[start..], action)?);
    Ok(Pipeline {
        vars,
        declare,
        commands,
    })
}

fn command_of(tokens: &[Token], action: &str) -> anyhow::Result<Command> {
    let mut args = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i] {
            Token::Str(s) => args.push(Arg::Str(s.clone())),
            Token::Word(w) => args.push(word(w)?),
            Token::LParen => {
                // The matching paren.
                let mut depth = 0usize;
                let mut end = i;
                for (j, t) in tokens.iter().enumerate().skip(i) {
                    match t {
                        Token::LParen => depth += 1,
                        Token::RParen => {
                            depth -= 1;
                            if depth == 0 {
                                end = j;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                let inner = pipeline_of(&tokens[i + 1..end], action)?;
                if !inner.vars.is_empty() {
                    bail!("a declaration in parentheses is not supported: {SUPPORTED}");
                }
                // `(...).Field.Path`
                let mut path = Vec::new();
                if let Some(Token::Word(w)) = tokens.get(end + 1)
                    && let Some(fields) = w.strip_prefix('.')
                {
                    path = field_path(fields, w)?;
                    i = end + 1;
                } else {
                    i = end;
                }
                args.push(Arg::Sub(inner, path));
            }
            Token::RParen => bail!("unexpected \")\" in {action:?}"),
            Token::Pipe | Token::Comma | Token::Declare | Token::Assign => {
                bail!("unexpected token in {action:?}")
            }
        }
        i += 1;
    }
    if args.is_empty() {
        bail!("missing command in pipeline {action:?}");
    }
    if args.len() > 1 && !matches!(args[0], Arg::Function(_)) {
        bail!("can't give argument to non-function in {action:?}");
    }
    Ok(Command { args })
}

fn field_path(path: &str, word: &str) -> anyhow::Result<Vec<String>> {
    let parts: Vec<String> = path.split('.').map(str::to_owned).collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || !p.chars().all(|c| c.is_alphanumeric() || c == '_'))
    {
        bail!("bad field path {word:?}");
    }
    Ok(parts)
}

/// The functions hoist's templates know.
const FUNCTIONS: &[&str] = &[
    "and", "or", "not", "len", "index", "print", "printf", "println", "eq", "ne", "lt", "le", "gt",
    "ge", "json", "join", "split", "upper", "lower", "title", "truncate", "pad",
];

fn word(w: &str) -> anyhow::Result<Arg> {
    if w == "." {
        return Ok(Arg::Field(Vec::new()));
    }
    if let Some(path) = w.strip_prefix('.') {
        return Ok(Arg::Field(field_path(path, w)?));
    }
    if let Some(var) = w.strip_prefix('$') {
        let (name, path) = match var.split_once('.') {
            Some((name, path)) => (name, field_path(path, w)?),
            None => (var, Vec::new()),
        };
        if !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
            bail!("bad variable {w:?}");
        }
        return Ok(Arg::Var(format!("${name}"), path));
    }
    if let Ok(n) = w.parse::<i64>() {
        return Ok(Arg::Int(n));
    }
    if let Some(hex) = w.strip_prefix("0x")
        && let Ok(n) = i64::from_str_radix(hex, 16)
    {
        return Ok(Arg::Int(n));
    }
    if w.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '+' || c == '.')
        && let Ok(f) = w.parse::<f64>()
    {
        return Ok(Arg::Float(f));
    }
    match w {
        "true" => return Ok(Arg::Bool(true)),
        "false" => return Ok(Arg::Bool(false)),
        "nil" => return Ok(Arg::Nil),
        _ => {}
    }
    if FUNCTIONS.contains(&w) {
        return Ok(Arg::Function(w.to_owned()));
    }
    match w {
        "range" | "if" | "with" | "else" | "end" | "define" | "template" | "block" | "slice"
        | "call" | "html" | "js" | "urlquery" => bail!("{w:?} is not supported: {SUPPORTED}"),
        _ => bail!("function {w:?} not defined"),
    }
}

#[derive(Debug, Clone)]
enum Token {
    Word(String),
    Str(String),
    Pipe,
    LParen,
    RParen,
    Comma,
    /// `:=`
    Declare,
    /// `=`
    Assign,
}

fn tokenize(action: &str) -> anyhow::Result<Vec<Token>> {
    let mut tokens = Vec::new();
    let mut chars = action.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '|' => {
                chars.next();
                tokens.push(Token::Pipe);
            }
            '(' => {
                chars.next();
                tokens.push(Token::LParen);
            }
            ')' => {
                chars.next();
                tokens.push(Token::RParen);
            }
            ',' => {
                chars.next();
                tokens.push(Token::Comma);
            }
            ':' => {
                chars.next();
                if chars.next() != Some('=') {
                    bail!("unexpected \":\" in {action:?}");
                }
                tokens.push(Token::Declare);
            }
            '=' => {
                chars.next();
                tokens.push(Token::Assign);
            }
            '"' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some('n') => s.push('\n'),
                            Some('t') => s.push('\t'),
                            Some(other) => s.push(other),
                            None => bail!("unterminated quoted string"),
                        },
                        Some(c) => s.push(c),
                        None => bail!("unterminated quoted string"),
                    }
                }
                tokens.push(Token::Str(s));
            }
            '`' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some('`') => break,
                        Some(c) => s.push(c),
                        None => bail!("unterminated raw quoted string"),
                    }
                }
                tokens.push(Token::Str(s));
            }
            _ => {
                let mut w = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || matches!(c, '|' | '"' | '(' | ')' | ',' | '=' | ':') {
                        break;
                    }
                    w.push(c);
                    chars.next();
                }
                tokens.push(Token::Word(w));
            }
        }
    }
    Ok(tokens)
}

fn eval_pipeline(pipeline: &Pipeline, dot: &Value, scope: &Scope) -> anyhow::Result<Value> {
    let mut piped: Option<Value> = None;
    for command in &pipeline.commands {
        let (function, operands) = match &command.args[0] {
            Arg::Function(name) => (Some(name.as_str()), &command.args[1..]),
            _ => (None, &command.args[..]),
        };
        let value = match function {
            // Go's and/or stop at the first argument that decides.
            Some(name @ ("and" | "or")) => {
                let total = operands.len() + usize::from(piped.is_some());
                if total == 0 {
                    bail!("wrong number of args for {name}: want at least 1 got 0");
                }
                let mut last = None;
                for arg in operands {
                    let v = eval_arg(arg, dot, scope)?;
                    let decides = truthy(&v) == (name == "or");
                    last = Some(v);
                    if decides {
                        break;
                    }
                }
                let decided = last.as_ref().is_some_and(|v| truthy(v) == (name == "or"));
                match piped.take() {
                    Some(v) if !decided => v,
                    _ => last.unwrap_or(Value::Null),
                }
            }
            Some(name) => {
                let mut args = Vec::new();
                for arg in operands {
                    args.push(eval_arg(arg, dot, scope)?);
                }
                if let Some(v) = piped.take() {
                    args.push(v);
                }
                call(name, &args)?
            }
            None => {
                if operands.len() > 1 || (piped.is_some() && !operands.is_empty()) {
                    bail!("can't give argument to non-function");
                }
                eval_arg(&operands[0], dot, scope)?
            }
        };
        piped = Some(value);
    }
    Ok(piped.unwrap_or(Value::Null))
}

fn eval_arg(arg: &Arg, dot: &Value, scope: &Scope) -> anyhow::Result<Value> {
    Ok(match arg {
        Arg::Str(s) => Value::String(s.clone()),
        Arg::Int(n) => Value::from(*n),
        Arg::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        Arg::Bool(b) => Value::Bool(*b),
        Arg::Nil => bail!("nil is not a command"),
        Arg::Function(name) => call(name, &[])?,
        Arg::Field(path) => field(dot, path, scope.missing)?,
        Arg::Var(name, path) => field(scope.get(name)?, path, scope.missing)?,
        Arg::Sub(pipeline, path) => {
            field(&eval_pipeline(pipeline, dot, scope)?, path, scope.missing)?
        }
    })
}

/// `path` read from `v`, as text/template reads a decoded JSON value.
fn field(v: &Value, path: &[String], missing: Missing) -> anyhow::Result<Value> {
    let mut v = v;
    for (i, name) in path.iter().enumerate() {
        match v {
            Value::Object(map) => match map.get(name) {
                Some(next) => v = next,
                None if missing == Missing::Error || i + 1 < path.len() => {
                    bail!("can't evaluate field {name} (the fields are: {})", {
                        let keys: Vec<&str> = map.keys().map(String::as_str).collect();
                        keys.join(", ")
                    })
                }
                None => return Ok(Value::Null),
            },
            Value::Null => return Ok(Value::Null),
            other => bail!("can't evaluate field {name} in {}", kind_name(other)),
        }
    }
    Ok(v.clone())
}

/// How two values compare, for `eq` and `lt`: numbers by value, strings
/// and bools as themselves; anything else cannot be compared.
fn compare(name: &str, a: &Value, b: &Value) -> anyhow::Result<std::cmp::Ordering> {
    use std::cmp::Ordering;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                Ok(x.cmp(&y))
            } else {
                let (x, y) = (
                    x.as_f64().unwrap_or(f64::NAN),
                    y.as_f64().unwrap_or(f64::NAN),
                );
                x.partial_cmp(&y)
                    .with_context(|| format!("error calling {name}: incomparable numbers"))
            }
        }
        (Value::String(x), Value::String(y)) => Ok(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) if matches!(name, "eq" | "ne") => Ok(x.cmp(y)),
        (Value::Null, Value::Null) if matches!(name, "eq" | "ne") => Ok(Ordering::Equal),
        (Value::Array(_) | Value::Object(_), _) | (_, Value::Array(_) | Value::Object(_)) => {
            bail!("error calling {name}: non-comparable type")
        }
        _ if std::mem::discriminant(a) != std::mem::discriminant(b) => {
            bail!("error calling {name}: incompatible types for comparison")
        }
        _ => bail!("error calling {name}: invalid type for comparison"),
    }
}

fn call(name: &str, args: &[Value]) -> anyhow::Result<Value> {
    let arity = |n: usize| -> anyhow::Result<()> {
        if args.len() != n {
            bail!(
                "wrong number of args for {name}: want {n} got {}",
                args.len()
            );
        }
        Ok(())
    };
    match name {
        "json" => {
            arity(1)?;
            Ok(Value::String(go_json(&args[0], false)?))
        }
        "upper" | "lower" | "title" => {
            arity(1)?;
            let s = go_print(&args[0]);
            Ok(Value::String(match name {
                "upper" => s.to_uppercase(),
                "lower" => s.to_lowercase(),
                _ => title(&s),
            }))
        }
        "join" => {
            arity(2)?;
            let Value::Array(items) = &args[0] else {
                bail!("error calling join: not a list: {}", go_print(&args[0]));
            };
            let sep = go_print(&args[1]);
            let parts: Vec<String> = items.iter().map(go_print).collect();
            Ok(Value::String(parts.join(&sep)))
        }
        "split" => {
            arity(2)?;
            let (s, sep) = (go_print(&args[0]), go_print(&args[1]));
            let parts: Vec<Value> = if sep.is_empty() {
                s.chars().map(|c| Value::String(c.to_string())).collect()
            } else {
                s.split(sep.as_str())
                    .map(|p| Value::String(p.to_owned()))
                    .collect()
            };
            Ok(Value::Array(parts))
        }
        "truncate" => {
            // docker's truncateWithLength: the first N characters.
            arity(2)?;
            let n = args[1]
                .as_u64()
                .context("error calling truncate: the length must be a number")?;
            let s = go_print(&args[0]);
            Ok(Value::String(s.chars().take(n as usize).collect()))
        }
        "pad" => {
            // docker's padWithSpace: N spaces before, M after.
            arity(3)?;
            let count = |v: &Value| {
                v.as_u64()
                    .context("error calling pad: the padding must be a number")
            };
            let (before, after) = (count(&args[1])?, count(&args[2])?);
            Ok(Value::String(format!(
                "{}{}{}",
                " ".repeat(before as usize),
                go_print(&args[0]),
                " ".repeat(after as usize)
            )))
        }
        "not" => {
            arity(1)?;
            Ok(Value::Bool(!truthy(&args[0])))
        }
        "len" => {
            arity(1)?;
            Ok(Value::from(match &args[0] {
                Value::String(s) => s.len(),
                Value::Array(items) => items.len(),
                Value::Object(map) => map.len(),
                other => bail!("error calling len: len of type {}", kind_name(other)),
            }))
        }
        "eq" | "ne" => {
            if args.len() < 2 {
                bail!(
                    "wrong number of args for {name}: want at least 2 got {}",
                    args.len()
                );
            }
            let mut equal = false;
            for other in &args[1..] {
                if compare("eq", &args[0], other)?.is_eq() {
                    equal = true;
                    break;
                }
            }
            Ok(Value::Bool(equal == (name == "eq")))
        }
        "lt" | "le" | "gt" | "ge" => {
            arity(2)?;
            let order = compare(name, &args[0], &args[1])?;
            Ok(Value::Bool(match name {
                "lt" => order.is_lt(),
                "le" => order.is_le(),
                "gt" => order.is_gt(),
                _ => order.is_ge(),
            }))
        }
        "print" => Ok(Value::String(go_sprint(args))),
        "println" => {
            let parts: Vec<String> = args.iter().map(go_print).collect();
            Ok(Value::String(format!("{}\n", parts.join(" "))))
        }
        "printf" => {
            let Some((format, rest)) = args.split_first() else {
                bail!("wrong number of args for printf: want at least 1 got 0");
            };
            Ok(Value::String(go_sprintf(&go_print(format), rest)))
        }
        "index" => {
            let Some((first, keys)) = args.split_first() else {
                bail!("wrong number of args for index: want at least 1 got 0");
            };
            let mut v = first.clone();
            for key in keys {
                v = match (&v, key) {
                    (Value::Array(items), Value::Number(n)) => {
                        let i = n
                            .as_u64()
                            .and_then(|i| usize::try_from(i).ok())
                            .filter(|&i| i < items.len())
                            .with_context(|| {
                                format!("error calling index: index out of range: {n}")
                            })?;
                        items[i].clone()
                    }
                    (Value::Object(map), Value::String(k)) => {
                        map.get(k).cloned().unwrap_or(Value::Null)
                    }
                    (Value::Null, _) => bail!("error calling index: index of untyped nil"),
                    (other, key) => bail!(
                        "error calling index: cannot index {} with {}",
                        kind_name(other),
                        go_print(key)
                    ),
                };
            }
            Ok(v)
        }
        other => bail!("function {other:?} not defined"),
    }
}

/// Go's `strings.Title`: each word's first letter upper-cased.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start && c.is_alphanumeric() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !(c.is_alphanumeric() || c == '_' || c == '\'');
    }
    out
}

/// Go's `fmt.Sprint`: a space between operands when neither is a string.
fn go_sprint(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, arg) in args.iter().enumerate() {
        if i > 0 && !args[i - 1].is_string() && !arg.is_string() {
            out.push(' ');
        }
        out.push_str(&go_print(arg));
    }
    out
}

/// Go's `fmt.Sprintf` for the verbs templates use: `%v %s %d %q %t %f %g
/// %e %x %X %o %b %c %%`, with flags (`-+ 0#`), width and precision.
fn go_sprintf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let (mut minus, mut plus, mut zero, mut space) = (false, false, false, false);
        while let Some(&f) = chars.peek() {
            match f {
                '-' => minus = true,
                '+' => plus = true,
                '0' => zero = true,
                ' ' => space = true,
                '#' => {}
                _ => break,
            }
            chars.next();
        }
        let number = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
            let mut n = None;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                n = Some(n.unwrap_or(0) * 10 + d as usize);
                chars.next();
            }
            n
        };
        let width = number(&mut chars);
        let precision = if chars.peek() == Some(&'.') {
            chars.next();
            Some(number(&mut chars).unwrap_or(0))
        } else {
            None
        };
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.next() else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        let bad = || format!("%!{verb}({}={})", go_type(arg), go_print(arg));
        let int = arg
            .as_i64()
            .filter(|_| arg.as_f64().is_some_and(|f| f.fract() == 0.0));
        let text = match verb {
            'v' | 's' => match (verb, arg) {
                ('s', Value::Number(_) | Value::Bool(_)) => bad(),
                _ => {
                    let s = go_print(arg);
                    match precision {
                        Some(p) => s.chars().take(p).collect(),
                        None => s,
                    }
                }
            },
            'q' => match arg {
                Value::String(s) => hoist_parser::dump::go_quote(s),
                _ => bad(),
            },
            't' => match arg {
                Value::Bool(b) => b.to_string(),
                _ => bad(),
            },
            'd' | 'x' | 'X' | 'o' | 'b' | 'c' => match int {
                Some(n) => {
                    let sign = if n < 0 {
                        "-"
                    } else if plus {
                        "+"
                    } else if space {
                        " "
                    } else {
                        ""
                    };
                    let m = n.unsigned_abs();
                    let digits = match verb {
                        'd' => m.to_string(),
                        'x' => format!("{m:x}"),
                        'X' => format!("{m:X}"),
                        'o' => format!("{m:o}"),
                        'b' => format!("{m:b}"),
                        _ => char::from_u32(n as u32)
                            .map(String::from)
                            .unwrap_or_default(),
                    };
                    if zero
                        && !minus
                        && let Some(w) = width
                    {
                        let pad = w.saturating_sub(sign.len() + digits.len());
                        format!("{sign}{}{digits}", "0".repeat(pad))
                    } else {
                        format!("{sign}{digits}")
                    }
                }
                None if matches!(verb, 'x' | 'X') && arg.is_string() => {
                    let s = go_print(arg);
                    let hex: String = s.bytes().map(|b| format!("{b:02x}")).collect();
                    if verb == 'X' { hex.to_uppercase() } else { hex }
                }
                None => bad(),
            },
            'f' | 'F' | 'e' | 'E' | 'g' | 'G' => match arg.as_f64() {
                Some(f) => {
                    let p = precision.unwrap_or(6);
                    let s = match verb {
                        'f' | 'F' => format!("{f:.p$}"),
                        'e' => format!("{f:.p$e}"),
                        'E' => format!("{f:.p$E}"),
                        _ => match precision {
                            Some(p) => format!("{f:.p$}"),
                            None => f.to_string(),
                        },
                    };
                    if plus && f >= 0.0 { format!("+{s}") } else { s }
                }
                None => bad(),
            },
            other => format!("%!{other}({}={})", go_type(arg), go_print(arg)),
        };
        let pad = width.unwrap_or(0).saturating_sub(text.chars().count());
        if pad == 0 {
            out.push_str(&text);
        } else if minus {
            out.push_str(&text);
            out.push_str(&" ".repeat(pad));
        } else {
            let fill = if zero && matches!(verb, 'f' | 'F' | 'e' | 'E' | 'g' | 'G') {
                '0'
            } else {
                ' '
            };
            out.extend(std::iter::repeat_n(fill, pad));
            out.push_str(&text);
        }
    }
    let extra: Vec<String> = args
        .map(|a| format!("{}={}", go_type(a), go_print(a)))
        .collect();
    if !extra.is_empty() {
        out.push_str(&format!("%!(EXTRA {})", extra.join(", ")));
    }
    out
}

/// The Go type a decoded JSON value has, for fmt's error verbs.
fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float64",
        Value::Number(_) => "int",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "nil",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "map",
    }
}

/// A value as Go's `fmt.Print` shows a decoded JSON value.
fn go_print(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(go_print_nested).collect();
            format!("[{}]", parts.join(" "))
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{k}:{}", go_print_nested(&map[k])))
                .collect();
            format!("map[{}]", parts.join(" "))
        }
    }
}

/// Inside a list or map Go prints nil as `<nil>`.
fn go_print_nested(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".to_owned(),
        other => go_print(other),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn r10_format_templates() {
        let v = json!({
            "ID": "abc",
            "Repository": "busybox",
            "Tag": "latest",
            "RepoTags": ["busybox:latest", "bb:1"],
            "Config": {"Env": ["A=1", "B=<2>"], "Labels": {"z": "1", "a": "2"}, "User": ""},
            "Size": 42,
        });
        let cases = [
            ("{{.ID}}", "abc"),
            ("{{.Repository}}:{{.Tag}}", "busybox:latest"),
            ("{{json .Config.Env}}", r#"["A=1","B=\u003c2\u003e"]"#),
            ("{{.RepoTags}}", "[busybox:latest bb:1]"),
            ("{{index .RepoTags 1}}", "bb:1"),
            ("{{index .Config.Labels \"a\"}}", "2"),
            ("{{.Config.Labels}}", "map[a:2 z:1]"),
            (
                "{{.Config | json}}",
                r#"{"Env":["A=1","B=\u003c2\u003e"],"Labels":{"z":"1","a":"2"},"User":""}"#,
            ),
            ("{{join .RepoTags \", \"}}", "busybox:latest, bb:1"),
            ("{{upper .Tag}}", "LATEST"),
            ("{{.Size}} bytes", "42 bytes"),
            ("id=\\t{{.ID}}\\n", "id=\tabc\n"),
            ("  {{- .ID -}}  !", "abc!"),
            ("{{.Missing}}", "<no value>"),
            (
                "{{range .RepoTags}}[{{.}}]{{end}}",
                "[busybox:latest][bb:1]",
            ),
            ("{{range .Config.Labels}}{{.}},{{end}}", "2,1,"),
            ("{{range .Nothing}}x{{else}}none{{end}}", "none"),
            ("{{if .Config.User}}user{{else}}root{{end}}", "root"),
            (
                "{{if .Tag}}{{.Repository}}:{{.Tag}}{{end}}",
                "busybox:latest",
            ),
            (
                "{{with .Config}}{{json .Env}}{{end}}",
                r#"["A=1","B=\u003c2\u003e"]"#,
            ),
            (
                "{{range .RepoTags}}{{if .}}{{upper .}} {{end}}{{end}}",
                "BUSYBOX:LATEST BB:1 ",
            ),
            (
                "{{.}}",
                "map[Config:map[Env:[A=1 B=<2>] Labels:map[a:2 z:1] User:] ID:abc RepoTags:[busybox:latest bb:1] Repository:busybox Size:42 Tag:latest]",
            ),
            // Variables.
            ("{{$x := .ID}}[{{$x}}]", "[abc]"),
            ("{{$x := .ID}}{{$x = .Tag}}{{$x}}", "latest"),
            (
                "{{range $i, $t := .RepoTags}}{{$i}}={{$t}} {{end}}",
                "0=busybox:latest 1=bb:1 ",
            ),
            (
                "{{range $t := .RepoTags}}{{$t}};{{end}}",
                "busybox:latest;bb:1;",
            ),
            (
                "{{range $k, $v := .Config.Labels}}{{$k}}{{$v}}{{end}}",
                "a2z1",
            ),
            ("{{range .RepoTags}}{{$.ID}} {{end}}", "abc abc "),
            (
                "{{$.Config.User}}|{{with $c := .Config}}{{len $c.Env}}{{end}}",
                "|2",
            ),
            // printf and print.
            ("{{printf \"%s:%d\" .Tag .Size}}", "latest:42"),
            (
                "{{printf \"%-8s|%5d|%05d|%q\" .Tag .Size .Size .ID}}",
                "latest  |   42|00042|\"abc\"",
            ),
            (
                "{{printf \"%v %t %.2f %x\" .RepoTags true 1.5 255}}",
                "[busybox:latest bb:1] true 1.50 ff",
            ),
            ("{{printf \"%d\"}}", "%!d(MISSING)"),
            ("{{printf \"%s\" .Size}}", "%!s(int=42)"),
            ("{{printf \"x\" .ID}}", "x%!(EXTRA string=abc)"),
            ("{{print .Size 1 \"a\" \"b\"}}", "42 1ab"),
            ("{{println .ID .Size}}", "abc 42\n"),
            ("{{.ID | printf \"<%s>\"}}", "<abc>"),
            // Comparisons and logic.
            ("{{if eq .Tag \"latest\"}}yes{{else}}no{{end}}", "yes"),
            ("{{if eq .Tag \"x\" \"latest\"}}yes{{end}}", "yes"),
            ("{{if ne .Size 42}}x{{else}}same{{end}}", "same"),
            ("{{if lt .Size 100}}small{{end}}", "small"),
            (
                "{{if ge .Size 42}}{{if gt .Size 42}}big{{else}}exact{{end}}{{end}}",
                "exact",
            ),
            ("{{if le \"a\" \"b\"}}ab{{end}}", "ab"),
            ("{{if and .ID .Tag}}both{{end}}", "both"),
            ("{{or .Config.User \"root\"}}", "root"),
            ("{{and .ID .Config.User}}|", "|"),
            ("{{if not .Config.User}}no user{{end}}", "no user"),
            ("{{.Config.User | or \"dflt\"}}", "dflt"),
            ("{{len .RepoTags}} {{len .ID}}", "2 3"),
            ("{{if eq (len .RepoTags) 2}}two{{end}}", "two"),
            ("{{(index .RepoTags 0)}}", "busybox:latest"),
            ("{{(.Config).Env}}", "[A=1 B=<2>]"),
            (
                "{{if eq .Tag \"x\"}}x{{else if eq .Tag \"latest\"}}l{{else}}o{{end}}",
                "l",
            ),
            (
                "{{if eq .Tag \"x\"}}x{{else if eq .Tag \"y\"}}y{{else}}other{{end}}!",
                "other!",
            ),
            // docker's functions.
            ("{{split .Repository \"y\"}}", "[bus box]"),
            ("{{title \"hello world\"}}", "Hello World"),
            ("{{truncate .Repository 3}}", "bus"),
            ("{{pad .Tag 1 2}}|", " latest  |"),
            ("{{/* a comment */}}ok", "ok"),
        ];
        for (format, want) in cases {
            let t = Template::parse(format).unwrap_or_else(|e| panic!("{format}: {e:#}"));
            let got = t
                .render(&v, Missing::NoValue)
                .unwrap_or_else(|e| panic!("{format}: {e:#}"));
            assert_eq!(got, want, "case {format}");
        }
    }

    #[test]
    fn r10_format_errors() {
        let v = json!({"ID": "abc", "RepoTags": []});
        let cases = [
            ("{{define \"x\"}}{{end}}", "is not supported"),
            ("{{if .ID}}x", "has no {{end}}"),
            ("{{end}}", "unexpected {{end}}"),
            ("{{range .ID}}{{end}}", "range can't iterate over abc"),
            ("{{if eq .RepoTags \"x\"}}{{end}}", "non-comparable type"),
            (
                "{{if eq .ID 1}}{{end}}",
                "incompatible types for comparison",
            ),
            ("{{if lt true false}}{{end}}", "invalid type for comparison"),
            ("{{$y}}", "undefined variable: $y"),
            ("{{$y = 1}}", "undefined variable: $y"),
            ("{{(.ID}}", "unclosed left paren"),
            ("{{len .Nope}}", "len of type nil"),
            ("{{nope .ID}}", "function \"nope\" not defined"),
            ("{{.ID", "unclosed action"),
            ("{{.ID .ID}}", "can't give argument to non-function"),
        ];
        for (format, want) in cases {
            let err = Template::parse(format)
                .and_then(|t| t.render(&v, Missing::NoValue))
                .expect_err(format);
            assert!(format!("{err:#}").contains(want), "case {format}: {err:#}");
        }
        let t = Template::parse("{{index .RepoTags 0}}").unwrap();
        let err = t.render(&v, Missing::NoValue).unwrap_err();
        assert!(err.to_string().contains("index out of range: 0"), "{err}");
        let t = Template::parse("{{.Nope}}").unwrap();
        let err = t.render(&v, Missing::Error).unwrap_err();
        assert!(
            err.to_string().contains("can't evaluate field Nope"),
            "{err}"
        );
    }

    #[test]
    fn r10_format_table_header() {
        let t = Template::parse("table {{.Repository}}:{{.Tag}}\\t{{.ID}}\\t{{.Other}}").unwrap();
        assert!(t.table);
        assert_eq!(
            t.header(&[
                ("ID", "IMAGE ID"),
                ("Repository", "REPOSITORY"),
                ("Tag", "TAG")
            ]),
            "REPOSITORY:TAG\tIMAGE ID\tOTHER"
        );
    }
}
