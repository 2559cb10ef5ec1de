//! The syntax layer: physical lines to BuildKit's raw parse tree.
//!
//! This mirrors BuildKit's `frontend/dockerfile/parser` step for step:
//! parser directives, comments, continuation lines with the escape
//! character, the split of an instruction into name, `--flags` and
//! arguments, each instruction's argument shape (JSON array, whitespace
//! list, `key=value` words, one string) and heredoc bodies. Nothing here
//! knows what an instruction means; [`crate::instruction`] does that.
//!
//! The source is scanned once, line by line; each logical line is built in
//! one `String` and every node remembers where its pieces came from so a
//! later error can point at the exact flag or word.

use serde::Serialize;

use crate::error::{ErrorKind, ParseError, Span};
use crate::json;

/// The parser directives at the top of a Dockerfile.
///
/// See <https://docs.docker.com/reference/dockerfile/#parser-directives>.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Directives {
    /// `# syntax=` (the frontend image; hoist records but does not use it).
    pub syntax: Option<String>,
    /// `# escape=`: `\` (the default) or `` ` ``.
    pub escape: char,
    /// `# check=` (build-check configuration, recorded as written).
    pub check: Option<String>,
}

impl Default for Directives {
    fn default() -> Self {
        Self {
            syntax: None,
            escape: '\\',
            check: None,
        }
    }
}

/// One heredoc attached to a RUN, COPY or ADD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heredoc {
    /// The delimiter word with its quotes removed (`EOF` for `<<"EOF"`).
    pub name: String,
    /// The file descriptor before `<<` (`3<<EOF`), 0 when absent.
    pub fd: u32,
    /// False when any part of the delimiter was quoted: the body is then
    /// taken literally.
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from the body lines.
    pub chomp: bool,
    /// The body as written, every line with its newline; the delimiter line
    /// is not included. See [`Heredoc::body`] for the chomped text.
    pub content: String,
}

impl Heredoc {
    /// The body with `<<-`'s leading-tab stripping applied.
    pub fn body(&self) -> std::borrow::Cow<'_, str> {
        if !self.chomp {
            return std::borrow::Cow::Borrowed(&self.content);
        }
        let mut out = String::with_capacity(self.content.len());
        for line in self.content.split_inclusive('\n') {
            out.push_str(line.trim_start_matches('\t'));
        }
        std::borrow::Cow::Owned(out)
    }
}

/// An instruction as BuildKit's parser sees it, before any meaning is given
/// to it: the name, the raw flags and the argument values. This is what
/// `hoist debug ast` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    /// The instruction name as written (`run`, `RUN`, `Run`).
    pub name: String,
    /// The `--flags` with quotes and escapes removed, as BuildKit keeps them.
    pub flags: Vec<String>,
    /// The argument values (for ENV and LABEL: key, value, separator
    /// triples; for HEALTHCHECK: the type then the command).
    pub args: Vec<String>,
    /// ONBUILD's trigger instruction.
    pub child: Option<Box<Node>>,
    /// The arguments were a JSON array (exec form).
    pub json: bool,
    pub heredocs: Vec<Heredoc>,
    /// The logical line: continuation lines joined, escapes and comments
    /// removed (BuildKit's `Node.Original`).
    pub original: String,
    /// Where the instruction is, through the end of its last heredoc.
    pub span: Span,
    #[serde(skip)]
    pub(crate) map: LineMap,
    /// Where each flag is in `original` (start, end), and the arguments.
    #[serde(skip)]
    pub(crate) flag_offsets: Vec<(usize, usize)>,
    #[serde(skip)]
    pub(crate) args_offset: usize,
    /// The lower-case instruction name if known, else `""`.
    #[serde(skip)]
    pub(crate) keyword: &'static str,
}

impl Node {
    /// The span of `len` bytes at `offset` in [`Node::original`], mapped back
    /// to the source.
    pub fn span_of(&self, offset: usize, len: usize) -> Span {
        self.map.span(&self.original, offset, len)
    }

    /// The span of flag `index`, or of the instruction when there is none.
    pub(crate) fn flag_span(&self, index: usize) -> Span {
        match self.flag_offsets.get(index) {
            Some(&(start, end)) => self.span_of(start, end - start),
            None => self.name_span(),
        }
    }

    /// The span of the arguments' start.
    pub(crate) fn args_span(&self) -> Span {
        let rest = self.original.get(self.args_offset..).unwrap_or("");
        let len = rest.lines().next().map_or(0, |l| l.trim_end().len());
        self.span_of(self.args_offset, len)
    }

    /// The span of the instruction name.
    pub(crate) fn name_span(&self) -> Span {
        let lead = self.original.len() - self.original.trim_start().len();
        self.span_of(lead, self.name.len())
    }
}

/// Maps offsets in a logical line back to the source: one segment per
/// physical line that contributed text. Most instructions fit on one line,
/// so the first segment is kept inline and costs no allocation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LineMap {
    first: Option<Segment>,
    rest: Vec<Segment>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Segment {
    /// Offset of the segment in the logical line.
    joined: usize,
    /// Offset of the same byte in the source.
    source: usize,
    line: usize,
    /// Character column of `source`.
    column: usize,
    /// The segment's length in bytes.
    text_len: usize,
}

