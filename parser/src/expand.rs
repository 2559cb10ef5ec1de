//! Shell-style word expansion, as BuildKit's `shell.Lex` does it.
//!
//! Placeholder signatures; the real implementation replaces the bodies.

/// A word that cannot be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ExpandError {
    /// Byte offset in the word where the problem starts.
    pub offset: usize,
    pub message: String,
}

/// Expands one word: variables substituted, quotes removed, escapes applied.
pub fn expand_word(
    word: &str,
    _lookup: &dyn Fn(&str) -> Option<String>,
    _escape: char,
) -> Result<String, ExpandError> {
    Ok(word.to_owned())
}

/// Expands and splits into fields on unquoted whitespace (BuildKit's
/// `ProcessWords`), for instructions that take several words.
pub fn expand_words(
    word: &str,
    _lookup: &dyn Fn(&str) -> Option<String>,
    _escape: char,
) -> Result<Vec<String>, ExpandError> {
    Ok(word.split_whitespace().map(str::to_owned).collect())
}
