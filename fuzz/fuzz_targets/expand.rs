//! Word expansion on arbitrary input: no panic, no unbounded recursion, an
//! error offset inside the word, and `expand_word`/`expand_words` agree on
//! whether and where a word fails.
//!
//! Input: byte 0 holds flags (bit 0: the escape character is a backtick
//! instead of a backslash); the rest, when UTF-8, is the word, then
//! NUL-separated `KEY=VALUE` environment entries (`KEY` alone is set to the
//! empty string). The replay test in parser/src/expand.rs reads
//! testdata/fuzz/expand/ with the same format.
#![no_main]

use hoist_parser::expand::{expand_word, expand_words};
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let mut parts = text.split('\0');
    let word = parts.next().unwrap_or_default();
    let env: HashMap<&str, &str> = parts
        .map(|entry| entry.split_once('=').unwrap_or((entry, "")))
        .collect();
    let lookup = |name: &str| env.get(name).map(|value| (*value).to_owned());
    let escape = if flags & 1 == 0 { '\\' } else { '`' };

    let word_result = expand_word(word, &lookup, escape);
    let words_result = expand_words(word, &lookup, escape);
    match (&word_result, &words_result) {
        (Err(err), _) => {
            assert!(
                err.offset <= word.len() && word.is_char_boundary(err.offset),
                "offset {} is not a char boundary of the {}-byte word",
                err.offset,
                word.len()
            );
            assert!(!err.message.is_empty(), "empty error message");
        }
        (Ok(expanded), Ok(fields)) => {
            // Splitting only removes unquoted whitespace.
            assert!(
                fields.iter().all(|f| !f.is_empty()),
                "empty field in {fields:?}"
            );
            let joined: usize = fields.iter().map(String::len).sum();
            assert!(
                joined <= expanded.len(),
                "fields {fields:?} longer than the word {expanded:?}"
            );
        }
        (Ok(_), Err(_)) => {}
    }
    assert_eq!(
        word_result.as_ref().err(),
        words_result.as_ref().err(),
        "expand_word and expand_words disagree"
    );
});
