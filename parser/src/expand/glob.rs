//! The shell patterns of `${V#p}`, `${V%p}` and `${V/p/r}`: `*`, `?` and
//! backslash escapes, as BuildKit's `convertShellPatternToRegex` turns them
//! into Go regular expressions.
//!
//! BuildKit hands the pattern to Go's `regexp`, so the results here follow
//! Go's leftmost-first semantics exactly: `?` and `*` never match a newline
//! (Go's `.` without the `s` flag), `*` is greedy or lazy for the whole
//! pattern, and replace-all skips an empty match right after another match.
//! Matching is a Pike VM (the automaton simulation Go itself uses), so a
//! search costs O(text × pattern) and never backtracks.

use super::MAX_EXPANSION;
use super::unicode::{is_digit, is_letter};

/// One element of a compiled pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item {
    /// A character matched as is.
    Lit(char),
    /// `?`: any one character except a newline.
    Any,
    /// `*`: any run of characters without a newline.
    Star,
}

/// A compiled shell pattern with reusable matcher state.
#[derive(Debug)]
pub(super) struct Glob {
    items: Vec<Item>,
    /// Every `*` prefers the longest run (`.*`) or the shortest (`.*?`).
    greedy: bool,
    /// Per-state generation marks, so a state enters a thread list once.
    seen: Vec<u64>,
    generation: u64,
    current: Vec<Thread>,
    next: Vec<Thread>,
}

/// A VM thread: the item it waits on (`items.len()` means "matched") and
/// where its match started.
#[derive(Debug, Clone, Copy)]
struct Thread {
    pc: usize,
    start: usize,
}

impl Glob {
    /// Compiles `pattern` as `convertShellPatternToRegex` does. The error is
    /// Go's text, e.g. `invalid escape '\x'`.
    pub(super) fn compile(pattern: &str, greedy: bool) -> Result<Self, String> {
        // Go reads the pattern with text/scanner, which drops a leading BOM.
        let pattern = pattern.strip_prefix('\u{FEFF}').unwrap_or(pattern);
        let mut items = Vec::with_capacity(pattern.len());
        let mut chars = pattern.chars().peekable();
        while let Some(tok) = chars.next() {
            let item = match tok {
                '*' => Item::Star,
                '?' => Item::Any,
                '\\' => {
                    // `\}` and `\/` were escapes inside `${}`; the backslash
                    // is not part of the pattern.
                    if matches!(chars.peek(), Some('}' | '/')) {
                        continue;
                    }
                    match chars.next() {
                        Some(c @ ('*' | '?' | '\\')) => Item::Lit(c),
                        // Go formats the missing rune (EOF) with %c as U+FFFD.
                        other => {
                            return Err(format!(
                                "invalid escape '\\{}'",
                                other.unwrap_or('\u{FFFD}')
                            ));
                        }
                    }
                }
                c => Item::Lit(c),
            };
            items.push(item);
        }
        let states = items.len() + 1;
        Ok(Self {
            items,
            greedy,
            seen: vec![0; states],
            generation: 0,
            current: Vec::with_capacity(states),
            next: Vec::with_capacity(states),
        })
    }

    /// Go's `FindStringIndex` starting at byte `from` of `text` (a char
    /// boundary). `anchored` is the `^` BuildKit adds for `#` and `%`.
    pub(super) fn find_at(
        &mut self,
        text: &str,
        from: usize,
        anchored: bool,
    ) -> Option<(usize, usize)> {
        let mut current = std::mem::take(&mut self.current);
        let mut next = std::mem::take(&mut self.next);
        current.clear();
        self.generation += 1;
        let mut matched = None;
        let mut pos = from;
        loop {
            if current.is_empty() && ((anchored && pos != from) || matched.is_some()) {
                break;
            }
            // A later start has lower priority: leftmost wins.
            if matched.is_none() && (!anchored || pos == from) {
                self.add(&mut current, 0, pos);
            }
            let ch = text.get(pos..).and_then(|rest| rest.chars().next());
            self.generation += 1;
            next.clear();
            for &Thread { pc, start } in &current {
                let advance = match self.items.get(pc) {
                    None => {
                        // Leftmost-first: this match beats every thread
                        // after it in the list.
                        matched = Some((start, pos));
                        break;
                    }
                    Some(Item::Lit(lit)) => (ch == Some(*lit)).then_some(pc + 1),
                    Some(Item::Any) => ch.is_some_and(|c| c != '\n').then_some(pc + 1),
                    Some(Item::Star) => ch.is_some_and(|c| c != '\n').then_some(pc),
                };
                if let Some(pc) = advance {
                    self.add(&mut next, pc, start);
                }
            }
            let Some(ch) = ch else { break };
            pos += ch.len_utf8();
            std::mem::swap(&mut current, &mut next);
        }
        self.current = current;
        self.next = next;
        matched
    }

