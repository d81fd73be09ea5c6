//! Shell-style path globs for device classes: `*`, `?`, `[a-z]`, `[!0-9]` and `\` escapes,
//! matched one path component at a time, and their expansion against the file system.

use std::path::{Component, Path, PathBuf};

/// The most paths one glob expands to; a broader glob is almost certainly a mistake.
pub const MAX_MATCHES: usize = 4096;

/// One element of a compiled component pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    /// This exact character.
    Literal(char),
    /// `?`: any one character.
    Any,
    /// `*`: any run of characters, the empty one included.
    Star,
    /// `[...]`: one character in (or, negated, not in) the ranges.
    Class { negated: bool, ranges: Vec<(char, char)> },
}

/// A compiled pattern for one path component (no `/` inside).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComponentPattern {
    tokens: Vec<Token>,
}

impl ComponentPattern {
    /// Compiles `pattern`; an unclosed `[`, an empty class or a trailing `\` is an error.
    pub fn new(pattern: &str) -> Result<ComponentPattern, String> {
        let mut tokens = Vec::new();
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '*' => {
                    if tokens.last() != Some(&Token::Star) {
                        tokens.push(Token::Star);
                    }
                }
                '?' => tokens.push(Token::Any),
                '\\' => tokens.push(Token::Literal(chars.next().ok_or_else(|| format!("{pattern:?} ends with an escape character '\\'"))?)),
                '[' => {
                    let negated = matches!(chars.peek(), Some('!' | '^'));
                    if negated {
                        chars.next();
                    }
                    let mut ranges = Vec::new();
                    let mut closed = false;
                    // A `]` right after the opening bracket is a member, as in the shell.
                    let mut first = true;
                    while let Some(c) = chars.next() {
                        if c == ']' && !first {
                            closed = true;
                            break;
                        }
                        first = false;
                        let low = if c == '\\' { chars.next().ok_or_else(|| format!("{pattern:?} has an unclosed '['"))? } else { c };
                        let mut high = low;
                        if chars.peek() == Some(&'-') {
                            let mut ahead = chars.clone();
                            ahead.next();
                            if let Some(&end) = ahead.peek().filter(|e| **e != ']') {
                                chars.next();
                                chars.next();
                                if end < low {
                                    return Err(format!("{pattern:?} has a reversed range [{low}-{end}]"));
                                }
                                high = end;
                            }
                        }
                        ranges.push((low, high));
                    }
                    if !closed {
                        return Err(format!("{pattern:?} has an unclosed '['"));
                    }
                    tokens.push(Token::Class { negated, ranges });
                }
                c => tokens.push(Token::Literal(c)),
            }
        }
        Ok(ComponentPattern { tokens })
    }

    /// True when the pattern has no wildcard, so it names exactly one entry.
    pub fn is_literal(&self) -> bool {
        self.tokens.iter().all(|t| matches!(t, Token::Literal(_)))
    }

    /// True when `name` matches. As in the shell, a leading `.` is matched only by a literal
    /// `.`, so `*` does not pick up hidden entries.
    pub fn matches(&self, name: &str) -> bool {
        if name.starts_with('.') && self.tokens.first() != Some(&Token::Literal('.')) {
            return false;
        }
        let name: Vec<char> = name.chars().collect();
        let (mut t, mut n) = (0, 0);
        // Where to resume after the last `*`: (token after it, name position it now covers to).
        let mut backtrack: Option<(usize, usize)> = None;
        while n < name.len() {
            let step = match self.tokens.get(t) {
                Some(Token::Star) => {
                    backtrack = Some((t + 1, n));
                    t += 1;
                    continue;
                }
                Some(token) => one_char(token, name[n]),
                None => false,
            };
            if step {
                t += 1;
                n += 1;
            } else if let Some((after_star, covered)) = backtrack {
                t = after_star;
                n = covered + 1;
                backtrack = Some((after_star, covered + 1));
            } else {
                return false;
            }
        }
        self.tokens[t..].iter().all(|token| *token == Token::Star)
    }
}

fn one_char(token: &Token, c: char) -> bool {
    match token {
        Token::Literal(l) => *l == c,
        Token::Any => true,
        Token::Star => false,
        Token::Class { negated, ranges } => ranges.iter().any(|(low, high)| (*low..=*high).contains(&c)) != *negated,
    }
}

