//! Field errors that name the exact path at fault, e.g. `spec.containers[0].image: Required value`.

use std::fmt;

/// One problem with one field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path with indexes, e.g. `spec.template.spec.containers[0].image`.
    pub path: String,
    /// What is wrong, in the words Kubernetes uses ("Required value", "Invalid value: ...").
    pub message: String,
}

impl FieldError {
    /// A required field that is missing or empty.
    pub fn required(path: impl Into<String>, hint: &str) -> Self {
        let message = if hint.is_empty() { "Required value".to_string() } else { format!("Required value: {hint}") };
        FieldError { path: path.into(), message }
    }

    /// A field whose value is not acceptable.
    pub fn invalid(path: impl Into<String>, value: impl fmt::Display, why: &str) -> Self {
        FieldError { path: path.into(), message: format!("Invalid value: \"{value}\": {why}") }
    }

    /// A field whose value is not one of the supported choices.
    pub fn not_supported(path: impl Into<String>, value: impl fmt::Display, supported: &[&str]) -> Self {
        let choices: Vec<String> = supported.iter().map(|s| format!("\"{s}\"")).collect();
        FieldError { path: path.into(), message: format!("Unsupported value: \"{value}\": supported values: {}", choices.join(", ")) }
    }

    /// A field the schema does not have.
    pub fn unknown(path: impl Into<String>) -> Self {
        FieldError { path: path.into(), message: "unknown field".to_string() }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// All the problems found in one object; empty means valid.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldErrors(pub Vec<FieldError>);

impl FieldErrors {
    /// Adds one error.
    pub fn push(&mut self, e: FieldError) {
        self.0.push(e);
    }

    /// True when nothing is wrong.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(())` when empty, the errors otherwise.
    pub fn into_result(self) -> Result<(), FieldErrors> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|e| e.to_string()).collect();
        if parts.len() == 1 {
            write!(f, "{}", parts[0])
        } else {
            write!(f, "[{}]", parts.join(", "))
        }
    }
}

impl std::error::Error for FieldErrors {}

/// Builds child paths: `join("spec", "containers")` → `spec.containers`.
pub fn join(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_string()
    } else {
        format!("{parent}.{child}")
    }
}

/// Builds indexed paths: `index("spec.containers", 0)` → `spec.containers[0]`.
pub fn index(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}