    /// Adds the thread at `pc` and the epsilon closure through `*`s, in
    /// priority order: a greedy star tries another character first, a lazy
    /// one tries what follows first. Iterative, so `***…` cannot overflow
    /// the stack.
    fn add(&mut self, list: &mut Vec<Thread>, pc: usize, start: usize) {
        let generation = self.generation;
        let mut end = pc;
        // Walk the run of stars from pc, marking states as entered.
        while self.seen.get(end).is_some_and(|&g| g != generation) {
            if let Some(seen) = self.seen.get_mut(end) {
                *seen = generation;
            }
            if self.items.get(end) != Some(&Item::Star) {
                // A literal, `?` or the match state ends the closure.
                if self.greedy {
                    list.push(Thread { pc: end, start });
                }
                end += 1;
                break;
            }
            if self.greedy {
                list.push(Thread { pc: end, start });
            }
            end += 1;
        }
        if !self.greedy {
            // Lazy: innermost alternative (what follows the stars) first.
            for pc in (pc..end).rev() {
                list.push(Thread { pc, start });
            }
        }
    }
}

/// BuildKit's `reversePattern`: reverses by characters but keeps each
/// `\x` escape pair in order, so `a\*c` becomes `c\*a`.
pub(super) fn reverse_pattern(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let Some(last) = chars.len().checked_sub(1) else {
        return String::new();
    };
    let mut out = vec!['\0'; chars.len()];
    let mut i = 0;
    while i <= last {
        let out_idx = last - i;
        match (chars[i], chars.get(i + 1)) {
            ('\\', Some(&next)) if i != last && out_idx >= 1 => {
                out[out_idx - 1] = '\\';
                out[out_idx] = next;
                i += 2;
            }
            (tok, _) => {
                out[out_idx] = tok;
                i += 1;
            }
        }
    }
    out.into_iter().collect()
}

/// `${V#p}` / `${V##p}`: removes the shortest (longest when `greedy`)
/// prefix of `value` matching `pattern`. The error names the pattern.
pub(super) fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> Result<String, String> {
    let mut glob = Glob::compile(pattern, greedy).map_err(|e| invalid_pattern(pattern, &e))?;
    Ok(match glob.find_at(value, 0, true) {
        Some((_, end)) => value.get(end..).unwrap_or_default().to_owned(),
        None => value.to_owned(),
    })
}

/// `${V%p}` / `${V%%p}`. Like BuildKit, reverses pattern and value and
/// trims a prefix, since a leftmost search cannot find the shortest
/// rightmost match; so an error names the reversed pattern, as BuildKit's.
pub(super) fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> Result<String, String> {
    let reversed: String = value.chars().rev().collect();
    let trimmed = trim_prefix(&reverse_pattern(pattern), &reversed, greedy)?;
    Ok(trimmed.chars().rev().collect())
}

/// `${V/p/r}` (`all` false) and `${V//p/r}` (`all` true). The single form
/// inserts `replacement` literally; replace-all goes through Go's
/// `ReplaceAllString`, which expands `$0`/`${0}` and `$$` in it.
pub(super) fn replace(
    value: &str,
    pattern: &str,
    replacement: &str,
    all: bool,
) -> Result<String, String> {
    let mut glob = Glob::compile(pattern, true).map_err(|e| invalid_pattern(pattern, &e))?;
    if !all {
        return Ok(match glob.find_at(value, 0, false) {
            Some((start, end)) => {
                let mut out = String::with_capacity(value.len() + replacement.len());
                out.push_str(value.get(..start).unwrap_or_default());
                out.push_str(replacement);
                out.push_str(value.get(end..).unwrap_or_default());
                out
            }
            None => value.to_owned(),
        });
    }
    // Go's Regexp.replaceAll, step for step.
    let mut out = String::with_capacity(value.len());
    let mut last_match_end = 0;
    let mut search_pos = 0;
    while search_pos <= value.len() {
        let Some((start, end)) = glob.find_at(value, search_pos, false) else {
            break;
        };
        out.push_str(value.get(last_match_end..start).unwrap_or_default());
        // No replacement for an empty match right after another match.
        if end > last_match_end || start == 0 {
            expand_template(
                &mut out,
                replacement,
                value.get(start..end).unwrap_or_default(),
            )?;
        }
        last_match_end = end;
        let width = value
            .get(search_pos..)
            .and_then(|rest| rest.chars().next())
            .map_or(0, char::len_utf8);
        if search_pos + width > end {
            search_pos += width;
        } else if search_pos + 1 > end {
            // Only at the end of the text, where width is 0.
            search_pos += 1;
        } else {
            search_pos = end;
        }
    }
    out.push_str(value.get(last_match_end..).unwrap_or_default());
    Ok(out)
}

