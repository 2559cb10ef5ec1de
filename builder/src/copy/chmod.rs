//! `--chmod` values: octal (`0755`), or symbolic like chmod(1) as newer
//! Dockerfile frontends accept (`u=rwX,go=rX`, `+x`).

/// A parsed `--chmod`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Chmod {
    Octal(u32),
    Symbolic(Vec<Clause>),
}

/// One comma-separated clause of a symbolic mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Clause {
    who: u32,
    op: char,
    perms: String,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid chmod parameter {0:?}")]
pub struct InvalidChmod(pub String);

impl Chmod {
    pub fn parse(s: &str) -> Result<Self, InvalidChmod> {
        let bad = || InvalidChmod(s.to_owned());
        if !s.is_empty() && s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            let mode = u32::from_str_radix(s, 8).map_err(|_| bad())?;
            if mode > 0o7777 {
                return Err(bad());
            }
            return Ok(Self::Octal(mode));
        }
        let mut clauses = Vec::new();
        for part in s.split(',') {
            let op_at = part.find(['+', '-', '=']).ok_or_else(bad)?;
            let (who_s, rest) = part.split_at(op_at);
            let mut who = 0;
            for c in who_s.chars() {
                who |= match c {
                    'u' => 0o4700,
                    'g' => 0o2070,
                    'o' => 0o1007,
                    'a' => 0o7777,
                    _ => return Err(bad()),
                };
            }
            if who == 0 {
                who = 0o7777;
            }
            let op = rest.chars().next().ok_or_else(bad)?;
            let perms = rest[1..].to_owned();
            if !perms.chars().all(|c| "rwxXst".contains(c)) {
                return Err(bad());
            }
            clauses.push(Clause { who, op, perms });
        }
        if clauses.is_empty() {
            return Err(bad());
        }
        Ok(Self::Symbolic(clauses))
    }

    /// The new permission bits for an entry whose current mode is `mode`.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        let mut mode = mode & 0o7777;
        match self {
            Self::Octal(m) => *m,
            Self::Symbolic(clauses) => {
                for clause in clauses {
                    let mut bits = 0;
                    for c in clause.perms.chars() {
                        bits |= match c {
                            'r' => 0o444,
                            'w' => 0o222,
                            'x' => 0o111,
                            'X' if is_dir || mode & 0o111 != 0 => 0o111,
                            's' => 0o6000,
                            't' => 0o1000,
                            _ => 0,
                        };
                    }
                    let bits = bits & clause.who;
                    match clause.op {
                        '+' => mode |= bits,
                        '-' => mode &= !bits,
                        _ => mode = (mode & !clause.who) | bits,
                    }
                }
                mode
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chmod_table() {
        let table: &[(&str, u32, bool, u32)] = &[
            ("755", 0o644, false, 0o755),
            ("0600", 0o777, true, 0o600),
            ("4755", 0o644, false, 0o4755),
            ("+x", 0o644, false, 0o755),
            ("u+x", 0o644, false, 0o744),
            ("go-w", 0o666, false, 0o644),
            ("u=rwX,go=rX", 0o600, true, 0o755),
            ("u=rwX,go=rX", 0o600, false, 0o644),
            ("u=rwX,go=rX", 0o700, false, 0o755),
            ("a=r", 0o777, false, 0o444),
            ("u+s", 0o755, false, 0o4755),
        ];
        for &(spec, mode, dir, want) in table {
            let got = Chmod::parse(spec).unwrap().apply(mode, dir);
            assert_eq!(got, want, "{spec} on {mode:o} dir={dir}: got {got:o}");
        }
        for bad in ["", "8", "77777", "u", "z+x", "u+q"] {
            assert!(Chmod::parse(bad).is_err(), "{bad:?}");
        }
    }
}
