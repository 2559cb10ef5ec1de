//! The part of Go's text/template that `docker ... --format` users write:
//! field paths (`{{.ID}}`, `{{.Config.Env}}`, `{{.}}`), string and number
//! literals, the functions `json`, `index`, `join`, `upper`, `lower`,
//! pipes (`{{.Config | json}}`), `{{range}}`, `{{if}}` and `{{with}}` with
//! `{{else}}` and `{{end}}`, `{{- -}}` trimming, docker's `\t` and `\n`
//! escapes and its `table` prefix. Anything else (variables, `printf`,
//! comparisons) is refused with an error that says what is supported,
//! rather than printing something subtly different from docker.
//!
//! Values are JSON values, printed as Go prints the decoded JSON docker
//! falls back to: strings bare, lists as `[a b]`, objects as `map[k:v]`.

use anyhow::{Context, bail};
use serde_json::Value;

use crate::commands::images::go_json;

/// What the template language here supports, for error messages.
const SUPPORTED: &str = "hoist's --format supports field paths ({{.ID}}, {{.Config.Env}}), \
     string and number literals, pipes, range, if and with (with else and end), \
     and the functions json, index, join, upper and lower";

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
    Action(Vec<Command>),
    /// `range`, `if` or `with`, its pipeline, and the two branches.
    Block {
        kind: BlockKind,
        pipeline: Vec<Command>,
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

/// One command of a pipeline: a function and its arguments, or one operand.
#[derive(Debug)]
struct Command {
    args: Vec<Arg>,
}

#[derive(Debug, Clone)]
enum Arg {
    /// `.A.B` (empty for `.`).
    Field(Vec<String>),
    Str(String),
    Int(i64),
    Bool(bool),
    Function(String),
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
        render_nodes(&self.nodes, value, missing, &mut out)?;
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
                    let field = pipeline.iter().flat_map(|c| &c.args).find_map(|a| match a {
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

fn render_nodes(
    nodes: &[Node],
    dot: &Value,
    missing: Missing,
    out: &mut String,
) -> anyhow::Result<()> {
    for node in nodes {
        match node {
            Node::Text(text) => out.push_str(text),
            Node::Action(pipeline) => {
                let v = eval_pipeline(pipeline, dot, missing)?;
                out.push_str(&go_print(&v));
            }
            Node::Block {
                kind,
                pipeline,
                body,
                otherwise,
            } => {
                let v = eval_pipeline(pipeline, dot, missing)?;
                match kind {
                    BlockKind::Range => {
                        // Go ranges over a map in sorted key order.
                        let items: Vec<&Value> = match &v {
                            Value::Array(items) => items.iter().collect(),
                            Value::Object(map) => {
                                let mut keys: Vec<&String> = map.keys().collect();
                                keys.sort();
                                keys.into_iter().map(|k| &map[k]).collect()
                            }
                            Value::Null => Vec::new(),
                            other => bail!("range can't iterate over {}", go_print(other)),
                        };
                        if items.is_empty() {
                            render_nodes(otherwise, dot, missing, out)?;
                        }
                        for item in items {
                            render_nodes(body, item, missing, out)?;
                        }
                    }
                    BlockKind::If | BlockKind::With => {
                        if !truthy(&v) {
                            render_nodes(otherwise, dot, missing, out)?;
                        } else if *kind == BlockKind::With {
                            render_nodes(body, &v, missing, out)?;
                        } else {
                            render_nodes(body, dot, missing, out)?;
                        }
                    }
                }
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
    pipeline: Vec<Command>,
    body: Vec<Node>,
    otherwise: Option<Vec<Node>>,
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
        let (keyword, args) = match trimmed.split_once(char::is_whitespace) {
            Some((k, a)) => (k, a),
            None => (trimmed, ""),
        };
        match keyword {
            "range" | "if" | "with" => {
                let kind = match keyword {
                    "range" => BlockKind::Range,
                    "if" => BlockKind::If,
                    _ => BlockKind::With,
                };
                stack.push(Frame {
                    kind,
                    pipeline: parse_pipeline(args)?,
                    body: Vec::new(),
                    otherwise: None,
                });
            }
            "else" => {
                if !args.trim().is_empty() {
                    bail!("\"else {}\" is not supported: {SUPPORTED}", args.trim());
                }
                match stack.last_mut() {
                    Some(frame) if frame.otherwise.is_none() => frame.otherwise = Some(Vec::new()),
                    _ => bail!("unexpected {{{{else}}}}"),
                }
            }
            "end" => {
                let frame = stack.pop().context("unexpected {{end}}")?;
                let block = Node::Block {
                    kind: frame.kind,
                    pipeline: frame.pipeline,
                    body: frame.body,
                    otherwise: frame.otherwise.unwrap_or_default(),
                };
                target(&mut stack, &mut nodes).push(block);
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

fn parse_pipeline(action: &str) -> anyhow::Result<Vec<Command>> {
    let tokens = tokenize(action)?;
    if tokens.is_empty() {
        bail!("missing value for command");
    }
    let mut commands = Vec::new();
    for part in tokens.split(|t| matches!(t, Token::Pipe)) {
        let mut args = Vec::new();
        for token in part {
            args.push(match token {
                Token::Pipe => unreachable!("split on pipes"),
                Token::Str(s) => Arg::Str(s.clone()),
                Token::Word(w) => word(w)?,
            });
        }
        if args.is_empty() {
            bail!("missing command in pipeline {action:?}");
        }
        if args.len() > 1 && !matches!(args[0], Arg::Function(_)) {
            bail!("can't give argument to non-function in {action:?}");
        }
        commands.push(Command { args });
    }
    Ok(commands)
}

fn word(w: &str) -> anyhow::Result<Arg> {
    if w == "." {
        return Ok(Arg::Field(Vec::new()));
    }
    if let Some(path) = w.strip_prefix('.') {
        let parts: Vec<String> = path.split('.').map(str::to_owned).collect();
        if parts
            .iter()
            .any(|p| p.is_empty() || !p.chars().all(|c| c.is_alphanumeric() || c == '_'))
        {
            bail!("bad field path {w:?}");
        }
        return Ok(Arg::Field(parts));
    }
    if let Ok(n) = w.parse::<i64>() {
        return Ok(Arg::Int(n));
    }
    match w {
        "true" => return Ok(Arg::Bool(true)),
        "false" => return Ok(Arg::Bool(false)),
        _ => {}
    }
    if w.starts_with('$') || w.starts_with("/*") {
        bail!("{w:?} is not supported: {SUPPORTED}");
    }
    match w {
        "json" | "index" | "join" | "upper" | "lower" => Ok(Arg::Function(w.to_owned())),
        "range" | "if" | "with" | "else" | "end" | "define" | "template" | "block" | "len"
        | "printf" | "print" | "println" | "split" | "title" | "truncate" | "pad" | "and"
        | "or" | "not" | "eq" | "ne" | "lt" | "le" | "gt" | "ge" | "slice" | "call" | "html"
        | "js" | "urlquery" => bail!("{w:?} is not supported: {SUPPORTED}"),
        _ => bail!("function {w:?} not defined"),
    }
}

#[derive(Debug)]
enum Token {
    Word(String),
    Str(String),
    Pipe,
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
            '(' | ')' => bail!("parenthesised pipelines are not supported: {SUPPORTED}"),
            _ => {
                let mut w = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || c == '|' || c == '"' {
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

fn eval_pipeline(pipeline: &[Command], dot: &Value, missing: Missing) -> anyhow::Result<Value> {
    let mut piped: Option<Value> = None;
    for command in pipeline {
        let mut args = Vec::new();
        let (function, operands) = match &command.args[0] {
            Arg::Function(name) => (Some(name.as_str()), &command.args[1..]),
            _ => (None, &command.args[..]),
        };
        for arg in operands {
            args.push(eval_arg(arg, dot, missing)?);
        }
        if let Some(v) = piped.take() {
            args.push(v);
        }
        let value = match function {
            Some(name) => call(name, &args)?,
            None => {
                if args.len() > 1 {
                    bail!("can't give argument to non-function");
                }
                args.into_iter().next().unwrap_or(Value::Null)
            }
        };
        piped = Some(value);
    }
    Ok(piped.unwrap_or(Value::Null))
}

fn eval_arg(arg: &Arg, dot: &Value, missing: Missing) -> anyhow::Result<Value> {
    Ok(match arg {
        Arg::Str(s) => Value::String(s.clone()),
        Arg::Int(n) => Value::from(*n),
        Arg::Bool(b) => Value::Bool(*b),
        Arg::Function(name) => call(name, &[])?,
        Arg::Field(path) => {
            let mut v = dot;
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
            v.clone()
        }
    })
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
        "upper" | "lower" => {
            arity(1)?;
            let s = go_print(&args[0]);
            Ok(Value::String(if name == "upper" {
                s.to_uppercase()
            } else {
                s.to_lowercase()
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
            ("{{range $i, $t := .RepoTags}}{{end}}", "is not supported"),
            ("{{if .ID}}x", "has no {{end}}"),
            ("{{end}}", "unexpected {{end}}"),
            ("{{range .ID}}{{end}}", "range can't iterate over abc"),
            ("{{if eq .ID \"x\"}}{{end}}", "\"eq\" is not supported"),
            ("{{$x := .ID}}", "is not supported"),
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
