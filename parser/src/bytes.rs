//! Dockerfiles that are not UTF-8.
//!
//! BuildKit reads a Dockerfile as bytes, so a Latin-1 `RUN printf 'café'`
//! hands its 0xE9 to the shell unchanged. hoist parses text, so [`decode`]
//! carries every byte that is not part of valid UTF-8 through the parse as
//! a character of its own, from the last 128 code points of Supplementary
//! Private Use Area-B (byte `b` is U+10FF00 + `b`, U+10FF80 to U+10FFFF).
//! [`encode`] gives the process the bytes back, and [`lossy`] shows each
//! of them as U+FFFD in messages and image configs, as Go's JSON encoder
//! writes invalid UTF-8.
//!
//! A real character in that range is carried the same way, byte by byte,
//! so `encode(&decode(b)) == b` for any input.

use std::borrow::Cow;

/// The code point that stands for byte 0: bytes 0x80 to 0xFF map to
/// U+10FF80 to U+10FFFF.
const BASE: u32 = 0x10_FF00;
const FIRST: char = '\u{10FF80}';

fn escape(byte: u8) -> char {
    char::from_u32(BASE + u32::from(byte)).expect("U+10FF80..=U+10FFFF are scalar values")
}

fn unescape(c: char) -> Option<u8> {
    (c >= FIRST).then(|| (u32::from(c) - BASE) as u8)
}

/// The Dockerfile's text, with each byte that is not valid UTF-8 carried
/// as a character of its own (see the module docs). Valid UTF-8 without
/// those characters comes back as it was.
pub fn decode(bytes: &[u8]) -> Cow<'_, str> {
    if let Ok(text) = std::str::from_utf8(bytes)
        && !text.chars().any(|c| c >= FIRST)
    {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(bytes.len() + 16);
    let mut rest = bytes;
    loop {
        let (valid, bad) = match std::str::from_utf8(rest) {
            Ok(text) => (text, &[][..]),
            Err(e) => {
                let (valid, after) = rest.split_at(e.valid_up_to());
                let len = e.error_len().unwrap_or(after.len());
                let valid = std::str::from_utf8(valid).expect("checked by from_utf8");
                (valid, &after[..len])
            }
        };
        for c in valid.chars() {
            if c >= FIRST {
                let mut buf = [0u8; 4];
                out.extend(c.encode_utf8(&mut buf).bytes().map(escape));
            } else {
                out.push(c);
            }
        }
        out.extend(bad.iter().map(|&b| escape(b)));
        let used = valid.len() + bad.len();
        if used == rest.len() {
            return Cow::Owned(out);
        }
        rest = &rest[used..];
    }
}

/// The bytes `text` stands for: what a process gets.
pub fn encode(text: &str) -> Cow<'_, [u8]> {
    if !text.chars().any(|c| c >= FIRST) {
        return Cow::Borrowed(text.as_bytes());
    }
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match unescape(c) {
            Some(byte) => out.push(byte),
            None => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    Cow::Owned(out)
}

/// `text` for people and JSON: the bytes it stands for, each invalid
/// sequence as U+FFFD.
pub fn lossy(text: &str) -> Cow<'_, str> {
    match encode(text) {
        Cow::Borrowed(_) => Cow::Borrowed(text),
        Cow::Owned(bytes) => Cow::Owned(String::from_utf8_lossy(&bytes).into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_and_show_as_replacement_characters() {
        for (bytes, shown) in [
            (&b"RUN echo hi"[..], "RUN echo hi"),
            (b"RUN printf 'caf\xe9'", "RUN printf 'caf\u{FFFD}'"),
            ("RUN echo café".as_bytes(), "RUN echo café"),
            (
                b"# \xb2\xe2\xca\xd4\nRUN x",
                "# \u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}\nRUN x",
            ),
            (b"\xff", "\u{FFFD}"),
            (b"caf\xc3", "caf\u{FFFD}"),
            // A real U+10FFFD in valid UTF-8 survives encode, and shows as
            // itself.
            ("x\u{10FFFD}y".as_bytes(), "x\u{10FFFD}y"),
        ] {
            let text = decode(bytes);
            assert_eq!(&*encode(&text), bytes, "{bytes:?}");
            assert_eq!(lossy(&text), shown, "{bytes:?}");
        }
        // Valid UTF-8 is not copied.
        assert!(matches!(decode(b"FROM scratch"), Cow::Borrowed(_)));
        // One character per invalid byte, so columns count them.
        assert_eq!(decode(b"a\xe9b").chars().count(), 3);
    }
}
