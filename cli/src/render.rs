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
}

/// Reads `path` (`-` for stdin). The text must be UTF-8; the error names
/// the line of the first bad byte.
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
    let text = String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        anyhow::anyhow!("{name}:{line}: the Dockerfile is not valid UTF-8 (byte {at})")
    })?;
    Ok(Source { name, text })
}

/// A parse error as the user sees it, ready for `main` to print.
pub fn parse_error(source: &Source, err: &ParseError) -> anyhow::Error {
    anyhow::anyhow!("{}", err.render(&source.name, &source.text))
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
    anyhow::anyhow!(message)
}
