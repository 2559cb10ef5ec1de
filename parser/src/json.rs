//! The exec form's JSON array, decided the way BuildKit's `parseJSON`
//! decides it with Go's `encoding/json`: text that is not valid JSON falls
//! back to the shell form, while valid JSON holding anything but strings is
//! an error.

use nom::branch::alt;
use nom::bytes::complete::{tag, take_while, take_while_m_n};
use nom::character::complete::{char, digit0, digit1, one_of, satisfy};
use nom::combinator::{opt, recognize};
use nom::{IResult, Parser};

/// Arrays nested deeper than this are treated as invalid JSON rather than
/// recursing without bound on hostile input.
const MAX_DEPTH: usize = 256;

/// The input had valid JSON that is not an array of strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NotStringArray;

/// `Ok(Some(list))` for a JSON array of strings, `Ok(None)` when `text` is
/// not a JSON array at all (the caller falls back to the shell form).
pub(crate) fn parse_string_array(text: &str) -> Result<Option<Vec<String>>, NotStringArray> {
    let text = text.trim_start();
    if !text.starts_with('[') {
        return Ok(None);
    }
    if let Some(list) = plain_string_array(text) {
        return Ok(Some(list));
    }
    let Ok((rest, value)) = value(text, 0) else {
        return Ok(None);
    };
    if !rest.trim_start_matches(is_ws).is_empty() {
        return Ok(None);
    }
    match value {
        Value::Array(items) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                _ => Err(NotStringArray),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        _ => Ok(None),
    }
}

/// The common case without the general parser: an array of strings
/// without escapes. `None` means "use the general parser", not "invalid".
fn plain_string_array(text: &str) -> Option<Vec<String>> {
    let mut rest = text.strip_prefix('[')?.trim_start_matches(is_ws);
    let mut out = Vec::new();
    if let Some(after) = rest.strip_prefix(']') {
        return after.trim_start_matches(is_ws).is_empty().then_some(out);
    }
    loop {
        let body = rest.strip_prefix('"')?;
        let end = body.find(|c: char| c == '"' || c == '\\' || (c as u32) < 0x20)?;
        if !body[end..].starts_with('"') {
            return None;
        }
        out.push(body[..end].to_owned());
        rest = body[end + 1..].trim_start_matches(is_ws);
        if let Some(after) = rest.strip_prefix(',') {
            rest = after.trim_start_matches(is_ws);
        } else {
            let after = rest.strip_prefix(']')?;
            return after.trim_start_matches(is_ws).is_empty().then_some(out);
        }
    }
}

enum Value {
    String(String),
    Array(Vec<Value>),
    Other,
}

fn is_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

fn ws(i: &str) -> IResult<&str, &str> {
    take_while(is_ws).parse(i)
}

fn value(i: &str, depth: usize) -> IResult<&str, Value> {
    let (i, _) = ws(i)?;
    if depth > MAX_DEPTH {
        return Err(nom::Err::Failure(nom::error::Error::new(
            i,
            nom::error::ErrorKind::TooLarge,
        )));
    }
    let (i, v) = match i.chars().next() {
        Some('"') => string.map(Value::String).parse(i)?,
        Some('[') => array(i, depth)?,
        Some('{') => object(i, depth)?,
        _ => alt((
            number,
            tag("true").map(|_| Value::Other),
            tag("false").map(|_| Value::Other),
            tag("null").map(|_| Value::Other),
        ))
        .parse(i)?,
    };
    let (i, _) = ws(i)?;
    Ok((i, v))
}

fn array(i: &str, depth: usize) -> IResult<&str, Value> {
    let (mut i, _) = (char('['), ws).parse(i)?;
    let mut items = Vec::new();
    if let Ok((rest, _)) = char::<_, nom::error::Error<&str>>(']').parse(i) {
        return Ok((rest, Value::Array(items)));
    }
    loop {
        let (rest, v) = value(i, depth + 1)?;
        items.push(v);
        let (rest, sep) = one_of(",]").parse(rest)?;
        i = rest;
        if sep == ']' {
            return Ok((i, Value::Array(items)));
        }
    }
}

fn object(i: &str, depth: usize) -> IResult<&str, Value> {
    let (mut i, _) = (char('{'), ws).parse(i)?;
    if let Ok((rest, _)) = char::<_, nom::error::Error<&str>>('}').parse(i) {
        return Ok((rest, Value::Other));
    }
    loop {
        let (rest, _) = (ws, string, ws, char(':')).parse(i)?;
        let (rest, _) = value(rest, depth + 1)?;
        let (rest, sep) = one_of(",}").parse(rest)?;
        i = rest;
        if sep == '}' {
            return Ok((i, Value::Other));
        }
    }
}

