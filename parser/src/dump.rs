//! BuildKit's parse-tree dump (`parser.Node.Dump`), one S-expression per
//! instruction, so hoist's parser can be compared line by line with
//! BuildKit's fixtures:
//!
//! ```text
//! (from "ubuntu:14.04")
//! (copy ["--from=build" "--chown=1:1"] "a" "/b")
//! (env "k" "v" "=")
//! (onbuild (run "echo" "x"))
//! ```
//!
//! Heredoc bodies are not part of BuildKit's dump; [`dump_heredocs`] gives
//! them in a form of hoist's own for golden tests.

use std::fmt::Write;

use crate::syntax::Node;

/// The dump of a whole file: one line per instruction, each ending in `\n`.
pub fn dump(nodes: &[Node]) -> String {
    let mut out = String::new();
    for node in nodes {
        out.push('(');
        dump_node(node, &mut out);
        out.push_str(")\n");
    }
    out
}

/// The dump of one instruction, without the outer parentheses.
pub fn dump_node(node: &Node, out: &mut String) {
    let start = out.len();
    out.push_str(&node.name.to_lowercase());
    if !node.flags.is_empty() {
        out.push_str(" [");
        for (i, flag) in node.flags.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            go_quote_into(flag, out);
        }
        out.push(']');
    }
    if let Some(child) = &node.child {
        out.push_str(" (");
        dump_node(child, out);
        out.push(')');
    }
    for arg in &node.args {
        out.push(' ');
        go_quote_into(arg, out);
    }
    // Go's TrimSpace: only an empty name can leave leading space.
    let trimmed = out[start..].trim().len();
    if trimmed != out.len() - start {
        let s = out[start..].trim().to_owned();
        out.truncate(start);
        out.push_str(&s);
    }
}

/// hoist's own listing of heredoc bodies: one block per heredoc,
/// `(heredoc "NAME" fd=0 expand=true chomp=false "content")`.
pub fn dump_heredocs(nodes: &[Node]) -> String {
    let mut out = String::new();
    for (i, node) in nodes.iter().enumerate() {
        for h in &node.heredocs {
            let _ = write!(
                out,
                "(heredoc {} {} fd={} expand={} chomp={} ",
                i + 1,
                go_quote(&h.name),
                h.fd,
                h.expand,
                h.chomp
            );
            go_quote_into(&h.content, &mut out);
            out.push_str(")\n");
        }
    }
    out
}

/// Go's `strconv.Quote`.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    go_quote_into(s, &mut out);
    out
}

fn go_quote_into(s: &str, out: &mut String) {
    out.push('"');
    // Go quotes bytes: each byte that is not valid UTF-8 (carried through
    // the parse, see `bytes`) is `\xNN`.
    let bytes = crate::bytes::encode(s);
    for chunk in bytes.utf8_chunks() {
        quote_chars(chunk.valid(), out);
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out.push('"');
}

fn quote_chars(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if is_go_printable(c) => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
}

/// Go's `strconv.IsPrint` for the characters a Dockerfile plausibly holds:
/// letters, marks, numbers, punctuation, symbols and the ASCII space are
/// printable; controls, other spaces, format characters, private-use and
/// noncharacters are not. (Unassigned code points are treated as printable:
/// without Unicode tables hoist cannot tell them apart.)
fn is_go_printable(c: char) -> bool {
    let u = c as u32;
    if u < 0x80 {
        return (0x20..0x7f).contains(&u);
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    !matches!(u,
        0xad // soft hyphen
        | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x890..=0x891 | 0x8e2 | 0x180e
        | 0x200b..=0x200f | 0x202a..=0x202e | 0x2060..=0x2064 | 0x2066..=0x206f
        | 0xfeff | 0xfff9..=0xfffb
        | 0x110bd | 0x110cd | 0x13430..=0x1343f | 0x1bca0..=0x1bca3 | 0x1d173..=0x1d17a
        | 0xe0001 | 0xe0020..=0xe007f
        | 0xd800..=0xdfff
        | 0xe000..=0xf8ff | 0xf0000..=0x10ffff
        | 0xfdd0..=0xfdef
    ) && (u & 0xfffe) != 0xfffe
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_quote_escapes_bytes_that_are_not_utf8_as_go_does() {
        let text = crate::bytes::decode(b"caf\xe9 \xd6\xd0 \xc3\xa9");
        assert_eq!(go_quote(&text), "\"caf\\xe9 \\xd6\\xd0 \u{e9}\"");
    }

    #[test]
    fn quoting_matches_go() {
        let cases = [
            ("plain", r#""plain""#),
            ("a\"b\\c", r#""a\"b\\c""#),
            ("tab\tnl\ncr\r", r#""tab\tnl\ncr\r""#),
            ("\u{0}\u{1b}\u{7f}", r#""\x00\x1b\x7f""#),
            ("héllo ünïcode 日本 😀", "\"héllo ünïcode 日本 😀\""),
            ("\u{a0}\u{200b}\u{feff}", r#""\u00a0\u200b\ufeff""#),
            ("\u{7}\u{8}\u{b}\u{c}", r#""\a\b\v\f""#),
            ("\u{f0000}", r#""\U000f0000""#),
        ];
        for (input, want) in cases {
            assert_eq!(go_quote(input), want, "case {input:?}");
        }
    }

    #[test]
    fn dump_shapes() {
        let ast = crate::parse_ast(
            "FROM x\nCOPY --from=build --chown=1:1 a /b\nENV k=v\nENV k v w\nCMD []\nONBUILD RUN [\"echo\", \"x\"]\nHEALTHCHECK NONE\n",
        )
        .unwrap();
        assert_eq!(
            dump(&ast.nodes),
            "(from \"x\")\n(copy [\"--from=build\" \"--chown=1:1\"] \"a\" \"/b\")\n(env \"k\" \"v\" \"=\")\n(env \"k\" \"v w\" \"\")\n(cmd)\n(onbuild (run \"echo\" \"x\"))\n(healthcheck \"NONE\")\n"
        );
    }
}