impl LineMap {
    fn push(&mut self, joined: usize, source: usize, line: usize, column: usize, text_len: usize) {
        let seg = Segment {
            joined,
            source,
            line,
            column,
            text_len,
        };
        if self.first.is_none() {
            self.first = Some(seg);
        } else {
            self.rest.push(seg);
        }
    }

    fn segments(&self) -> impl Iterator<Item = &Segment> {
        self.first.iter().chain(self.rest.iter())
    }

    /// `text` is the logical line, to count the characters before `offset`.
    fn span(&self, text: &str, offset: usize, len: usize) -> Span {
        let in_rest = self.rest.partition_point(|s| s.joined <= offset);
        let seg = match in_rest {
            0 => self.first.as_ref(),
            n => self.rest.get(n - 1),
        };
        let Some(seg) = seg else {
            return Span::default();
        };
        let within = (offset - seg.joined.min(offset)).min(seg.text_len);
        let chars = text
            .get(seg.joined..seg.joined + within)
            .map_or(within, |t| t.chars().count());
        Span {
            line: seg.line,
            column: seg.column + chars,
            offset: seg.source + within,
            len: len.min(seg.text_len - within),
        }
    }
}

/// Recomputes a span's column in characters (the map counts bytes).
pub(crate) fn char_column(source: &str, span: Span) -> Span {
    let Some(before) = source.get(..span.offset) else {
        return span;
    };
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let text = &before[line_start..];
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    Span {
        column: text.chars().count() + 1,
        ..span
    }
}

/// A non-fatal finding, like BuildKit's parser warnings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// Where BuildKit reports it (for an empty continuation line: the
    /// instruction's last line).
    pub span: Span,
    /// BuildKit's lint rule name (`NoEmptyContinuation`), or `""` for a
    /// finding of hoist's own.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub rule: &'static str,
    /// The text, in BuildKit's words where BuildKit has words for it.
    pub message: String,
}

impl std::fmt::Display for Warning {
    /// `line: Rule: message`, or `line: message` without a rule.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.span.line > 0 {
            write!(f, "{}: ", self.span.line)?;
        }
        if !self.rule.is_empty() {
            write!(f, "{}: ", self.rule)?;
        }
        f.write_str(&self.message)
    }
}

/// The raw parse tree of a Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ast {
    pub directives: Directives,
    pub nodes: Vec<Node>,
    pub warnings: Vec<Warning>,
}

/// Parses a Dockerfile into BuildKit's raw tree: no instruction is checked
/// beyond what BuildKit's parser checks (unknown instructions pass).
pub fn parse_ast(source: &str) -> Result<Ast, ParseError> {
    let mut nodes = Vec::new();
    let (directives, warnings) = parse_nodes(source, |node| {
        nodes.push(node);
        Ok(())
    })?;
    Ok(Ast {
        directives,
        nodes,
        warnings,
    })
}

/// The scanner behind [`parse_ast`]: hands each node to `emit` as soon as
/// it is complete.
pub(crate) fn parse_nodes(
    source: &str,
    mut emit: impl FnMut(Node) -> Result<(), ParseError>,
) -> Result<(Directives, Vec<Warning>), ParseError> {
    let mut lines = PhysicalLines::new(source);
    let mut dirs = DirectiveParser::default();
    let mut count = 0usize;
    let mut warnings = Vec::new();

    while let Some(first) = lines.next() {
        let raw = trim_newline(first.text);
        let token = raw.trim_start();
        let token_off = first.offset + (raw.len() - token.len());
        dirs.check(token, first.number, token_off, source)?;
        let token = if token.starts_with('#') { "" } else { token };
        let (mut more, body) = trim_continuation(token, dirs.escape);
        if !more && body.is_empty() {
            continue;
        }

        // Only whitespace precedes the token on its line.
        let line_start = if first.number == 1 { 0 } else { first.offset };
        let lead = source.get(line_start..token_off).unwrap_or("");
        let lead = lead.strip_prefix('\u{feff}').unwrap_or(lead);
        let start_span = Span {
            line: first.number,
            column: lead.chars().count() + 1,
            offset: token_off,
            len: 0,
        };
        let mut map = LineMap::default();
        map.push(0, token_off, first.number, start_span.column, body.len());
        let mut joined = String::from(body);
        let mut end = first.offset + raw.len();
        let mut last_line = (first.number, first.offset);
        let mut empty_continuation = false;
        while more {
            let Some(next) = lines.next() else { break };
            let raw = trim_newline(next.text);
            dirs.check(raw, next.number, next.offset, source)?;
            end = next.offset + raw.len();
            last_line = (next.number, next.offset);
            if raw.trim_start().starts_with('#') {
                continue;
            }
            if raw.trim_start().is_empty() {
                empty_continuation = true;
                continue;
            }
            let (m, body) = trim_continuation(raw, dirs.escape);
            more = m;
            map.push(joined.len(), next.offset, next.number, 1, body.len());
            joined.push_str(body);
        }

        if empty_continuation {
            // BuildKit HEAD's build check: its words ("Empty continuation
            // line", not the legacy parser's "... found in: LINE") and its
            // line, the instruction's last.
            let (line, offset) = last_line;
            warnings.push(Warning {
                span: Span {
                    line,
                    column: 1,
                    offset,
                    len: 0,
                },
                rule: "NoEmptyContinuation",
                message: "Empty continuation line".to_owned(),
            });
        }

        let mut node = node_from_line(joined, map, dirs.escape)
            .map_err(|e| fix_span(source, e).within(start_span))?;

        if node.can_contain_heredoc() && node.original.contains("<<") {
            let docs = heredocs_from_line(&node.original)
                .map_err(|kind| ParseError::new(start_span, kind))?;
            for (mut doc, at, len) in docs {
                let mut terminated = false;
                for body_line in lines.by_ref() {
                    end = body_line.offset + trim_newline(body_line.text).len();
                    let mut candidate = trim_newline(body_line.text);
                    if doc.chomp {
                        candidate = candidate.trim_start_matches('\t');
                    }
                    if candidate == doc.name {
                        terminated = true;
                        break;
                    }
                    doc.content.push_str(body_line.text);
                }
                if !terminated {
                    let span = char_column(source, node.span_of(at, len));
                    return Err(
                        ParseError::new(span, ErrorKind::UnterminatedHeredoc(doc.name))
                            .within(start_span),
                    );
                }
                node.heredocs.push(doc);
            }
        }

        node.span = Span {
            len: end.saturating_sub(start_span.offset),
            ..start_span
        };
        emit(node)?;
        count += 1;
    }

    if count == 0 {
        let offset = if source.starts_with('\u{feff}') { 3 } else { 0 };
        let span = Span {
            line: 1,
            column: 1,
            offset,
            len: 0,
        };
        return Err(ParseError::new(span, ErrorKind::NoInstructions));
    }

    Ok((dirs.into_directives(), warnings))
}

