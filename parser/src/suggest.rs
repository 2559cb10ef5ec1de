//! "Did you mean" suggestions: the closest candidate by edit distance,
//! as BuildKit's `util/suggest` offers them.

/// The candidate closest to `word` (case-insensitively), if it is close
/// enough to be a plausible typo: at most 2 edits, and fewer edits than the
/// word has characters.
pub(crate) fn nearest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let original = word;
    let word = word.to_lowercase();
    let mut best: Option<(usize, &'a str)> = None;
    for &c in candidates {
        let d = levenshtein(&word, &c.to_lowercase());
        if best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    let (d, c) = best?;
    let limit = 2.min(word.chars().count().saturating_sub(1));
    (d <= limit && original != c).then_some(c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        let names = ["RUN", "COPY", "FROM", "WORKDIR", "ENV"];
        let cases = [
            ("RUNN", Some("RUN")),
            ("cpy", Some("COPY")),
            ("workdri", Some("WORKDIR")),
            ("frm", Some("FROM")),
            ("xyzzy", None),
            ("X", None),
        ];
        for (word, want) in cases {
            assert_eq!(nearest(word, &names), want, "case {word:?}");
        }
    }
}