fn invalid_pattern(pattern: &str, err: &str) -> String {
    format!("invalid pattern ({pattern}) in substitution: {err}")
}

/// Go's `Regexp.expand` for a regexp without groups: `$0`/`${0}` is the
/// match, `$$` is `$`, any other well-formed `$name` is empty and a
/// malformed `$` is kept. Fails once `out` passes [`MAX_EXPANSION`]:
/// replace-all multiplies sizes (each `$0` repeats the match, and nested
/// `${V//p/r}` feed each other), so a short word could exhaust memory.
fn expand_template(out: &mut String, mut template: &str, matched: &str) -> Result<(), String> {
    while let Some(dollar) = template.find('$') {
        if out.len() > MAX_EXPANSION {
            return Err(super::too_large_message());
        }
        out.push_str(&template[..dollar]);
        template = &template[dollar + 1..];
        if let Some(rest) = template.strip_prefix('$') {
            out.push('$');
            template = rest;
            continue;
        }
        match extract_group(template) {
            Some((group, rest)) => {
                if group == Some(0) {
                    out.push_str(matched);
                }
                template = rest;
            }
            None => out.push('$'),
        }
    }
    out.push_str(template);
    if out.len() > MAX_EXPANSION {
        return Err(super::too_large_message());
    }
    Ok(())
}