fn fix_span(source: &str, mut e: ParseError) -> ParseError {
    e.span = char_column(source, e.span);
    e
}

/// One physical line: its text including the line ending.
struct PhysicalLine<'a> {
    text: &'a str,
    offset: usize,
    number: usize,
}

struct PhysicalLines<'a> {
    source: &'a str,
    pos: usize,
    number: usize,
}

impl<'a> PhysicalLines<'a> {
    fn new(source: &'a str) -> Self {
        let pos = if source.starts_with('\u{feff}') { 3 } else { 0 };
        Self {
            source,
            pos,
            number: 0,
        }
    }
}

impl<'a> Iterator for PhysicalLines<'a> {
    type Item = PhysicalLine<'a>;

    fn next(&mut self) -> Option<PhysicalLine<'a>> {
        let rest = self.source.get(self.pos..).filter(|r| !r.is_empty())?;
        let len = rest.find('\n').map_or(rest.len(), |i| i + 1);
        let line = PhysicalLine {
            text: &rest[..len],
            offset: self.pos,
            number: self.number + 1,
        };
        self.pos += len;
        self.number += 1;
        Some(line)
    }
}

/// BuildKit's `trimNewline`: every trailing `\r` and `\n`.
fn trim_newline(s: &str) -> &str {
    s.trim_end_matches(['\r', '\n'])
}

/// BuildKit's continuation rule: the escape character, then only spaces and
/// tabs, at the end of the line, and not itself escaped. Returns whether the
/// line continues and the text before the escape.
fn trim_continuation(line: &str, escape: char) -> (bool, &str) {
    let trimmed = line.trim_end_matches([' ', '\t']);
    if let Some(before) = trimmed.strip_suffix(escape)
        && (before.is_empty() || !before.ends_with(escape))
    {
        return (true, before);
    }
    (false, line)
}

/// Recognises parser directives until the first line that is not one.
#[derive(Default)]
struct DirectiveParser {
    done: bool,
    syntax: Option<String>,
    escape_set: bool,
    escape: char,
    check: Option<String>,
}

impl DirectiveParser {
    fn check(
        &mut self,
        line: &str,
        number: usize,
        offset: usize,
        source: &str,
    ) -> Result<(), ParseError> {
        if self.escape == '\0' {
            self.escape = '\\';
        }
        if self.done {
            return Ok(());
        }
        let Some((key, value)) = directive(line) else {
            self.done = true;
            return Ok(());
        };
        let key = key.to_ascii_lowercase();
        let span = char_column(
            source,
            Span {
                line: number,
                column: 1,
                offset,
                len: line.len(),
            },
        );
        let seen = match key.as_str() {
            "syntax" => self.syntax.is_some(),
            "check" => self.check.is_some(),
            "escape" => self.escape_set,
            _ => {
                self.done = true;
                return Ok(());
            }
        };
        if seen {
            return Err(ParseError::new(span, ErrorKind::DuplicateDirective(key)));
        }
        match key.as_str() {
            "syntax" => self.syntax = Some(value.to_owned()),
            "check" => self.check = Some(value.to_owned()),
            _ => {
                self.escape = match value {
                    "\\" => '\\',
                    "`" => '`',
                    _ => {
                        return Err(ParseError::new(
                            span,
                            ErrorKind::InvalidEscape(value.to_owned()),
                        ));
                    }
                };
                self.escape_set = true;
            }
        }
        Ok(())
    }

