//! Alpine version ordering (apk-tools): `N(.N)*[letter](_suffix[N])*[~hash][-rN]`, where the
//! suffixes `alpha`, `beta`, `pre` and `rc` mark pre-releases and `cvs`, `svn`, `git`, `hg`
//! and `p` later releases.

use std::cmp::Ordering;

use super::compare_digits;

/// Compares two Alpine versions; `None` when either is malformed.
pub(super) fn compare(a: &str, b: &str) -> Option<Ordering> {
    let (a, b) = (tokens(a.trim())?, tokens(b.trim())?);
    for (x, y) in a.iter().zip(&b) {
        let ord = match (x, y) {
            (Token::Digits { value: x, first: fx }, Token::Digits { value: y, first: fy }) => {
                // After the first component, a leading zero makes the component a decimal
                // fraction, compared as text (apk: 1.02 < 1.1).
                if !fx && !fy && (x.starts_with('0') || y.starts_with('0')) {
                    x.cmp(y)
                } else {
                    compare_digits(x, y)
                }
            }
            (Token::Letter(x), Token::Letter(y)) => x.cmp(y),
            (Token::Suffix { rank: rx, number: nx }, Token::Suffix { rank: ry, number: ny }) => rx.cmp(ry).then_with(|| compare_digits(nx, ny)),
            (Token::Hash(x), Token::Hash(y)) => x.cmp(y),
            (Token::Revision(x), Token::Revision(y)) => compare_digits(x, y),
            (x, y) => return Some(compare_kinds(x, y)),
        };
        if ord != Ordering::Equal {
            return Some(ord);
        }
    }
    Some(match (a.get(b.len()), b.get(a.len())) {
        (Some(extra), None) => compare_kinds(extra, &Token::End),
        (None, Some(extra)) => compare_kinds(&Token::End, extra),
        _ => Ordering::Equal,
    })
}

/// One lexical part of a version.
#[derive(Debug)]
enum Token<'a> {
    Digits { value: &'a str, first: bool },
    Letter(u8),
    Suffix { rank: i8, number: &'a str },
    Hash(&'a str),
    Revision(&'a str),
    End,
}

impl Token<'_> {
    /// apk's token order: where two versions differ in kind, the earlier kind is the later
    /// version (`1.2.1` > `1.2-r1` > `1.2`), except that a pre-release suffix is earlier still.
    fn kind_rank(&self) -> u8 {
        match self {
            Token::Digits { .. } => 0,
            Token::Letter(_) => 1,
            Token::Suffix { .. } => 2,
            Token::Hash(_) => 3,
            Token::Revision(_) => 4,
            Token::End => 5,
        }
    }
}

fn compare_kinds(a: &Token<'_>, b: &Token<'_>) -> Ordering {
    if let Token::Suffix { rank, .. } = a {
        if *rank < 0 {
            return Ordering::Less;
        }
    }
    if let Token::Suffix { rank, .. } = b {
        if *rank < 0 {
            return Ordering::Greater;
        }
    }
    b.kind_rank().cmp(&a.kind_rank())
}

const SUFFIXES: [(&str, i8); 9] = [("alpha", -4), ("beta", -3), ("pre", -2), ("rc", -1), ("cvs", 1), ("svn", 2), ("git", 3), ("hg", 4), ("p", 5)];

fn tokens(s: &str) -> Option<Vec<Token<'_>>> {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut at = 0;
    let digits = |at: &mut usize| {
        let start = *at;
        while *at < bytes.len() && bytes[*at].is_ascii_digit() {
            *at += 1;
        }
        &s[start..*at]
    };
    let first = digits(&mut at);
    if first.is_empty() {
        return None;
    }
    out.push(Token::Digits { value: first, first: true });
    while bytes.get(at) == Some(&b'.') {
        at += 1;
        let value = digits(&mut at);
        if value.is_empty() {
            return None;
        }
        out.push(Token::Digits { value, first: false });
    }
    if let Some(&c) = bytes.get(at) {
        if c.is_ascii_lowercase() {
            out.push(Token::Letter(c));
            at += 1;
        }
    }
    while bytes.get(at) == Some(&b'_') {
        at += 1;
        let rest = &s[at..];
        let (name, rank) = SUFFIXES.iter().filter(|(name, _)| rest.starts_with(name)).max_by_key(|(name, _)| name.len())?;
        at += name.len();
        out.push(Token::Suffix { rank: *rank, number: digits(&mut at) });
    }
    if bytes.get(at) == Some(&b'~') {
        at += 1;
        let start = at;
        while at < bytes.len() && bytes[at].is_ascii_hexdigit() {
            at += 1;
        }
        out.push(Token::Hash(&s[start..at]));
    }
    if s[at..].starts_with("-r") {
        at += 2;
        let value = digits(&mut at);
        if value.is_empty() {
            return None;
        }
        out.push(Token::Revision(value));
    }
    (at == s.len()).then_some(out)
}