/// Go's `extract`: the group reference after a `$` (`name` or `{name}`),
/// as its number when it is one, and the rest of the template.
fn extract_group(template: &str) -> Option<(Option<u32>, &str)> {
    let (braced, body) = match template.strip_prefix('{') {
        Some(body) => (true, body),
        None => (false, template),
    };
    let len = body
        .char_indices()
        .find(|&(_, c)| !(is_letter(c) || is_digit(c) || c == '_'))
        .map_or(body.len(), |(i, _)| i);
    if len == 0 {
        return None;
    }
    let (name, mut rest) = body.split_at(len);
    if braced {
        rest = rest.strip_prefix('}')?;
    }
    let mut number = Some(0u32);
    for b in name.bytes() {
        number = match number {
            Some(n) if b.is_ascii_digit() && n < 100_000_000 => Some(n * 10 + u32::from(b - b'0')),
            _ => None,
        };
    }
    // Leading zeros make it a name, not a number.
    if name.len() > 1 && name.starts_with('0') {
        number = None;
    }
    Some((number, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compile_rejects_bad_escapes_like_buildkit() {
        for (pattern, want) in [
            ("\\", "invalid escape '\\\u{FFFD}'"),
            ("\\x", "invalid escape '\\x'"),
            ("\\\\\\", "invalid escape '\\\u{FFFD}'"),
        ] {
            let err = Glob::compile(pattern, true).expect_err(pattern);
            assert_eq!(err, want, "pattern {pattern:?}");
        }
        for pattern in [
            "*",
            "?",
            "\\*",
            "(()[]{\\}^$.\\*\\?|\\\\",
            "\\/",
            "\u{FEFF}\\x",
        ] {
            let compiled = Glob::compile(pattern, true);
            assert_eq!(
                compiled.is_ok(),
                pattern != "\u{FEFF}\\x",
                "pattern {pattern:?}: {compiled:?}"
            );
        }
    }

    #[test]
    fn reverse_pattern_keeps_escape_pairs() {
        for (pattern, want) in [
            ("a\\*c", "c\\*a"),
            ("\\\\\\ab", "b\\a\\\\"),
            ("ab\\", "\\ba"),
            ("👽\\🚀🖖", "🖖\\🚀👽"),
            ("\\\\b", "b\\\\"),
            ("", ""),
            ("\\", "\\"),
        ] {
            assert_eq!(reverse_pattern(pattern), want, "pattern {pattern:?}");
        }
    }

    #[test]
    fn find_follows_go_leftmost_first() {
        // (pattern, greedy, anchored, text, want), checked against Go's
        // regexp with the pattern BuildKit builds.
        type Case = (
            &'static str,
            bool,
            bool,
            &'static str,
            Option<(usize, usize)>,
        );
        let cases: &[Case] = &[
            ("*", true, true, "abc", Some((0, 3))),
            ("*", false, true, "abc", Some((0, 0))),
            ("*x*y", false, true, "xxyy", Some((0, 3))),
            ("*x*y", true, true, "xxyy", Some((0, 4))),
            ("*x", true, true, "xxyy", Some((0, 2))),
            ("b*", true, false, "abcb", Some((1, 4))),
            ("?", true, false, "\nx", Some((1, 2))),
            ("*", true, true, "ab\ncd", Some((0, 2))),
            ("a*b", true, false, "ab\nab", Some((0, 2))),
            ("z", true, false, "abc", None),
            ("", true, false, "abc", Some((0, 0))),
            ("a", true, true, "ba", None),
            ("\\*", true, false, "a*", Some((1, 2))),
            ("한?", true, false, "x한국어", Some((1, 7))),
        ];
        for &(pattern, greedy, anchored, text, want) in cases {
            let mut glob = Glob::compile(pattern, greedy).expect("valid pattern");
            assert_eq!(
                glob.find_at(text, 0, anchored),
                want,
                "pattern {pattern:?} greedy {greedy} anchored {anchored} text {text:?}"
            );
        }
    }

    #[test]
    fn replace_all_matches_go_replace_all_string() {
        // (value, pattern, replacement, want): checked against Go's
        // regexp.ReplaceAllString with the pattern BuildKit builds.
        for (value, pattern, replacement, want) in [
            ("xxyy", "", "-", "-x-x-y-y-"),
            ("abc", "*", "-", "-"),
            ("a\nb", "*", "-", "-\n-"),
            ("aaa", "a", "$0$0", "aaaaaa"),
            ("aaa", "a", "${0}x", "axaxax"),
            ("aaa", "a", "$$", "$$$"),
            ("aaa", "a", "$1", ""),
            ("aaa", "a", "$", "$$$"),
            ("aaa", "a", "${0", "${0${0${0"),
            ("aaa", "a", "$00", ""),
            ("a.b", "?", "<$0>", "<a><.><b>"),
        ] {
            assert_eq!(
                replace(value, pattern, replacement, true).as_deref(),
                Ok(want),
                "value {value:?} pattern {pattern:?} replacement {replacement:?}"
            );
        }
    }

    #[test]
    fn pathological_patterns_stay_linear_in_each_input() {
        // A backtracking matcher takes exponential time on these; the VM
        // does len(text) × len(pattern) steps.
        let text = "a".repeat(20_000);
        let pattern = "*a".repeat(30) + "b";
        assert_eq!(
            trim_prefix(&pattern, &text, true).as_deref(),
            Ok(text.as_str())
        );
        assert_eq!(
            trim_suffix(&pattern, &text, false).as_deref(),
            Ok(text.as_str())
        );
        assert_eq!(
            replace(&text, &pattern, "x", true).as_deref(),
            Ok(text.as_str())
        );
        let stars = "*".repeat(50_000);
        assert_eq!(trim_prefix(&stars, "abc", true).as_deref(), Ok(""));
        assert_eq!(trim_prefix(&stars, "abc", false).as_deref(), Ok("abc"));
        // Nested replace-all multiplies sizes; the result is capped.
        let too_large = Err("expansion result is larger than 16 MiB".to_owned());
        let big = "x".repeat(MAX_EXPANSION / 1000 + 1);
        let result = replace(&"a".repeat(1000), "?", &big, true);
        assert_eq!(result.map(|s| s.len()), too_large, "many matches");
        let dollars = "$0".repeat(1000);
        let result = replace(&big, "*", &dollars, true);
        assert_eq!(result.map(|s| s.len()), too_large, "one long template");
        let many = "ab".repeat(10_000);
        assert_eq!(replace(&many, "a", "", true).map(|s| s.len()), Ok(10_000));
    }
}