/// Checks an absolute path glob: absolute, no `.` or `..` components, every component a
/// valid pattern. Returns the compiled components.
pub fn compile(pattern: &str) -> Result<Vec<ComponentPattern>, String> {
    let path = Path::new(pattern);
    if !path.is_absolute() {
        return Err(format!("{pattern:?} is not an absolute path"));
    }
    let mut compiled = Vec::new();
    for component in path.components() {
        match component {
            Component::RootDir => {}
            Component::Normal(part) => {
                let part = part.to_str().ok_or_else(|| format!("{pattern:?} is not valid UTF-8"))?;
                compiled.push(ComponentPattern::new(part)?);
            }
            Component::CurDir | Component::ParentDir | Component::Prefix(_) => return Err(format!("{pattern:?} may not contain '.' or '..' components")),
        }
    }
    if compiled.is_empty() {
        return Err(format!("{pattern:?} names the root directory, not devices"));
    }
    Ok(compiled)
}

/// The existing paths under `root` that match `components`, sorted, at most [`MAX_MATCHES`].
/// Unreadable directories match nothing.
pub fn expand(root: &Path, components: &[ComponentPattern]) -> Vec<PathBuf> {
    let mut current = vec![root.to_path_buf()];
    for pattern in components {
        let mut next = Vec::new();
        for dir in &current {
            if pattern.is_literal() {
                let name: String = pattern.tokens.iter().filter_map(|t| if let Token::Literal(c) = t { Some(*c) } else { None }).collect();
                next.push(dir.join(name));
                continue;
            }
            let Ok(entries) = std::fs::read_dir(dir) else { continue };
            let mut matched: Vec<PathBuf> =
                entries.flatten().filter(|e| e.file_name().to_str().is_some_and(|n| pattern.matches(n))).map(|e| e.path()).collect();
            matched.sort();
            next.extend(matched);
            if next.len() > MAX_MATCHES {
                break;
            }
        }
        next.truncate(MAX_MATCHES);
        current = next;
    }
    current.retain(|p| p.symlink_metadata().is_ok());
    current
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, name: &str) -> bool {
        ComponentPattern::new(pattern).expect("valid pattern").matches(name)
    }

    #[test]
    fn wildcards_match_like_the_shell() {
        assert!(m("video*", "video0"));
        assert!(m("video*", "video"));
        assert!(!m("video*", "vide0"));
        assert!(m("ttyUSB?", "ttyUSB3"));
        assert!(!m("ttyUSB?", "ttyUSB12"));
        assert!(m("tty[AU]*", "ttyACM0") && m("tty[AU]*", "ttyUSB0") && !m("tty[AU]*", "ttyS0"));
        assert!(m("nvidia[0-9]", "nvidia7") && !m("nvidia[0-9]", "nvidiactl"));
        assert!(m("sd[!a]", "sdb") && !m("sd[!a]", "sda") && m("sd[^a]", "sdc"));
        assert!(m("*a*b*c", "xxaxxbxxc") && !m("*a*b*c", "xxaxxcxxb"));
        assert!(m("**", "anything") && m("*", "") && !m("?", ""));
        assert!(m(r"a\*b", "a*b") && !m(r"a\*b", "axb"));
        assert!(m("[]x]", "]") && m("[a-]", "-"));
        assert!(!m("*", ".hidden") && m(".*", ".hidden"));
    }

    #[test]
    fn bad_patterns_say_why() {
        assert!(ComponentPattern::new("video[0-9").unwrap_err().contains("unclosed"));
        assert!(ComponentPattern::new("tty\\").unwrap_err().contains("escape"));
        assert!(ComponentPattern::new("[z-a]").unwrap_err().contains("reversed"));
        assert!(compile("dev/video*").unwrap_err().contains("absolute"));
        assert!(compile("/dev/../etc/*").unwrap_err().contains(".."));
        assert!(compile("/").unwrap_err().contains("root"));
        assert_eq!(compile("/dev/video*").expect("valid").len(), 2);
    }

    #[test]
    fn expansion_walks_every_component() {
        let dir = tempfile::tempdir().expect("tempdir");
        for path in ["a/video0", "a/video1", "a/audio0", "b/video2", "b/.video9", "c/x/video3"] {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, "").expect("file");
        }
        let root = dir.path().display().to_string();
        let found = |glob: &str| {
            let components = compile(&format!("{root}/{glob}")).expect("valid");
            expand(Path::new("/"), &components).into_iter().map(|p| p.strip_prefix(dir.path()).expect("inside").display().to_string()).collect::<Vec<_>>()
        };
        assert_eq!(found("*/video*"), ["a/video0", "a/video1", "b/video2"]);
        assert_eq!(found("a/video1"), ["a/video1"]);
        assert_eq!(found("a/video7"), Vec::<String>::new(), "a literal path that does not exist matches nothing");
        assert_eq!(found("?/*/video[0-9]"), ["c/x/video3"]);
        assert_eq!(found("nowhere/*"), Vec::<String>::new());
    }
}
