//! `--flag=value` parsing per instruction: BuildKit's `BFlags`.
//!
//! Each instruction declares the flags it takes and their kind; anything
//! else is an error naming the flag (with a suggestion when one is close).

use crate::error::{ErrorKind, ParseError};
use crate::suggest::nearest;
use crate::syntax::Node;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `--link` or `--link=true|false`.
    Bool,
    /// `--from=x`, given at most once.
    String,
    /// `--mount=x`, repeatable.
    Strings,
}

/// The flags one instruction accepts.
pub(crate) struct Spec {
    pub instruction: &'static str,
    pub flags: &'static [(&'static str, Kind)],
}

/// Parsed flag values: `(index in Spec::flags, value, index of the raw
/// flag)` in the order given, borrowed from the node.
#[derive(Debug, Default)]
pub(crate) struct Values<'a> {
    values: SmallList<(usize, &'a str, usize)>,
}

/// A list that keeps its first few items inline: most instructions have
/// fewer than four flags, and this runs once per instruction.
#[derive(Debug)]
struct SmallList<T: Copy + Default> {
    inline: [T; 4],
    len: usize,
    spill: Vec<T>,
}

impl<T: Copy + Default> Default for SmallList<T> {
    fn default() -> Self {
        Self {
            inline: [T::default(); 4],
            len: 0,
            spill: Vec::new(),
        }
    }
}

impl<T: Copy + Default> SmallList<T> {
    fn push(&mut self, item: T) {
        if self.len < self.inline.len() {
            self.inline[self.len] = item;
            self.len += 1;
        } else {
            self.spill.push(item);
        }
    }

    fn iter(&self) -> impl DoubleEndedIterator<Item = &T> {
        self.inline[..self.len].iter().chain(self.spill.iter())
    }
}

impl<'a> Values<'a> {
    /// The last value of a string or bool flag and the index of the raw
    /// flag it came from.
    pub fn get(&self, spec: &Spec, name: &str) -> Option<(&'a str, usize)> {
        let i = spec.flags.iter().position(|(n, _)| *n == name)?;
        self.values
            .iter()
            .rev()
            .find(|(f, _, _)| *f == i)
            .map(|&(_, v, idx)| (v, idx))
    }

    pub fn string(&self, spec: &Spec, name: &str) -> Option<String> {
        self.get(spec, name).map(|(v, _)| v.to_owned())
    }

    pub fn bool(&self, spec: &Spec, name: &str) -> bool {
        self.get(spec, name)
            .is_some_and(|(v, _)| v.eq_ignore_ascii_case("true") || v.is_empty())
    }

    /// Every value of a repeatable flag with its raw flag index.
    pub fn all(&self, spec: &Spec, name: &str) -> impl Iterator<Item = (&'a str, usize)> + '_ {
        let i = spec.flags.iter().position(|(n, _)| *n == name);
        self.values
            .iter()
            .filter(move |(f, _, _)| Some(*f) == i)
            .map(|&(_, v, idx)| (v, idx))
    }
}

/// Checks `node.flags` against `spec`.
pub(crate) fn parse<'a>(node: &'a Node, spec: &Spec) -> Result<Values<'a>, ParseError> {
    let mut values = Values::default();
    for (idx, raw) in node.flags.iter().enumerate() {
        let err = |kind| ParseError::new(node.flag_span(idx), kind);
        // `--` alone ends the flags (extract_builder_flags already stops
        // there, but a quoted `"--"` can still arrive).
        if raw == "--" {
            break;
        }
        let body = raw.strip_prefix("--").unwrap_or(raw);
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        let Some(i) = spec.flags.iter().position(|(n, _)| *n == name) else {
            let names: Vec<&str> = spec.flags.iter().map(|(n, _)| *n).collect();
            return Err(err(ErrorKind::UnknownFlag {
                instruction: spec.instruction,
                flag: name.to_owned(),
                suggestion: nearest(name, &names).map(str::to_owned),
            }));
        };
        let kind = spec.flags[i].1;
        if kind != Kind::Strings && values.values.iter().any(|(f, _, _)| *f == i) {
            return Err(err(ErrorKind::DuplicateFlag(name.to_owned())));
        }
        // A bool given without a value is stored as "" and reads as true.
        let value = match (kind, value) {
            (Kind::Bool, None) => "",
            (Kind::Bool, Some("")) => {
                return Err(err(ErrorKind::MissingFlagValue(name.to_owned())));
            }
            (Kind::Bool, Some(v)) => {
                if !v.eq_ignore_ascii_case("true") && !v.eq_ignore_ascii_case("false") {
                    return Err(err(ErrorKind::InvalidBoolFlag {
                        flag: name.to_owned(),
                        value: v.to_owned(),
                    }));
                }
                v
            }
            (_, None) => return Err(err(ErrorKind::MissingFlagValue(name.to_owned()))),
            (_, Some(v)) => v,
        };
        values.values.push((i, value, idx));
    }
    Ok(values)
}

/// Go's `time.ParseDuration`, for HEALTHCHECK's intervals.
pub(crate) fn parse_go_duration(s: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("time: invalid duration {s:?}");
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_len];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return Err(bad());
        }
        let n: f64 = num.parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(format!("time: missing unit in duration {s:?}")),
            u => return Err(format!("time: unknown unit {u:?} in duration {s:?}")),
        };
        rest = &rest[unit_len..];
        total += n * nanos;
    }
    if total > i64::MAX as f64 {
        return Err(format!("time: invalid duration {s:?}"));
    }
    if neg && total > 0.0 {
        return Err(format!("duration {s:?} is negative"));
    }
    Ok(std::time::Duration::from_nanos(total.round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn go_durations() {
        let cases = [
            ("5s", Ok(Duration::from_secs(5))),
            ("1m30s", Ok(Duration::from_secs(90))),
            ("1.5h", Ok(Duration::from_secs(5400))),
            ("300ms", Ok(Duration::from_millis(300))),
            ("0", Ok(Duration::ZERO)),
            ("0s", Ok(Duration::ZERO)),
            ("2us", Ok(Duration::from_micros(2))),
        ];
        for (s, want) in cases {
            assert_eq!(parse_go_duration(s), want, "case {s:?}");
        }
        for s in ["", "5", "s", "5x", "1..2s", "-5s"] {
            assert!(parse_go_duration(s).is_err(), "case {s:?}");
        }
    }
}