    fn into_directives(self) -> Directives {
        Directives {
            syntax: self.syntax,
            escape: if self.escape == '\0' {
                '\\'
            } else {
                self.escape
            },
            check: self.check,
        }
    }
}

/// Go's regexp `\s`: ASCII whitespace without `\v`.
fn is_go_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0c')
}

/// `#` then `^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`, as BuildKit's
/// `DirectiveParser` matches it.
fn directive(line: &str) -> Option<(&str, &str)> {
    use nom::Parser;
    use nom::bytes::complete::{tag, take_while, take_while1};
    use nom::character::complete::satisfy;
    use nom::combinator::recognize;

    let rest = line.strip_prefix('#')?.trim_start();
    let mut key = recognize::<_, nom::error::Error<&str>, _>((
        satisfy(|c: char| c.is_ascii_alphabetic()),
        take_while(|c: char| c.is_ascii_alphanumeric()),
    ));
    let (rest, key): (&str, &str) = key.parse(rest).ok()?;
    let (rest, _) = (
        take_while(is_go_space),
        tag::<_, _, nom::error::Error<&str>>("="),
        take_while(is_go_space),
    )
        .parse(rest)
        .ok()?;
    let (_, value) = take_while1::<_, _, nom::error::Error<&str>>(|_| true)
        .parse(rest.trim_end_matches(is_go_space))
        .ok()?;
    Some((key, value))
}

/// BuildKit's `reWhitespace`: `[\t\v\f\r ]+`.
fn is_token_space(c: char) -> bool {
    matches!(c, '\t' | '\x0b' | '\x0c' | '\r' | ' ')
}

/// Splits a logical line into a [`Node`]: BuildKit's `newNodeFromLine`.
fn node_from_line(line: String, map: LineMap, escape: char) -> Result<Node, ParseError> {
    let lead = line.len() - line.trim_start().len();
    let trimmed = line.trim();
    let (name, rest_off) = match trimmed.find(is_token_space) {
        Some(i) => {
            let after = &trimmed[i..];
            let skip = after.len() - after.trim_start_matches(is_token_space).len();
            (&trimmed[..i], lead + i + skip)
        }
        None => (trimmed, lead + trimmed.len()),
    };
    let name = name.to_owned();
    let keyword = known_lowercase(&name);
    let rest = &line[rest_off.min(lead + trimmed.len())..lead + trimmed.len()];
    let extracted = extract_builder_flags(rest);
    let args_str_start = rest_off + extracted.rest_offset;
    let args_raw = &rest[extracted.rest_offset..];
    let args_trim_lead = args_raw.len() - args_raw.trim_start().len();
    let args = args_raw.trim();
    let args_offset = args_str_start + args_trim_lead;

    let mut node = Node {
        name,
        flags: extracted.flags,
        args: Vec::new(),
        child: None,
        json: false,
        heredocs: Vec::new(),
        original: String::new(),
        span: Span::default(),
        map,
        flag_offsets: extracted
            .offsets
            .iter()
            .map(|(start, end)| (rest_off + start, rest_off + end))
            .collect(),
        args_offset,
        keyword,
    };

    let lower = node.keyword;
    match lower {
        "add" | "copy" | "volume" => match json_or_err(&node, args)? {
            Some(list) => {
                node.args = list;
                node.json = true;
            }
            None => node.args = split_whitespace(args),
        },
        "cmd" | "entrypoint" | "run" | "shell" => {
            if !args.is_empty() {
                match json_or_err(&node, args)? {
                    Some(list) => {
                        node.args = list;
                        node.json = true;
                    }
                    None => node.args = vec![args.to_owned()],
                }
            }
        }
        "arg" => {
            node.args = parse_words(args, escape)
                .into_iter()
                .map(str::to_owned)
                .collect()
        }
        "env" | "label" => {
            node.args = parse_name_val(args, lower, escape).map_err(|(kind, at)| {
                let (start, len) = at.unwrap_or((0, args.len()));
                ParseError::new(node.span_of(args_offset + start, len), kind)
            })?;
        }
        "expose" | "from" => node.args = split_whitespace(args),
        "healthcheck" => {
            let sep = args.find(is_ascii_space).unwrap_or(args.len());
            if sep > 0 {
                let typ = &args[..sep];
                let cmd = args[sep..].trim_start_matches(is_ascii_space);
                node.args.push(typ.to_owned());
                if !cmd.is_empty() {
                    match json_or_err(&node, cmd)? {
                        Some(list) => {
                            node.args.extend(list);
                            node.json = true;
                        }
                        None => node.args.push(cmd.to_owned()),
                    }
                }
            }
        }
        "maintainer" | "stopsignal" | "user" | "workdir" => {
            if !args.is_empty() {
                node.args.push(args.to_owned());
            }
        }
        "onbuild" => {
            if !args.is_empty() {
                let mut child_map = LineMap::default();
                // The child's offsets are relative to `args`.
                for seg in node.map.segments() {
                    if seg.joined + seg.text_len <= args_offset {
                        continue;
                    }
                    let cut = args_offset.saturating_sub(seg.joined);
                    let column = seg.column
                        + line
                            .get(seg.joined..seg.joined + cut)
                            .map_or(cut, |t| t.chars().count());
                    child_map.push(
                        seg.joined + cut - args_offset,
                        seg.source + cut,
                        seg.line,
                        column,
                        seg.text_len - cut,
                    );
                }
                let child = node_from_line(args.to_owned(), child_map, escape)?;
                node.child = Some(Box::new(child));
            }
        }
        // Unknown instructions are BuildKit's `parseIgnore`: one empty value.
        _ => node.args.push(String::new()),
    }
    node.original = line;
    Ok(node)
}

