//! Shell-style word expansion, a port of BuildKit's `shell.Lex`
//! (`frontend/dockerfile/shell/lex.go`): what Docker applies to the words of
//! ADD, COPY, ENV, EXPOSE, FROM, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR,
//! ARG, ONBUILD and flag values
//! (<https://docs.docker.com/reference/dockerfile/#environment-replacement>).
//!
//! Supported, with BuildKit's exact results and messages: `$V`, `${V}`,
//! `${V:-w}`, `${V-w}`, `${V:+w}`, `${V+w}`, `${V:?msg}`, `${V?msg}`,
//! `${V#p}`, `${V##p}`, `${V%p}`, `${V%%p}`, `${V/p/r}`, `${V//p/r}` (words
//! may nest expansions and quotes), single and double quotes, and the escape
//! character of the `# escape=` directive. Some BuildKit quirks a Docker user
//! can observe are kept on purpose:
//! - `$` before anything but a name or `{` stays literal (`$.`, `$ `, `$"x"`).
//! - `$1`, `$@`, `$#`, … are looked up like other names (usually unset).
//! - Patterns are the *expanded* word: quotes do not make `*` literal, only
//!   a backslash does (even when the escape character is a backtick), and a
//!   pattern that expands to `#x` in `${V#…}` selects the longest match.
//! - `?` and `*` never match a newline (Go's `.`).
//! - A byte order mark at the very start of a word is skipped (Go's
//!   text/scanner).
//! - `${V//p/r}` expands `$0`/`${0}`/`$$` in `r` (Go's `ReplaceAllString`);
//!   `${V/p/r}` inserts `r` literally.
//!
//! Deliberate differences, both on inputs no Dockerfile relies on:
//! - [`expand_words`] keeps the text before a nested `${V:-w}`. Current
//!   BuildKit's `ProcessWords` reuses one field buffer across nesting levels
//!   (an allocation optimisation) and so drops it: `ab${X:-c}d` gives
//!   `["cd"]`. We return `["abcd"]`, as earlier BuildKit did and as
//!   `ProcessWord`'s `abcd` implies.
//! - Substitutions nest at most [`MAX_NESTING`] levels deep, so no input can
//!   overflow the stack; Go's growable stacks have no such limit.
//! - A result larger than [`MAX_EXPANSION`] bytes is an error: nested
//!   `${V//p/r}` multiply sizes (`${V//?/${V//?/$V}}` is len(V)³ bytes),
//!   so a short word could otherwise exhaust memory.

mod glob;
mod unicode;

use unicode::{is_digit, is_letter};

/// How deeply `${…}` substitutions may nest inside each other's words.
pub const MAX_NESTING: usize = 128;

/// The largest expansion, in bytes, of a word or of any part of it (16 MiB;
/// Linux caps one argument or environment string at 128 KiB anyway).
pub const MAX_EXPANSION: usize = 16 << 20;

fn too_large_message() -> String {
    format!(
        "expansion result is larger than {} MiB",
        MAX_EXPANSION >> 20
    )
}

/// A word that cannot be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ExpandError {
    /// Byte offset in the word where the problem starts: the opening quote
    /// of an unterminated quote, or the `$` of the failing substitution.
    pub offset: usize,
    /// BuildKit's message, without its `failed to process "<word>": `
    /// prefix, e.g. `syntax error: bad substitution` or
    /// `VAR: is not allowed to be unset`.
    pub message: String,
}

