//! Priority classes: the built-in system classes, defaults and validation of user classes, and
//! how a pod's `priorityClassName` becomes its `spec.priority`.

use crate::{FieldError, FieldErrors, PriorityClass};

/// The highest value a user-defined class may have; higher values are for system classes.
pub const HIGHEST_USER_PRIORITY: i32 = 1_000_000_000;

/// The classes every cluster has: name and value (as in Kubernetes).
pub const SYSTEM_CLASSES: [(&str, i32); 2] = [("system-cluster-critical", 2_000_000_000), ("system-node-critical", 2_000_001_000)];

/// The preemption policies a class or pod may name.
pub const POLICIES: [&str; 2] = ["PreemptLowerPriority", "Never"];

/// Fills in a class's defaults.
pub fn default_class(class: &mut PriorityClass) {
    class.preemption_policy.get_or_insert_with(|| "PreemptLowerPriority".to_string());
}

/// Checks a user-defined class.
pub fn validate_class(class: &PriorityClass, errors: &mut FieldErrors) {
    let name = class.metadata.name.as_deref().unwrap_or("");
    if name.starts_with("system-") {
        errors.push(FieldError::invalid("metadata.name", name, "the system- prefix is reserved for built-in priority classes"));
    }
    if class.value > HIGHEST_USER_PRIORITY {
        errors.push(FieldError::invalid("value", class.value, &format!("must be at most {HIGHEST_USER_PRIORITY} for user-defined classes")));
    }
    if let Some(p) = class.preemption_policy.as_deref() {
        if !POLICIES.contains(&p) {
            errors.push(FieldError::invalid("preemptionPolicy", p, "must be PreemptLowerPriority or Never"));
        }
    }
}

/// A built-in class by name: its value.
pub fn system_class(name: &str) -> Option<i32> {
    SYSTEM_CLASSES.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}