/// The lower-case name of a known instruction, `""` for any other word.
/// (No allocation: this runs once per instruction.)
pub(crate) fn known_lowercase(name: &str) -> &'static str {
    const NAMES: &[&str] = &[
        "from",
        "run",
        "copy",
        "env",
        "arg",
        "cmd",
        "label",
        "workdir",
        "add",
        "entrypoint",
        "expose",
        "user",
        "volume",
        "onbuild",
        "healthcheck",
        "shell",
        "stopsignal",
        "maintainer",
    ];
    NAMES
        .iter()
        .copied()
        .find(|n| n.len() == name.len() && n.eq_ignore_ascii_case(name))
        .unwrap_or("")
}

/// Go's `unicode.IsSpace` on an ASCII byte, as `parseHealthConfig` uses it.
fn is_ascii_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

fn json_or_err(node: &Node, args: &str) -> Result<Option<Vec<String>>, ParseError> {
    json::parse_string_array(args).map_err(|_| {
        ParseError::new(
            node.span_of(node.args_offset, args.len()),
            ErrorKind::NotStringArray,
        )
    })
}

/// BuildKit's `parseStringsWhitespaceDelimited`.
fn split_whitespace(args: &str) -> Vec<String> {
    if args.is_empty() {
        return Vec::new();
    }
    args.split(is_token_space)
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

impl Node {
    /// BuildKit's `canContainHeredoc`: RUN, COPY and ADD in shell form,
    /// directly or as an ONBUILD trigger.
    fn can_contain_heredoc(&self) -> bool {
        let node = match &self.child {
            Some(child) if self.keyword == "onbuild" => child,
            _ => self,
        };
        matches!(node.keyword, "run" | "copy" | "add") && !node.json
    }
}

struct Extracted {
    flags: Vec<String>,
    /// Where each flag's raw text starts and ends in the input.
    offsets: Vec<(usize, usize)>,
    /// Where the arguments start in the input.
    rest_offset: usize,
}

/// BuildKit's `extractBuilderFlags`: leading words that start with `--`,
/// with quotes removed and `\` escapes applied; a bare `--` ends them.
fn extract_builder_flags(line: &str) -> Extracted {
    let mut out = Extracted {
        flags: Vec::new(),
        offsets: Vec::new(),
        rest_offset: line.len(),
    };
    let mut pos = 0;
    loop {
        let rest = &line[pos..];
        let trimmed = rest.trim_start();
        pos += rest.len() - trimmed.len();
        if trimmed.is_empty() {
            out.rest_offset = line.len();
            return out;
        }
        if !trimmed.starts_with("--") {
            out.rest_offset = pos;
            return out;
        }
        let end = trimmed
            .find(char::is_whitespace)
            .map_or(line.len(), |i| pos + i);
        let raw = &line[pos..end];
        // Most flags hold no quote or escape and are taken as they are.
        let (word, blank_ok, end) = if raw.contains(['\'', '"', '\\']) {
            flag_word(line, pos)
        } else {
            (raw.to_owned(), false, end)
        };
        if word == "--" {
            out.rest_offset = end;
            return out;
        }
        if blank_ok || !word.is_empty() {
            out.flags.push(word);
            out.offsets.push((pos, end));
        }
        pos = end;
    }
}

/// One flag word starting at `start`, quotes removed and `\` escapes
/// applied: its text, whether it held quotes, and where it ends.
fn flag_word(line: &str, start: usize) -> (String, bool, usize) {
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut blank_ok = false;
    let mut chars = line[start..].char_indices();
    while let Some((i, ch)) = chars.next() {
        match quote {
            None => match ch {
                c if c.is_whitespace() => return (word, blank_ok, start + i),
                '\'' | '"' => {
                    quote = Some(ch);
                    blank_ok = true;
                }
                '\\' => {
                    if let Some((_, next)) = chars.next() {
                        word.push(next);
                    }
                }
                _ => word.push(ch),
            },
            Some(q) => {
                if ch == q {
                    quote = None;
                } else if ch == '\\' {
                    match chars.next() {
                        Some((_, next)) => word.push(next),
                        None => quote = None,
                    }
                } else {
                    word.push(ch);
                }
            }
        }
    }
    (word, blank_ok, line.len())
}

/// BuildKit's `parseWords`: whitespace-separated words where quotes group
/// and are kept, and the escape character is kept with what it escapes.
///
/// Every character is kept except an escape at the very end, so each word
/// is a slice of `rest`.
pub(crate) fn parse_words(rest: &str, escape: char) -> Vec<&str> {
    let mut words = Vec::new();
    let mut start: Option<usize> = None;
    let mut quote: Option<char> = None;
    let mut blank_ok = false;
    let mut end_trim = 0;
    let mut chars = rest.char_indices();
    while let Some((i, ch)) = chars.next() {
        let Some(s) = start else {
            if ch.is_whitespace() {
                continue;
            }
            start = Some(i);
            if ch == '\'' || ch == '"' {
                quote = Some(ch);
                blank_ok = true;
            } else if ch == escape && chars.next().is_none() {
                end_trim = ch.len_utf8();
            }
            continue;
        };
        match quote {
            None => {
                if ch.is_whitespace() {
                    let word = &rest[s..i];
                    if blank_ok || !word.is_empty() {
                        words.push(word);
                    }
                    start = None;
                    blank_ok = false;
                    continue;
                }
                if ch == '\'' || ch == '"' {
                    quote = Some(ch);
                    blank_ok = true;
                } else if ch == escape && chars.next().is_none() {
                    end_trim = ch.len_utf8();
                }
            }
            Some(q) => {
                if ch == q {
                    quote = None;
                } else if ch == escape && q != '\'' && chars.next().is_none() {
                    end_trim = ch.len_utf8();
                    quote = None;
                }
            }
        }
    }
    if let Some(s) = start {
        let word = &rest[s..rest.len() - end_trim];
        if blank_ok || !word.is_empty() {
            words.push(word);
        }
    }
    words
}

/// BuildKit's `parseNameVal` for ENV and LABEL: `k=v ...` words, or the
/// legacy `key value` form where the value is the rest of the line.
/// An error comes with the offending word's place in `rest`, if any.
type NameValError = (ErrorKind, Option<(usize, usize)>);

fn parse_name_val(
    rest: &str,
    instruction: &str,
    escape: char,
) -> Result<Vec<String>, NameValError> {
    let words = parse_words(rest, escape);
    let Some(first) = words.first() else {
        return Ok(Vec::new());
    };
    if !first.contains('=') {
        let Some(i) = rest.find(is_token_space) else {
            let what = if instruction == "env" { "ENV" } else { "LABEL" };
            return Err((ErrorKind::TwoArguments(what), None));
        };
        let key = &rest[..i];
        let value = rest[i..].trim_start_matches(is_token_space);
        return Ok(vec![key.to_owned(), value.to_owned(), String::new()]);
    }
    let mut out = Vec::with_capacity(words.len() * 3);
    for word in words {
        let Some((key, value)) = word.split_once('=') else {
            // `word` is a slice of `rest`.
            let at = word.as_ptr() as usize - rest.as_ptr() as usize;
            return Err((
                ErrorKind::MissingEquals(word.to_owned()),
                Some((at, word.len())),
            ));
        };
        out.push(key.to_owned());
        out.push(value.to_owned());
        out.push("=".to_owned());
    }
    Ok(out)
}

/// The heredocs a RUN/COPY/ADD line opens, in order: BuildKit's
/// `heredocsFromLine`.
/// Each comes with the offset and length of its marker in `line`.
fn heredocs_from_line(line: &str) -> Result<Vec<(Heredoc, usize, usize)>, ErrorKind> {
    let Some(words) = raw_words(line) else {
        return Ok(Vec::new());
    };
    let mut docs = Vec::new();
    for word in words {
        if let Some(doc) = parse_heredoc(word)? {
            // `word` is a slice of `line`.
            let at = word.as_ptr() as usize - line.as_ptr() as usize;
            docs.push((doc, at, word.len()));
        }
    }
    Ok(docs)
}

/// A heredoc marker word, `^(\d*)<<(-?)([^<]*)$`, and its delimiter:
/// BuildKit's `ParseHeredoc`. `Ok(None)` when the word is no marker.
pub(crate) fn parse_heredoc(word: &str) -> Result<Option<Heredoc>, ErrorKind> {
    use nom::Parser;
    use nom::bytes::complete::{tag, take_while};
    use nom::combinator::opt;

    let marker = (
        take_while::<_, _, nom::error::Error<&str>>(|c: char| c.is_ascii_digit()),
        tag("<<"),
        opt(tag("-")),
    )
        .parse(word);
    let Ok((rest, (fd, _, dash))) = marker else {
        return Ok(None);
    };
    // `<<  EOF`: the lexer keeps the spaces after `<<` in the word.
    let rest = rest.trim_start_matches(is_go_space);
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let unquoted = unquote_words(rest)?;
    let [name] = unquoted.as_slice() else {
        return Ok(None);
    };
    let quotes = |s: &str| s.chars().filter(|c| matches!(c, '\'' | '"')).count();
    let raw = raw_words(rest).unwrap_or_default();
    let raw_quotes = raw.first().map_or(0, |w| quotes(w));
    Ok(Some(Heredoc {
        name: name.clone(),
        // Go's ParseUint error gives 0, as does overflow here.
        fd: fd.parse().unwrap_or(0),
        expand: quotes(name) == raw_quotes,
        chomp: dash.is_some(),
        content: String::new(),
    }))
}

/// Splits on unquoted whitespace, keeping quotes and escapes (the shell
/// lexer with raw quotes and raw escapes). `None` on an unterminated quote.
fn raw_words(line: &str) -> Option<Vec<&str>> {
    let mut words = Vec::new();
    let mut start = None;
    let mut quote: Option<char> = None;
    let mut braces = 0usize;
    let mut chars = line.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if start.is_none() {
            if c.is_whitespace() {
                continue;
            }
            start = Some(i);
        }
        match quote {
            Some('\'') => {
                if c == '\'' {
                    quote = None;
                }
            }
            Some(_) => match c {
                '"' => quote = None,
                '\\' => {
                    chars.next();
                }
                _ => {}
            },
            None => match c {
                '\'' | '"' => quote = Some(c),
                '\\' => {
                    chars.next();
                }
                '$' if chars.peek().is_some_and(|&(_, n)| n == '{') => {
                    chars.next();
                    braces += 1;
                }
                // BuildKit's lexer keeps `<<`, an optional `-` and the
                // whitespace after them in the word (`<< EOF`, `<<- EOF`).
                '<' if chars.peek().is_some_and(|&(_, n)| n == '<') => {
                    chars.next();
                    if chars.peek().is_some_and(|&(_, n)| n == '-') {
                        chars.next();
                    }
                    while chars.peek().is_some_and(|&(_, n)| n.is_whitespace()) {
                        chars.next();
                    }
                }
                '}' if braces > 0 => braces -= 1,
                c if c.is_whitespace() && braces == 0 => {
                    if let Some(s) = start.take() {
                        words.push(&line[s..i]);
                    }
                }
                _ => {}
            },
        }
    }
    if quote.is_some() {
        return None;
    }
    if let Some(s) = start {
        words.push(&line[s..]);
    }
    Some(words)
}

