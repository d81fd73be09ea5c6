//! Label selectors: the string form (`app=web,tier!=db,env in (a,b),!legacy`) and the object
//! form (`matchLabels`, `matchExpressions`), matched against an object's labels.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as LabelSelectorObject;

/// One requirement of a selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// `key=value` / `key==value` / `key in (a,b)`.
    In(String, Vec<String>),
    /// `key!=value` / `key notin (a,b)` (also matches when the key is absent).
    NotIn(String, Vec<String>),
    /// `key`.
    Exists(String),
    /// `!key`.
    DoesNotExist(String),
}

/// A conjunction of requirements; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector(pub Vec<Requirement>);

/// Why a selector could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("label selector \"{text}\": {why}")]
pub struct SelectorError {
    /// The selector text, or the field path for object selectors.
    pub text: String,
    /// What is wrong.
    pub why: String,
}

impl Selector {
    /// Parses the string form used in `?labelSelector=` and `-l`.
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        let err = |why: &str| SelectorError { text: text.to_string(), why: why.to_string() };
        let mut requirements = Vec::new();
        for term in split_terms(text) {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            let req = if let Some(key) = term.strip_prefix('!') {
                Requirement::DoesNotExist(checked_key(key.trim()).map_err(|w| err(&w))?)
            } else if let Some((key, values)) = split_set(term, " notin ") {
                Requirement::NotIn(checked_key(key).map_err(|w| err(&w))?, values.map_err(|w| err(&w))?)
            } else if let Some((key, values)) = split_set(term, " in ") {
                Requirement::In(checked_key(key).map_err(|w| err(&w))?, values.map_err(|w| err(&w))?)
            } else if let Some((key, value)) = term.split_once("!=") {
                Requirement::NotIn(checked_key(key.trim()).map_err(|w| err(&w))?, vec![value.trim().to_string()])
            } else if let Some((key, value)) = term.split_once("==").or_else(|| term.split_once('=')) {
                Requirement::In(checked_key(key.trim()).map_err(|w| err(&w))?, vec![value.trim().to_string()])
            } else {
                Requirement::Exists(checked_key(term).map_err(|w| err(&w))?)
            };
            requirements.push(req);
        }
        Ok(Selector(requirements))
    }

    /// Converts the object form found in Deployment and NetworkPolicy specs.
    pub fn from_object(object: &LabelSelectorObject) -> Result<Selector, SelectorError> {
        let mut requirements = Vec::new();
        for (k, v) in object.match_labels.iter().flatten() {
            requirements.push(Requirement::In(k.clone(), vec![v.clone()]));
        }
        for (i, expr) in object.match_expressions.iter().flatten().enumerate() {
            let values = expr.values.clone().unwrap_or_default();
            let err = |why: &str| SelectorError { text: format!("matchExpressions[{i}]"), why: why.to_string() };
            let req = match expr.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => return Err(err("values must be non-empty for In and NotIn")),
                "In" => Requirement::In(expr.key.clone(), values),
                "NotIn" => Requirement::NotIn(expr.key.clone(), values),
                "Exists" => Requirement::Exists(expr.key.clone()),
                "DoesNotExist" => Requirement::DoesNotExist(expr.key.clone()),
                other => return Err(err(&format!("operator \"{other}\" is not one of In, NotIn, Exists, DoesNotExist"))),
            };
            requirements.push(req);
        }
        Ok(Selector(requirements))
    }

    /// True when `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        })
    }

    /// True for the selector that matches everything.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Splits on commas that are not inside parentheses.
fn split_terms(text: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&text[start..]);
    terms
}

type SetValues = Result<Vec<String>, String>;

fn split_set<'a>(term: &'a str, op: &str) -> Option<(&'a str, SetValues)> {
    let (key, rest) = term.split_once(op)?;
    let rest = rest.trim();
    let values = match rest.strip_prefix('(').and_then(|r| r.strip_suffix(')')) {
        Some(inner) => Ok(inner.split(',').map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect()),
        None => Err(format!("expected ({}) after \"{}\"", "a,b", op.trim())),
    };
    Some((key.trim(), values))
}

fn checked_key(key: &str) -> Result<String, String> {
    let valid = !key.is_empty() && key.len() <= 317 && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if valid {
        Ok(key.to_string())
    } else {
        Err(format!("\"{key}\" is not a valid label key"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn string_forms() {
        let s = Selector::parse("app=web,tier!=db,env in (a, b),!legacy,team").unwrap();
        assert!(s.matches(&labels(&[("app", "web"), ("env", "a"), ("team", "x")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("env", "c"), ("team", "x")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("env", "a"), ("team", "x"), ("legacy", "1")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("env", "a"), ("team", "x"), ("tier", "db")])));
        assert!(Selector::parse("").unwrap().matches(&labels(&[])));
        assert!(Selector::parse("a in b").is_err());
        assert!(Selector::parse("a b=c").is_err());
        let notin = Selector::parse("env notin (prod)").unwrap();
        assert!(notin.matches(&labels(&[])));
        assert!(!notin.matches(&labels(&[("env", "prod")])));
    }
}
