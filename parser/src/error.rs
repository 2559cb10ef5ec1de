//! Parse errors: a [`Span`] into the Dockerfile plus what went wrong.
//!
//! Messages follow BuildKit's wording where one exists (so users can search
//! for them) but are lowercase, as every hoist error is. `Display` gives
//! `line:col: message`; [`ParseError::render`] adds the file name, the
//! offending line and a caret under the column.

use serde::Serialize;

use crate::expand::ExpandError;

/// A region of the Dockerfile source.
///
/// `line` and `column` are 1-based; the column counts characters, not bytes.
/// `offset` and `len` are in bytes and always lie on character boundaries of
/// the source that was parsed (after the BOM, which is part of line 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub struct Span {
    pub line: usize,
    pub column: usize,
    pub offset: usize,
    pub len: usize,
}

impl Span {
    /// The byte range this span covers.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.len
    }

    /// The source text this span covers, or `""` when `source` is not the
    /// text the span was made from.
    pub fn text<'a>(&self, source: &'a str) -> &'a str {
        source.get(self.range()).unwrap_or("")
    }
}

/// Everything that can be wrong with a Dockerfile, from its syntax up to its
/// stage graph.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    #[error("file with no instructions")]
    NoInstructions,
    #[error("only one {0} parser directive can be used")]
    DuplicateDirective(String),
    #[error("invalid escape token '{0}' does not match ` or \\")]
    InvalidEscape(String),
    #[error("unknown instruction \"{name}\"{}", suggestion_suffix(suggestion.as_deref()))]
    UnknownInstruction {
        name: String,
        suggestion: Option<String>,
    },
    #[error("unterminated heredoc \"{0}\"")]
    UnterminatedHeredoc(String),
    #[error("invalid heredoc: {0}")]
    InvalidHeredoc(String),
    #[error("{0} cannot accept a heredoc as a destination")]
    HeredocAsDestination(&'static str),
    #[error("when using JSON array syntax, arrays must be comprised of strings only")]
    NotStringArray,
    #[error("{0} requires the arguments to be in JSON form")]
    NotJson(&'static str),

    #[error("unknown flag \"--{flag}\" for {instruction}{}", suggestion_suffix(suggestion.as_deref().map(|s| format!("--{s}")).as_deref()))]
    UnknownFlag {
        instruction: &'static str,
        flag: String,
        suggestion: Option<String>,
    },
    #[error("duplicate flag \"--{0}\"")]
    DuplicateFlag(String),
    #[error("missing a value on flag \"--{0}\"")]
    MissingFlagValue(String),
    #[error("expecting boolean value for flag \"--{flag}\", not: {value}")]
    InvalidBoolFlag { flag: String, value: String },
    #[error("invalid value for flag \"--{flag}\": {message}")]
    InvalidFlagValue { flag: String, message: String },
    #[error("invalid --mount: {0}")]
    InvalidMount(String),

    #[error("{0} requires at least one argument")]
    AtLeastOneArgument(&'static str),
    #[error("{0} requires exactly one argument")]
    ExactlyOneArgument(&'static str),
    #[error(
        "{0} requires at least two arguments, but only one was provided. destination could not be determined"
    )]
    NoDestination(&'static str),
    #[error("{0} must have two arguments")]
    TwoArguments(&'static str),
    #[error("syntax error - can't find = in {0:?}. must be of the form: name=value")]
    MissingEquals(String),
    #[error("{0} names can not be blank")]
    BlankName(&'static str),
    #[error("FROM requires either one or three arguments")]
    FromArguments,
    #[error(
        "invalid name for build stage: {0:?}, name can't start with a number or contain symbols"
    )]
    InvalidStageName(String),
    #[error("chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")]
    OnbuildChain,
    #[error("{0} isn't allowed as an ONBUILD trigger")]
    OnbuildTrigger(String),
    #[error("HEALTHCHECK NONE takes no arguments")]
    HealthcheckNoneArguments,
    #[error("missing command after HEALTHCHECK CMD")]
    HealthcheckMissingCommand,
    #[error("unknown type {0:?} in HEALTHCHECK (try CMD)")]
    HealthcheckType(String),
    #[error("VOLUME specified can not be an empty string")]
    EmptyVolume,

    #[error("{0}")]
    Expand(ExpandError),

    #[error("base name ({0}) should not be blank")]
    BlankBaseName(String),
    #[error("duplicate stage name {0:?}")]
    DuplicateStage(String),
    #[error("target stage {0:?} could not be found")]
    UnknownTarget(String),
    #[error("invalid stage index {0}")]
    InvalidStageIndex(String),
    #[error("circular dependency detected on stage: {0}")]
    Cycle(String),
    #[error("no stage to build: the Dockerfile has no FROM")]
    NoStages,
    #[error("{instruction} before the first FROM: only ARG may come before FROM")]
    BeforeFrom { instruction: String },
}

fn suggestion_suffix(suggestion: Option<&str>) -> String {
    match suggestion {
        Some(s) => format!(" (did you mean \"{s}\"?)"),
        None => String::new(),
    }
}

/// A Dockerfile error and where it is.
///
/// `Display` gives `line:col: message`, or just the message when the error
/// has no place in the file (line 0, e.g. an unknown `--target`). Like
/// BuildKit, the line is the instruction's first line when the error is on
/// a continuation line of it; [`ParseError::render`] still points at the
/// exact place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ParseError {
    /// The exact place (a flag, a word).
    pub span: Span,
    pub kind: ErrorKind,
    /// The start of the instruction holding `span`, when `span` is on a
    /// later line of it.
    pub start: Option<LineColumn>,
}

/// A place in the Dockerfile, 1-based (the column counts characters).
/// Kept small: every parse result carries room for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineColumn {
    pub line: u32,
    pub column: u32,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (line, column) = match self.start {
            Some(start) => (start.line as usize, start.column as usize),
            None => (self.span.line, self.span.column),
        };
        if line == 0 {
            return write!(f, "{}", self.kind);
        }
        write!(f, "{line}:{column}: {}", self.kind)
    }
}

