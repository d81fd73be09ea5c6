//! Python version ordering (PEP 440): `[N!]N(.N)*[{a|b|rc}N][.postN][.devN][+local]`, with
//! the spellings the specification normalises (`alpha`, `-1` for a post release, `_`, ...).

use std::cmp::Ordering;

use super::compare_digits;

/// Compares two PEP 440 versions; `None` when either is not one.
pub(super) fn compare(a: &str, b: &str) -> Option<Ordering> {
    let (a, b) = (parse(a)?, parse(b)?);
    Some(a.cmp_key(&b))
}

/// A parsed version, numbers kept as digit strings so no value overflows.
#[derive(Debug)]
struct Version {
    epoch: String,
    release: Vec<String>,
    pre: Option<(u8, String)>,
    post: Option<String>,
    dev: Option<String>,
    local: Option<Vec<String>>,
}

impl Version {
    fn cmp_key(&self, other: &Version) -> Ordering {
        compare_digits(&self.epoch, &other.epoch)
            .then_with(|| compare_release(&self.release, &other.release))
            .then_with(|| self.pre_rank().cmp(&other.pre_rank()).then_with(|| compare_opt(&self.pre_number(), &other.pre_number())))
            .then_with(|| compare_opt(&self.post.as_deref(), &other.post.as_deref()))
            .then_with(|| match (&self.dev, &other.dev) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(x), Some(y)) => compare_digits(x, y),
            })
            .then_with(|| match (&self.local, &other.local) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Less,
                (Some(_), None) => Ordering::Greater,
                (Some(x), Some(y)) => compare_local(x, y),
            })
    }

    /// A dev release of a final version sorts before its pre-releases; a final version after them.
    fn pre_rank(&self) -> u8 {
        match &self.pre {
            None if self.post.is_none() && self.dev.is_some() => 0,
            Some((phase, _)) => 1 + phase,
            None => 10,
        }
    }

    fn pre_number(&self) -> Option<&str> {
        self.pre.as_ref().map(|(_, n)| n.as_str())
    }
}

/// `None` sorts before any number.
fn compare_opt(a: &Option<&str>, b: &Option<&str>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(x), Some(y)) => compare_digits(x, y),
    }
}

/// Release segments with trailing zeros ignored (`1.0 == 1`).
fn compare_release(a: &[String], b: &[String]) -> Ordering {
    let trim = |r: &[String]| r.len() - r.iter().rev().take_while(|s| s.trim_start_matches('0').is_empty()).count();
    let (a, b) = (&a[..trim(a)], &b[..trim(b)]);
    for (x, y) in a.iter().zip(b) {
        let ord = compare_digits(x, y);
        if ord != Ordering::Equal {
            return ord;
        }
    }
    a.len().cmp(&b.len())
}

/// Local segments: numbers above words, numbers by value, words lexically.
fn compare_local(a: &[String], b: &[String]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let numeric = |s: &str| s.bytes().all(|c| c.is_ascii_digit());
        let ord = match (numeric(x), numeric(y)) {
            (true, true) => compare_digits(x, y),
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => x.cmp(y),
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    a.len().cmp(&b.len())
}

/// A cursor over the lower-cased version text.
struct Cursor<'a> {
    s: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn digits(&mut self) -> Option<String> {
        let start = self.at;
        while self.at < self.s.len() && self.s[self.at].is_ascii_digit() {
            self.at += 1;
        }
        (self.at > start).then(|| String::from_utf8_lossy(&self.s[start..self.at]).into_owned())
    }

    fn separator(&mut self) -> bool {
        if self.at < self.s.len() && b"-_.".contains(&self.s[self.at]) {
            self.at += 1;
            return true;
        }
        false
    }

    /// Consumes the longest of `words` found here.
    fn word(&mut self, words: &[&'static str]) -> Option<&'static str> {
        let rest = &self.s[self.at..];
        let found = words.iter().filter(|w| rest.starts_with(w.as_bytes())).max_by_key(|w| w.len())?;
        self.at += found.len();
        Some(found)
    }

    /// Runs `f`; on `None` the cursor goes back to where it was.
    fn attempt<T>(&mut self, f: impl FnOnce(&mut Self) -> Option<T>) -> Option<T> {
        let start = self.at;
        let out = f(self);
        if out.is_none() {
            self.at = start;
        }
        out
    }
}

fn parse(raw: &str) -> Option<Version> {
    let lower = raw.trim().to_ascii_lowercase();
    let (main, local) = match lower.split_once('+') {
        Some((main, local)) => (main, Some(local)),
        None => (lower.as_str(), None),
    };
    let mut c = Cursor { s: main.as_bytes(), at: 0 };
    if c.s.first() == Some(&b'v') {
        c.at = 1;
    }
    let first = c.digits()?;
    let (epoch, first) = if c.s.get(c.at) == Some(&b'!') {
        c.at += 1;
        (first, c.digits()?)
    } else {
        ("0".to_string(), first)
    };
    let mut release = vec![first];
    while let Some(n) = c.attempt(|c| {
        if c.s.get(c.at) == Some(&b'.') {
            c.at += 1;
            c.digits()
        } else {
            None
        }
    }) {
        release.push(n);
    }
    let pre = c.attempt(|c| {
        c.separator();
        let phase = match c.word(&["alpha", "a", "beta", "b", "preview", "pre", "c", "rc"])? {
            "alpha" | "a" => 0,
            "beta" | "b" => 1,
            _ => 2,
        };
        c.separator();
        Some((phase, c.digits().unwrap_or_else(|| "0".into())))
    });
    let post = c
        .attempt(|c| {
            if c.s.get(c.at) == Some(&b'-') {
                c.at += 1;
                c.digits()
            } else {
                None
            }
        })
        .or_else(|| {
            c.attempt(|c| {
                c.separator();
                c.word(&["post", "rev", "r"])?;
                c.separator();
                Some(c.digits().unwrap_or_else(|| "0".into()))
            })
        });
    let dev = c.attempt(|c| {
        c.separator();
        c.word(&["dev"])?;
        c.separator();
        Some(c.digits().unwrap_or_else(|| "0".into()))
    });
    if c.at != c.s.len() {
        return None;
    }
    let local = match local {
        None => None,
        Some(l) => {
            let segments: Vec<String> = l.split(['-', '_', '.']).map(str::to_string).collect();
            if segments.iter().any(|s| s.is_empty() || !s.bytes().all(|b| b.is_ascii_alphanumeric())) {
                return None;
            }
            Some(segments)
        }
    };
    Some(Version { epoch, release, pre, post, dev, local })
}
