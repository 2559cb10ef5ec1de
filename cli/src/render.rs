//! Reading a Dockerfile and showing its errors: `file:line:col: message`,
//! the offending line and a caret. `hoist build` uses the same functions
//! so parse errors look alike everywhere.

use std::io::Read;
use std::path::Path;

use anyhow::Context;
use hoist_parser::ParseError;

/// A Dockerfile's text and the name to show in messages.
pub struct Source {
    pub name: String,
    pub text: String,
    /// The line of the first byte that was not UTF-8, when there was one.
    pub not_utf8: Option<usize>,
}

impl Source {
    /// The parser's warnings, and a note when the file was not UTF-8, as
    /// `warning: FILE:LINE: ...` lines on stderr.
    pub fn print_warnings(&self, warnings: &[hoist_parser::Warning]) {
        if let Some(line) = self.not_utf8 {
            eprintln!(
                "warning: {}:{line}: the Dockerfile is not valid UTF-8; \
                 RUN gets its bytes unchanged, messages show them as U+FFFD",
                self.name
            );
        }
        for warning in warnings {
            let warning = warning.to_string();
            eprintln!(
                "warning: {}:{}",
                self.name,
                hoist_parser::bytes::lossy(&warning)
            );
        }
    }
}

/// Reads `path` (`-` for stdin). BuildKit reads a Dockerfile byte-wise, so
/// one that is not UTF-8 (a Latin-1 or GBK comment) is accepted: each
/// invalid byte is carried through the parse ([`hoist_parser::bytes`]), RUN
/// gets it unchanged, messages show U+FFFD, and [`Source::not_utf8`] says
/// where the first one was.
pub fn read_dockerfile(path: &Path) -> anyhow::Result<Source> {
    let (name, bytes) = if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin()
            .lock()
            .read_to_end(&mut buf)
            .context("reading the Dockerfile from stdin")?;
        ("<stdin>".to_owned(), buf)
    } else {
        (path.display().to_string(), fs_err::read(path)?)
    };
    let (text, not_utf8) = match String::from_utf8(bytes) {
        Ok(text) => (text, None),
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let bytes = e.into_bytes();
            let line = bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1;
            (hoist_parser::bytes::decode(&bytes).into_owned(), Some(line))
        }
    };
    Ok(Source {
        name,
        text,
        not_utf8,
    })
}

/// A parse error as the user sees it, ready for `main` to print.
pub fn parse_error(source: &Source, err: &ParseError) -> anyhow::Error {
    let rendered = err.render(&source.name, &source.text);
    anyhow::anyhow!("{}", hoist_parser::bytes::lossy(&rendered))
}

/// A build error as the user sees it: the step and its cause, then the
/// Dockerfile line with a caret when the error has a place.
pub fn build_error(source: &Source, err: &hoist_builder::BuildError) -> anyhow::Error {
    use std::fmt::Write;
    let mut message = err.to_string();
    let snippet = err.span().and_then(|span| span.snippet(&source.text));
    if let Some(snippet) = snippet {
        let _ = write!(message, "\n{snippet}");
    }
    anyhow::anyhow!(hoist_parser::bytes::lossy(&message).into_owned())
}