impl ParseError {
    pub fn new(span: Span, kind: ErrorKind) -> Self {
        Self {
            span,
            kind,
            start: None,
        }
    }

    /// Records where the instruction holding the error starts, if the
    /// error is on a later line.
    pub fn within(mut self, instruction: Span) -> Self {
        if instruction.line > 0 && instruction.line < self.span.line {
            self.start = Some(LineColumn {
                line: u32::try_from(instruction.line).unwrap_or(u32::MAX),
                column: u32::try_from(instruction.column).unwrap_or(u32::MAX),
            });
        }
        self
    }

    /// The error as a user sees it: `file:line:col: message`, then the
    /// offending source line and a caret under the column.
    ///
    /// `source` must be the text that was parsed; when it is not (or the
    /// span falls outside it) only the first line is given.
    pub fn render(&self, file: &str, source: &str) -> String {
        if self.span.line == 0 {
            return format!("{file}: {self}");
        }
        let mut out = format!("{file}:{self}");
        if let Some(start) = self.start {
            // The instruction's lines up to the error (at most the five
            // before it), as BuildKit shows the instruction.
            let first = (start.line as usize).max(self.span.line.saturating_sub(5));
            let lines: Vec<&str> = source
                .strip_prefix('\u{feff}')
                .unwrap_or(source)
                .lines()
                .skip(first - 1)
                .take(self.span.line - first)
                .collect();
            for (i, line) in lines.iter().enumerate() {
                out.push_str(&format!("\n{:>5} | {line}", first + i));
            }
        }
        if let Some(snippet) = self.span.snippet(source) {
            out.push('\n');
            out.push_str(&snippet);
        }
        out
    }
}

impl Span {
    /// The span's first source line with a caret line under it, for
    /// messages about this span (parse errors, failed build steps).
    /// `None` when the span is not in `source`.
    pub fn snippet(&self, source: &str) -> Option<String> {
        if self.line == 0 {
            return None;
        }
        let line = line_containing(source, self.offset)?;
        let line = line.trim_end_matches(['\r', '\n']);
        // Tabs are kept so the caret lines up in a terminal as the line does.
        let pad: String = line
            .chars()
            .take(self.column.saturating_sub(1))
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        let width = self
            .text(source)
            .lines()
            .next()
            .map_or(1, |t| t.chars().count().max(1));
        Some(format!(
            "{:>5} | {line}\n      | {pad}{}",
            self.line,
            "^".repeat(width)
        ))
    }
}

/// The whole line holding byte `offset`, or `None` when it is out of range.
fn line_containing(source: &str, offset: usize) -> Option<&str> {
    if offset > source.len() || !source.is_char_boundary(offset) {
        return None;
    }
    let start = source[..offset].rfind('\n').map_or(0, |i| i + 1);
    let end = source[offset..]
        .find('\n')
        .map_or(source.len(), |i| offset + i);
    let line = &source[start..end];
    Some(line.strip_prefix('\u{feff}').unwrap_or(line))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_points_at_column() {
        let src = "FROM x\n  RUNN echo\n";
        let err = ParseError::new(
            Span {
                line: 2,
                column: 3,
                offset: 9,
                len: 4,
            },
            ErrorKind::UnknownInstruction {
                name: "RUNN".into(),
                suggestion: Some("RUN".into()),
            },
        );
        assert_eq!(
            err.render("Dockerfile", src),
            "Dockerfile:2:3: unknown instruction \"RUNN\" (did you mean \"RUN\"?)\n    2 |   RUNN echo\n      |   ^^^^"
        );
    }

    #[test]
    fn render_out_of_range_gives_message_only() {
        let err = ParseError::new(
            Span {
                line: 9,
                column: 1,
                offset: 999,
                len: 0,
            },
            ErrorKind::NoInstructions,
        );
        assert_eq!(
            err.render("Dockerfile", "x"),
            "Dockerfile:9:1: file with no instructions"
        );
    }
}