/// Splits and unquotes like the shell lexer without expansion: quotes are
/// removed, `\` escapes the next character outside single quotes. A word
/// that unquotes to nothing (`''`, `""`) is dropped, as BuildKit's lexer
/// drops it, so `<<''` is no heredoc marker.
fn unquote_words(s: &str) -> Result<Vec<String>, ErrorKind> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => loop {
                match chars.next() {
                    Some('\'') => break,
                    Some(c) => word.push(c),
                    None => {
                        return Err(ErrorKind::InvalidHeredoc(
                            "unexpected end of statement while looking for matching single-quote"
                                .into(),
                        ));
                    }
                }
            },
            '"' => loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => {
                        if let Some(n) = chars.next() {
                            word.push(n);
                        }
                    }
                    Some(c) => word.push(c),
                    None => {
                        return Err(ErrorKind::InvalidHeredoc(
                            "unexpected end of statement while looking for matching double-quote"
                                .into(),
                        ));
                    }
                }
            },
            '\\' => {
                if let Some(n) = chars.next() {
                    word.push(n);
                }
            }
            c if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => {
                word.push(c);
            }
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_rule() {
        let cases = [
            ("RUN a \\", true, "RUN a "),
            ("RUN a \\  \t", true, "RUN a "),
            ("RUN a \\\\", false, "RUN a \\\\"),
            ("\\", true, ""),
            ("RUN a", false, "RUN a"),
            ("RUN a\\ x", false, "RUN a\\ x"),
        ];
        for (line, more, body) in cases {
            assert_eq!(trim_continuation(line, '\\'), (more, body), "case {line:?}");
        }
        assert_eq!(trim_continuation("RUN a `", '`'), (true, "RUN a "));
    }

    #[test]
    fn directives() {
        let cases = [
            ("# escape=`", Some(("escape", "`"))),
            ("#ESCAPE = \\ ", Some(("ESCAPE", "\\"))),
            (
                "#  syntax=docker/dockerfile:1 ",
                Some(("syntax", "docker/dockerfile:1")),
            ),
            ("# a comment", None),
            ("# 1x=y", None),
            ("#x=", None),
        ];
        for (line, want) in cases {
            assert_eq!(directive(line), want, "case {line:?}");
        }
    }

    #[test]
    fn builder_flags() {
        let cases: [(&str, &[&str], &str); 6] = [
            ("--from=a b c", &["--from=a"], "b c"),
            ("--a='x y' --b \"q\"", &["--a=x y", "--b"], "\"q\""),
            ("-- --x y", &[], "--x y"),
            ("--a=1 -- b", &["--a=1"], "b"),
            ("--a", &["--a"], ""),
            ("a --b", &[], "a --b"),
        ];
        for (line, flags, rest) in cases {
            let e = extract_builder_flags(line);
            assert_eq!(e.flags, flags, "case {line:?}");
            assert_eq!(line[e.rest_offset..].trim(), rest, "case {line:?}");
        }
    }

    #[test]
    fn words() {
        let cases: [(&str, &[&str]); 5] = [
            ("a b", &["a", "b"]),
            ("a=\"x y\" b", &["a=\"x y\"", "b"]),
            ("a=x\\ y", &["a=x\\ y"]),
            ("a='x \\' b", &["a='x \\'", "b"]),
            ("a=\"\"", &["a=\"\""]),
        ];
        for (line, want) in cases {
            assert_eq!(parse_words(line, '\\'), want, "case {line:?}");
        }
    }

    #[test]
    fn heredoc_markers() {
        let cases = [
            ("<<EOF", Some(("EOF", 0, true, false))),
            ("<<-EOF", Some(("EOF", 0, true, true))),
            ("<<\"EOF\"", Some(("EOF", 0, false, false))),
            ("3<<'E O'", Some(("E O", 3, false, false))),
            ("<<E\"O\"F", Some(("EOF", 0, false, false))),
            ("<<", None),
            ("a<<EOF", None),
            ("<<EOF<", None),
            ("<< EOF", Some(("EOF", 0, true, false))),
            ("<<- EOF", Some(("EOF", 0, true, true))),
            ("<<  -EOF", Some(("-EOF", 0, true, false))),
            ("<<$EOF", Some(("$EOF", 0, true, false))),
            ("<<eo\\'f", Some(("eo'f", 0, true, false))),
            ("<<'e'o\\'f", Some(("eo'f", 0, false, false))),
            ("<<'one two'", Some(("one two", 0, false, false))),
            ("<<EOF sh", None),
            ("<<<EOF", None),
            ("<<-", None),
            ("<<''", None),
            ("<<\"\"", None),
            ("3<<-''", None),
        ];
        for (word, want) in cases {
            let got = parse_heredoc(word)
                .unwrap()
                .map(|h| (h.name, h.fd, h.expand, h.chomp));
            let want = want.map(|(n, f, e, c)| (n.to_owned(), f, e, c));
            assert_eq!(got, want, "case {word:?}");
        }
    }

    /// BuildKit's `TestHeredocsFromLine`.
    #[test]
    fn heredocs_in_lines() {
        let cases: [(&str, &[&str]); 11] = [
            ("RUN <<EOF", &["EOF"]),
            ("RUN <<-EOF", &["EOF"]),
            ("RUN <<- EOF", &["EOF"]),
            ("RUN << -EOF", &["-EOF"]),
            ("RUN <<'EOF'", &["EOF"]),
            ("RUN 4<<EOF", &["EOF"]),
            ("RUN <<EOF <<EOF2", &["EOF", "EOF2"]),
            ("RUN '<<EOF'", &[]),
            ("RUN \"<<EOF\"", &[]),
            ("RUN <<  EOF  > foo", &["EOF"]),
            ("RUN \\<<EOF", &[]),
        ];
        for (line, want) in cases {
            let got: Vec<String> = heredocs_from_line(line)
                .unwrap()
                .into_iter()
                .map(|(h, _, _)| h.name)
                .collect();
            assert_eq!(got, want, "case {line:?}");
        }
    }

    /// BuildKit's `TestParseWarnsOnEmptyContinutationLine`.
    #[test]
    fn warns_on_empty_continuation_lines() {
        let src = "\nFROM alpine:3.6\n\nRUN valid \\\n    continuation\n\nRUN something \\\n\n    following \\\n\n    more\n\nRUN another \\\n\n    thing\n\nRUN non-indented \\\n# this is a comment\n   after-comment\n\nRUN indented \\\n    # this is an indented comment\n    comment\n\t";
        let ast = parse_ast(src).unwrap();
        let got: Vec<(usize, &str)> = ast
            .warnings
            .iter()
            .map(|w| (w.span.line, w.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (11, "Empty continuation line"),
                (15, "Empty continuation line"),
            ]
        );
        assert_eq!(ast.nodes.len(), 6);
    }

    /// BuildKit's `TestParseWords`, plus unicode.
    #[test]
    fn words_like_buildkit() {
        let cases: [(&str, &[&str]); 8] = [
            ("foo", &["foo"]),
            ("foo bar", &["foo", "bar"]),
            ("foo\\ bar", &["foo\\ bar"]),
            ("foo=bar", &["foo=bar"]),
            ("foo bar 'abc xyz'", &["foo", "bar", "'abc xyz'"]),
            ("foo bar \"abc xyz\"", &["foo", "bar", "\"abc xyz\""]),
            ("àöû", &["àöû"]),
            ("föo bàr \"âbc xÿz\"", &["föo", "bàr", "\"âbc xÿz\""]),
        ];
        for (input, want) in cases {
            assert_eq!(parse_words(input, '\\'), want, "case {input:?}");
        }
    }

    /// Spans of instructions that continue over lines end on their last
    /// line (BuildKit's `TestParseIncludesLineNumbers`, by offsets).
    #[test]
    fn spans_cover_continuations_and_heredocs() {
        let src = "FROM a\n\nRUN x \\\n  y\nRUN <<E\nbody\nE\n";
        let ast = parse_ast(src).unwrap();
        let got: Vec<(usize, &str)> = ast
            .nodes
            .iter()
            .map(|n| (n.span.line, n.span.text(src)))
            .collect();
        assert_eq!(
            got,
            [(1, "FROM a"), (3, "RUN x \\\n  y"), (5, "RUN <<E\nbody\nE")]
        );
    }

    #[test]
    fn chomped_body() {
        let h = Heredoc {
            name: "E".into(),
            fd: 0,
            expand: true,
            chomp: true,
            content: "\t\ta\n\tb\n c\n".into(),
        };
        assert_eq!(h.body(), "a\nb\n c\n");
    }
}