/// A JSON number that fits a float64, as Go decodes it into `any`; a number
/// out of range is a decoding error there too.
fn number(i: &str) -> IResult<&str, Value> {
    let (rest, text) = recognize((
        opt(char('-')),
        alt((
            tag("0"),
            recognize((satisfy(|c| ('1'..='9').contains(&c)), digit0)),
        )),
        opt((char('.'), digit1)),
        opt((one_of("eE"), opt(one_of("+-")), digit1)),
    ))
    .parse(i)?;
    match text.parse::<f64>() {
        Ok(f) if f.is_finite() => Ok((rest, Value::Other)),
        _ => Err(nom::Err::Failure(nom::error::Error::new(
            i,
            nom::error::ErrorKind::Float,
        ))),
    }
}

fn hex4(i: &str) -> IResult<&str, u32> {
    let (rest, h) = take_while_m_n(4, 4, |c: char| c.is_ascii_hexdigit()).parse(i)?;
    let v = u32::from_str_radix(h, 16)
        .map_err(|_| nom::Err::Error(nom::error::Error::new(i, nom::error::ErrorKind::HexDigit)))?;
    Ok((rest, v))
}

/// A JSON string; lone surrogates become U+FFFD as in Go.
fn string(i: &str) -> IResult<&str, String> {
    let (mut i, _) = char('"').parse(i)?;
    // Fast path: a string without escapes is copied in one go.
    let plain_len = i
        .find(|c: char| c == '"' || c == '\\' || (c as u32) < 0x20)
        .unwrap_or(i.len());
    if i[plain_len..].starts_with('"') {
        return Ok((&i[plain_len + 1..], i[..plain_len].to_owned()));
    }
    let mut out = String::with_capacity(plain_len + 8);
    loop {
        let plain_len = i
            .find(|c: char| c == '"' || c == '\\' || (c as u32) < 0x20)
            .unwrap_or(i.len());
        out.push_str(&i[..plain_len]);
        i = &i[plain_len..];
        let at = i;
        let fail = move || nom::Err::Error(nom::error::Error::new(at, nom::error::ErrorKind::Char));
        match i.chars().next() {
            Some('"') => return Ok((&i[1..], out)),
            Some('\\') => {
                let esc = i[1..].chars().next().ok_or_else(fail)?;
                i = &i[1 + esc.len_utf8()..];
                match esc {
                    '"' => out.push('"'),
                    '\\' => out.push('\\'),
                    '/' => out.push('/'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'u' => {
                        let (rest, hi) = hex4(i)?;
                        i = rest;
                        if (0xD800..0xDC00).contains(&hi) {
                            let low = (tag::<_, _, nom::error::Error<&str>>("\\u"), hex4)
                                .parse(i)
                                .ok()
                                .filter(|(_, (_, lo))| (0xDC00..0xE000).contains(lo));
                            match low {
                                Some((rest, (_, lo))) => {
                                    i = rest;
                                    let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                                    out.push(char::from_u32(c).unwrap_or('\u{fffd}'));
                                }
                                None => out.push('\u{fffd}'),
                            }
                        } else {
                            out.push(char::from_u32(hi).unwrap_or('\u{fffd}'));
                        }
                    }
                    _ => return Err(fail()),
                }
            }
            _ => return Err(fail()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        type Want = Result<Option<Vec<&'static str>>, NotStringArray>;
        let cases: [(&str, Want); 14] = [
            (r#"["a", "b"]"#, Ok(Some(vec!["a", "b"]))),
            ("[]", Ok(Some(vec![]))),
            ("  [ \"x\" ]  ", Ok(Some(vec!["x"]))),
            (
                r#"["a\nb", "\u00e9\ud83d\ude00"]"#,
                Ok(Some(vec!["a\nb", "é😀"])),
            ),
            (r#"["\ud800"]"#, Ok(Some(vec!["\u{fffd}"]))),
            ("[1]", Err(NotStringArray)),
            (r#"["a", {"b": [1]}]"#, Err(NotStringArray)),
            ("[null]", Err(NotStringArray)),
            ("['a']", Ok(None)),
            (r#"["a""#, Ok(None)),
            (r#"["a"] x"#, Ok(None)),
            ("[1e999]", Ok(None)),
            ("echo [x]", Ok(None)),
            (r#"["a",]"#, Ok(None)),
        ];
        for (text, want) in cases {
            let want = want.map(|o| o.map(|v| v.into_iter().map(String::from).collect::<Vec<_>>()));
            assert_eq!(parse_string_array(text), want, "case {text:?}");
        }
    }

    #[test]
    fn deep_nesting_is_not_json() {
        let text = "[".repeat(100_000);
        assert_eq!(parse_string_array(&text), Ok(None));
    }
}