/// Expands one word: variables substituted, quotes removed, escapes applied
/// (BuildKit's `ProcessWord`). `lookup` returns a variable's value, `None`
/// when it is unset; `escape` is the escape directive's character (`\` or
/// `` ` ``).
pub fn expand_word(
    word: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<String, ExpandError> {
    Lexer::new(word, lookup, escape).process_stop_on(None, false, None)
}

/// Expands and splits into fields on unquoted whitespace (BuildKit's
/// `ProcessWords`), for instructions that take several words. Whitespace
/// from a variable's value splits too; quoted or escaped whitespace does
/// not; empty fields are dropped.
pub fn expand_words(
    word: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<Vec<String>, ExpandError> {
    let mut fields = Fields::default();
    Lexer::new(word, lookup, escape).process_stop_on(None, false, Some(&mut fields))?;
    Ok(fields.finish())
}

/// Expands the body of a COPY/ADD heredoc whose delimiter is unquoted
/// (BuildKit's `ExpandRaw`): variables are substituted and `\` escapes
/// apply, but quotes are ordinary characters, since the body is file
/// content, not shell words.
pub fn expand_heredoc(
    body: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ExpandError> {
    let mut lexer = Lexer::new(body, lookup, '\\');
    lexer.skip_quotes = true;
    lexer.process_stop_on(None, false, None)
}

/// The scanner over one word (BuildKit's `shellWord`).
struct Lexer<'a> {
    src: &'a str,
    /// Byte offset of the next character.
    pos: usize,
    lookup: &'a dyn Fn(&str) -> Option<String>,
    escape: char,
    depth: usize,
    /// Quotes are plain characters (heredoc bodies).
    skip_quotes: bool,
}

impl<'a> Lexer<'a> {
    fn new(src: &'a str, lookup: &'a dyn Fn(&str) -> Option<String>, escape: char) -> Self {
        // Go's text/scanner skips a byte order mark at the very start.
        let pos = if src.starts_with('\u{FEFF}') {
            '\u{FEFF}'.len_utf8()
        } else {
            0
        };
        Self {
            src,
            pos,
            lookup,
            escape,
            depth: 0,
            skip_quotes: false,
        }
    }

    fn peek(&self) -> Option<char> {
        self.src
            .get(self.pos..)
            .and_then(|rest| rest.chars().next())
    }

    fn bump(&mut self) -> Option<char> {
        let ch = self.peek()?;
        self.pos += ch.len_utf8();
        Some(ch)
    }

    fn error(offset: usize, message: impl Into<String>) -> ExpandError {
        ExpandError {
            offset,
            message: message.into(),
        }
    }

    /// Substitutions are the only way a result outgrows its word; `start`
    /// is the `$` of the one that would make `result` too large.
    fn check_size(result: &str, value: &str, start: usize) -> Result<(), ExpandError> {
        if result.len().saturating_add(value.len()) > MAX_EXPANSION {
            return Err(Self::error(start, too_large_message()));
        }
        Ok(())
    }

    /// Processes up to `stop` (consumed) or the end of the word (`stop` is
    /// `None`). `raw` keeps escape characters in the result, as BuildKit
    /// does for patterns and replacements so `\*` can reach the pattern
    /// compiler. `fields` collects the split words at the top level.
    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw: bool,
        mut fields: Option<&mut Fields>,
    ) -> Result<String, ExpandError> {
        let mut result = String::new();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.bump();
                return Ok(result);
            }
            match ch {
                '$' => {
                    let start = self.pos;
                    let value = self.dollar()?;
                    Self::check_size(&result, &value, start)?;
                    if let Some(fields) = fields.as_deref_mut() {
                        fields.add_str(&value);
                    }
                    result.push_str(&value);
                }
                '\'' | '"' if !self.skip_quotes => {
                    let value = if ch == '\'' {
                        self.single_quote()?
                    } else {
                        self.double_quote(raw)?
                    };
                    if let Some(fields) = fields.as_deref_mut() {
                        fields.add_raw_str(&value);
                    }
                    result.push_str(&value);
                }
                _ => {
                    self.bump();
                    let mut ch = ch;
                    if ch == self.escape {
                        if raw {
                            if let Some(fields) = fields.as_deref_mut() {
                                fields.add_raw_char(ch);
                            }
                            result.push(ch);
                        }
                        // An escape at the end of the word is dropped.
                        let Some(escaped) = self.bump() else { break };
                        ch = escaped;
                        if let Some(fields) = fields.as_deref_mut() {
                            fields.add_raw_char(ch);
                        }
                    } else if let Some(fields) = fields.as_deref_mut() {
                        fields.add_char(ch);
                    }
                    result.push(ch);
                }
            }
        }
        match stop {
            // Only nested calls have a stop character, and `nested` turns
            // this into BuildKit's "missing" message at the `$`.
            Some(stop) => Err(Self::error(
                self.pos,
                format!("unexpected end of statement while looking for matching {stop}"),
            )),
            None => Ok(result),
        }
    }

    /// `'…'`: everything literal up to the next single quote.
    fn single_quote(&mut self) -> Result<String, ExpandError> {
        let start = self.pos;
        self.bump();
        let mut result = String::new();
        loop {
            match self.bump() {
                None => {
                    return Err(Self::error(
                        start,
                        "unexpected end of statement while looking for matching single-quote",
                    ));
                }
                Some('\'') => return Ok(result),
                Some(ch) => result.push(ch),
            }
        }
    }

    /// `"…"`: literal except `$` substitutions; the escape character
    /// escapes only `"`, `$` and itself and is kept before anything else.
    fn double_quote(&mut self, raw: bool) -> Result<String, ExpandError> {
        let start = self.pos;
        self.bump();
        let mut result = String::new();
        loop {
            match self.peek() {
                None => {
                    return Err(Self::error(
                        start,
                        "unexpected end of statement while looking for matching double-quote",
                    ));
                }
                Some('"') => {
                    self.bump();
                    return Ok(result);
                }
                Some('$') => {
                    let dollar = self.pos;
                    let value = self.dollar()?;
                    Self::check_size(&result, &value, dollar)?;
                    result.push_str(&value);
                }
                Some(mut ch) => {
                    self.bump();
                    if ch == self.escape {
                        if raw {
                            result.push(ch);
                        }
                        match self.peek() {
                            // The loop then reports the missing quote.
                            None => continue,
                            Some(next) if next == '"' || next == '$' || next == self.escape => {
                                self.bump();
                                ch = next;
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    /// Processes a nested word of a `${…}` that started at `start`; an
    /// error that leaves the scanner at the end of the word becomes
    /// `missing` (BuildKit reports the unclosed `${`, not the inner cause).
    fn nested(
        &mut self,
        start: usize,
        stop: char,
        raw: bool,
        missing: &str,
    ) -> Result<String, ExpandError> {
        if self.depth >= MAX_NESTING {
            return Err(Self::error(
                start,
                format!("syntax error: substitutions nested more than {MAX_NESTING} levels deep"),
            ));
        }
        self.depth += 1;
        let result = self.process_stop_on(Some(stop), raw, None);
        self.depth -= 1;
        result.map_err(|err| {
            if self.peek().is_none() {
                Self::error(start, missing)
            } else {
                err
            }
        })
    }

    fn get_env(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
    }

    /// `$name`, `${name}` and `${name<modifier>…}`, with the scanner on `$`.
    fn dollar(&mut self) -> Result<String, ExpandError> {
        let start = self.pos;
        self.bump();
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".to_owned());
            }
            return Ok(self.get_env(name).unwrap_or_default());
        }
        self.bump();
        match self.peek() {
            None => return Err(Self::error(start, "syntax error: missing '}'")),
            Some('{' | '}' | ':') => {
                return Err(Self::error(start, "syntax error: bad substitution"));
            }
            Some(_) => {}
        }
        let name = self.name();
        let unsupported = |modifier: &str| {
            Self::error(
                start,
                format!("unsupported modifier ({modifier}) in substitution"),
            )
        };
        // Go formats the end of input (rune -1) as U+FFFD.
        let mut modifier = String::from(self.peek().unwrap_or('\u{FFFD}'));
        match self.bump() {
            Some('}') => Ok(self.get_env(name).unwrap_or_default()),
            Some(first @ (':' | '+' | '-' | '?' | '#' | '%')) => {
                let null_is_unset = first == ':';
                let op = if null_is_unset {
                    let op = self.bump();
                    modifier.push(op.unwrap_or('\u{FFFD}'));
                    op
                } else {
                    Some(first)
                };
                let raw = matches!(op, Some('#' | '%'));
                if null_is_unset && raw {
                    return Err(unsupported(&modifier));
                }
                let word = self.nested(start, '}', raw, "syntax error: missing '}'")?;
                let value = self.get_env(name);
                match op {
                    Some('-') => Ok(match value {
                        Some(value) if !(null_is_unset && value.is_empty()) => value,
                        _ => word,
                    }),
                    Some('+') => Ok(match value {
                        Some(value) if !(null_is_unset && value.is_empty()) => word,
                        _ => String::new(),
                    }),
                    Some('?') => match value {
                        None => Err(Self::error(
                            start,
                            format!(
                                "{name}: {}",
                                or_default(&word, "is not allowed to be unset")
                            ),
                        )),
                        Some(value) if null_is_unset && value.is_empty() => Err(Self::error(
                            start,
                            format!(
                                "{name}: {}",
                                or_default(&word, "is not allowed to be empty")
                            ),
                        )),
                        Some(value) => Ok(value),
                    },
                    Some(op @ ('#' | '%')) => {
                        // `##`/`%%` (longest match) is decided on the expanded word.
                        let (greedy, pattern) = match word.strip_prefix(op) {
                            Some(rest) => (true, rest),
                            None => (false, word.as_str()),
                        };
                        let value = value.unwrap_or_default();
                        let trimmed = if op == '%' {
                            glob::trim_suffix(pattern, &value, greedy)
                        } else {
                            glob::trim_prefix(pattern, &value, greedy)
                        };
                        trimmed.map_err(|message| Self::error(start, message))
                    }
                    _ => Err(unsupported(&modifier)),
                }
            }
            Some('/') => {
                let all = self.peek() == Some('/');
                if all {
                    self.bump();
                }
                let pattern = self.nested(start, '/', true, "syntax error: missing '/' in ${}")?;
                let replacement = self.nested(start, '}', true, "syntax error: missing '}'")?;
                let value = self.get_env(name).unwrap_or_default();
                glob::replace(&value, &pattern, &replacement, all)
                    .map_err(|message| Self::error(start, message))
            }
            _ => Err(unsupported(&modifier)),
        }
    }

    /// A variable name: a run of digits, one special parameter character
    /// (`@*#?-$!0`), or letters, digits and `_` (Unicode, as Go's
    /// `unicode.IsLetter`/`IsDigit`). Empty when none of these follows.
    fn name(&mut self) -> &'a str {
        let src = self.src;
        let start = self.pos;
        match self.peek() {
            Some(c) if is_digit(c) => {
                while self.peek().is_some_and(is_digit) {
                    self.bump();
                }
            }
            Some('@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') => {
                self.bump();
            }
            _ => {
                while self
                    .peek()
                    .is_some_and(|c| is_letter(c) || is_digit(c) || c == '_')
                {
                    self.bump();
                }
            }
        }
        src.get(start..self.pos).unwrap_or_default()
    }
}

fn or_default<'s>(word: &'s str, default: &'s str) -> &'s str {
    if word.is_empty() { default } else { word }
}

/// The fields of [`expand_words`] (BuildKit's `wordsStruct`): unquoted
/// whitespace ends a field, quoted text and escaped characters never do.
#[derive(Debug, Default)]
struct Fields {
    words: Vec<String>,
    word: String,
    in_word: bool,
}

impl Fields {
    /// Go's `unicode.IsSpace` is the Unicode White_Space property, as is
    /// `char::is_whitespace`.
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.word.push(ch);
        self.in_word = true;
    }

    fn add_str(&mut self, s: &str) {
        for ch in s.chars() {
            self.add_char(ch);
        }
    }

    fn add_raw_str(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(self.word);
        }
        self.words
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heredoc_bodies_expand_variables_but_keep_quotes() {
        let lookup = |name: &str| (name == "NAME").then(|| "world".to_owned());
        for (body, expected) in [
            ("hello $NAME\n", "hello world\n"),
            ("'$NAME' \"${NAME}\"\n", "'world' \"world\"\n"),
            ("\\$NAME costs \\$5\n", "$NAME costs $5\n"),
            ("${MISSING:-default} $MISSING.\n", "default .\n"),
            ("it's \"open\n", "it's \"open\n"),
        ] {
            assert_eq!(expand_heredoc(body, &lookup).unwrap(), expected, "{body:?}");
        }
    }
    use std::collections::HashMap;

    /// One row of testdata/expand/cases.txt.
    #[derive(Debug)]
    struct Case {
        line: usize,
        raw: String,
        words: bool,
        escape: char,
        word: String,
        env: HashMap<String, String>,
        expected: Expected,
    }

    #[derive(Debug, PartialEq)]
    enum Expected {
        Word(String),
        Words(Vec<String>),
        Error { offset: usize, message: String },
    }

    /// Replaces the placeholders cases.txt uses for characters a line
    /// cannot show or that the format reserves.
    fn unescape(field: &str) -> String {
        let mut out = String::with_capacity(field.len());
        let mut rest = field;
        while let Some(open) = rest.find('<') {
            out.push_str(&rest[..open]);
            rest = &rest[open..];
            let close = rest.find('>').map_or(rest.len(), |i| i + 1);
            let token = &rest[..close];
            match token {
                "<nl>" => out.push('\n'),
                "<tab>" => out.push('\t'),
                "<sp>" => out.push(' '),
                "<bar>" => out.push('|'),
                "<comma>" => out.push(','),
                "<semi>" => out.push(';'),
                "<empty>" => {}
                _ => match token
                    .strip_prefix("<U+")
                    .and_then(|hex| hex.strip_suffix('>'))
                    .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                    .and_then(char::from_u32)
                {
                    Some(c) => out.push(c),
                    None => {
                        // Not a placeholder: a literal `<`.
                        out.push('<');
                        rest = &rest[1..];
                        continue;
                    }
                },
            }
            rest = &rest[close..];
        }
        out.push_str(rest);
        out
    }

    fn parse_cases(text: &str) -> Vec<Case> {
        let mut cases = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line_no = index + 1;
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let parts: Vec<&str> = line.split(" | ").collect();
            assert_eq!(
                parts.len(),
                3,
                "cases.txt:{line_no}: want `word | env | expected`: {line}"
            );
            let mut word = parts[0].trim();
            let mut words = false;
            let mut escape = '\\';
            loop {
                if let Some(rest) = word.strip_prefix("words:") {
                    words = true;
                    word = rest;
                } else if let Some(rest) = word.strip_prefix("escape=`:") {
                    escape = '`';
                    word = rest;
                } else {
                    break;
                }
            }
            let env_field = parts[1].trim();
            let env = if env_field == "-" {
                HashMap::new()
            } else {
                env_field
                    .split(';')
                    .map(|pair| {
                        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                        (unescape(k.trim()), unescape(v))
                    })
                    .collect()
            };
            let expected_field = parts[2].trim();
            let expected = if let Some(rest) = expected_field.strip_prefix("error@") {
                let (offset, message) = rest
                    .split_once(": ")
                    .unwrap_or_else(|| panic!("cases.txt:{line_no}: bad error"));
                Expected::Error {
                    offset: offset
                        .parse()
                        .unwrap_or_else(|e| panic!("cases.txt:{line_no}: {e}")),
                    message: unescape(message),
                }
            } else if words {
                if expected_field == "<none>" {
                    Expected::Words(Vec::new())
                } else {
                    Expected::Words(expected_field.split(',').map(unescape).collect())
                }
            } else {
                Expected::Word(unescape(expected_field))
            };
            cases.push(Case {
                line: line_no,
                raw: line.to_owned(),
                words,
                escape,
                word: unescape(word),
                env,
                expected,
            });
        }
        cases
    }

    fn run(case: &Case) -> Expected {
        let lookup = |name: &str| case.env.get(name).cloned();
        let to_expected = |err: ExpandError| Expected::Error {
            offset: err.offset,
            message: err.message,
        };
        if case.words {
            expand_words(&case.word, &lookup, case.escape).map_or_else(to_expected, Expected::Words)
        } else {
            expand_word(&case.word, &lookup, case.escape).map_or_else(to_expected, Expected::Word)
        }
    }

    #[test]
    fn cases_table() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/expand/cases.txt");
        let text = std::fs::read_to_string(path).expect("read cases.txt");
        let cases = parse_cases(&text);
        assert!(cases.len() >= 80, "cases.txt has only {} rows", cases.len());
        let mut failures = Vec::new();
        for case in &cases {
            let got = run(case);
            if got != case.expected {
                failures.push(format!(
                    "cases.txt:{}: {}\n    want {:?}\n    got  {:?}",
                    case.line, case.raw, case.expected, got
                ));
            }
            // The word and words forms must agree on errors.
            let lookup = |name: &str| case.env.get(name).cloned();
            let word = expand_word(&case.word, &lookup, case.escape);
            let words = expand_words(&case.word, &lookup, case.escape);
            assert_eq!(
                word.as_ref().err(),
                words.as_ref().err(),
                "cases.txt:{}: {}",
                case.line,
                case.raw
            );
        }
        assert!(
            failures.is_empty(),
            "{} of {} rows failed:\n{}",
            failures.len(),
            cases.len(),
            failures.join("\n")
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let lookup = |_: &str| None;
        let depth = MAX_NESTING + 1;
        let word = "${A:-".repeat(depth) + "x" + &"}".repeat(depth);
        let err = expand_word(&word, &lookup, '\\').expect_err("too deep");
        assert_eq!(err.offset, MAX_NESTING * 5, "{err}");
        assert!(err.message.contains("nested more than"), "{err}");
        let ok = "${A:-".repeat(MAX_NESTING) + "x" + &"}".repeat(MAX_NESTING);
        assert_eq!(expand_word(&ok, &lookup, '\\').as_deref(), Ok("x"));
        // Deeper than the limit and unclosed: the limit is hit first.
        let open = "${A:-".repeat(100_000);
        let err = expand_word(&open, &lookup, '\\').expect_err("unclosed");
        assert_eq!(err.offset, MAX_NESTING * 5, "{err}");
        // Unclosed within the limit: reported at the outermost `${`.
        let open = "${A:-".repeat(MAX_NESTING);
        let err = expand_word(&open, &lookup, '\\').expect_err("unclosed");
        assert_eq!(
            (err.offset, err.message.as_str()),
            (0, "syntax error: missing '}'")
        );
    }

    #[test]
    fn nested_replace_all_cannot_exhaust_memory() {
        let value = "v".repeat(300);
        let lookup = |_: &str| Some(value.clone());
        // 300² bytes fit; 300³ pass the limit.
        let err = expand_word("${V//?/${V//?/$V}}", &lookup, '\\').expect_err("too big");
        assert_eq!(
            (err.offset, err.message.as_str()),
            (0, "expansion result is larger than 16 MiB")
        );
        let ok = expand_word("${V//?/$V}", &lookup, '\\').map(|s| s.len());
        assert_eq!(ok, Ok(300 * 300));
        // Many substitutions, each small enough, together too large.
        let word = "${V//?/$V}".repeat(MAX_EXPANSION / (300 * 300) + 1);
        let err = expand_word(&word, &lookup, '\\').expect_err("too big");
        assert_eq!(err.offset % "${V//?/$V}".len(), 0, "{err:?}");
        let err = expand_word(&format!("\"{word}\""), &lookup, '\\').expect_err("too big");
        assert_eq!(err.offset % "${V//?/$V}".len(), 1, "{err:?}");
    }

    #[test]
    fn lookup_receives_exact_names() {
        // (word, names looked up in order)
        for (word, want) in [
            ("$A$1x$@${#}", &["A", "1", "@", "#"][..]),
            ("${A_b9}$9abc", &["A_b9", "9"][..]),
            ("$한국어x $ab\u{0301}", &["한국어x", "ab"][..]),
            ("${V:-$W}", &["W", "V"][..]),
        ] {
            let seen = std::cell::RefCell::new(Vec::new());
            let lookup = |name: &str| {
                seen.borrow_mut().push(name.to_owned());
                None
            };
            expand_word(word, &lookup, '\\').expect("expands");
            assert_eq!(*seen.borrow(), want, "word {word:?}");
        }
    }

    #[test]
    fn fuzz_crashes_replay() {
        // Inputs the `expand` fuzz target once failed on, in its input
        // format (see `check_fuzz_input`); README.md files are skipped.
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/fuzz/expand");
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{dir}: {e}"));
        for entry in entries {
            let path = entry.expect("read dir entry").path();
            if path.extension().is_some_and(|ext| ext == "md") {
                continue;
            }
            let data = std::fs::read(&path).expect("read crash input");
            check_fuzz_input(&data).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    }

    /// The invariants fuzz/fuzz_targets/expand.rs checks, on its input
    /// format: byte 0 holds flags (bit 0: backtick escape); the rest, when
    /// UTF-8, is the word, then NUL-separated `KEY=VALUE` entries.
    fn check_fuzz_input(data: &[u8]) -> Result<(), String> {
        let Some((&flags, rest)) = data.split_first() else {
            return Ok(());
        };
        let Ok(text) = std::str::from_utf8(rest) else {
            return Ok(());
        };
        let mut parts = text.split('\0');
        let word = parts.next().unwrap_or_default();
        let env: HashMap<&str, &str> = parts
            .map(|entry| entry.split_once('=').unwrap_or((entry, "")))
            .collect();
        let lookup = |name: &str| env.get(name).map(|v| (*v).to_owned());
        let escape = if flags & 1 == 0 { '\\' } else { '`' };
        let word_result = expand_word(word, &lookup, escape);
        let words_result = expand_words(word, &lookup, escape);
        match (&word_result, &words_result) {
            (Err(err), _) if err.offset > word.len() || !word.is_char_boundary(err.offset) => {
                return Err(format!(
                    "offset {} is not a char boundary of {word:?}",
                    err.offset
                ));
            }
            (Ok(expanded), Ok(fields)) => {
                let joined: usize = fields.iter().map(String::len).sum();
                if fields.iter().any(String::is_empty) || joined > expanded.len() {
                    return Err(format!("fields {fields:?} do not fit {expanded:?}"));
                }
            }
            _ => {}
        }
        if word_result.as_ref().err() != words_result.as_ref().err() {
            return Err(format!("word {word_result:?} vs words {words_result:?}"));
        }
        Ok(())
    }
}
