#!/usr/bin/env python3
"""Regenerates parser/src/expand/unicode.rs: the Unicode L and Nd ranges that
Go's unicode.IsLetter / unicode.IsDigit test (BuildKit's variable-name rules).

Usage: testdata/expand/gen_unicode_tables.py \
         ~/.cargo/registry/src/*/regex-syntax-0.8.*/src/unicode_tables/general_category.rs
Writes parser/src/expand/unicode.rs relative to the repository root.
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
SRC = pathlib.Path(sys.argv[1]).read_text()
VERSION = re.search(r"Unicode version: ([0-9]+(?:\.[0-9]+)*)", SRC).group(1)
CHAR = r"'((?:\\u\{[0-9a-fA-F]+\})|(?:\\.)|[^'])'"


def code_point(lit):
    if lit.startswith("\\u{"):
        return int(lit[3:-1], 16)
    if lit.startswith("\\"):
        return {"\\\\": 0x5C, "\\'": 0x27, "\\t": 9, "\\n": 10, "\\r": 13, "\\0": 0}[lit]
    return ord(lit)


def table(name):
    body = re.search(
        r"pub const " + name + r": &'static \[\(char, char\)\] = &\[(.*?)\];", SRC, re.S
    ).group(1)
    return [(code_point(a), code_point(b)) for a, b in re.findall(r"\(" + CHAR + ", " + CHAR + r"\)", body)]


out = [
    "//! Unicode general categories that Go's `unicode.IsLetter` (L) and",
    "//! `unicode.IsDigit` (Nd) test, which BuildKit's lexer uses for variable",
    "//! names. Rust's `char::is_alphabetic`/`is_numeric` test broader properties",
    "//! (Alphabetic, N), so they would accept names BuildKit stops at.",
    "//!",
    f"//! Generated from regex-syntax's `general_category.rs` (Unicode {VERSION}) by",
    "//! `testdata/expand/gen_unicode_tables.py`; do not edit by hand.",
    "",
]
for name, category in (("LETTER", "L"), ("DECIMAL_NUMBER", "Nd")):
    out.append(f"/// Code point ranges (inclusive) of category {category}.")
    out.append("#[rustfmt::skip]")
    out.append(f"const {name}: &[(u32, u32)] = &[")
    line = "   "
    for lo, hi in table(name):
        item = f" (0x{lo:X}, 0x{hi:X}),"
        if len(line) + len(item) > 99:
            out.append(line)
            line = "   "
        line += item
    out.append(line)
    out.append("];")
    out.append("")
out.append(
    """fn in_table(table: &[(u32, u32)], c: char) -> bool {
    let c = u32::from(c);
    table
        .binary_search_by(|&(lo, hi)| {
            if hi < c {
                core::cmp::Ordering::Less
            } else if lo > c {
                core::cmp::Ordering::Greater
            } else {
                core::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// Go's `unicode.IsLetter`.
pub(super) fn is_letter(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphabetic();
    }
    in_table(LETTER, c)
}

/// Go's `unicode.IsDigit`.
pub(super) fn is_digit(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_digit();
    }
    in_table(DECIMAL_NUMBER, c)
}"""
)
(ROOT / "parser/src/expand/unicode.rs").write_text("\n".join(out) + "\n")
