//! Configured device classes (`--device-class camera=/dev/video*`): a name, the extended
//! resource it is advertised as, and the path globs whose device nodes are its units.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::glob::{self, ComponentPattern};
use super::{DeviceError, CLASS_RESOURCE_PREFIX};

/// The longest class name: a DNS label.
const MAX_NAME: usize = 63;

/// A named set of device nodes, each one unit of `flotilla.dev/<name>`.
#[derive(Clone, Debug)]
pub struct DeviceClass {
    name: String,
    globs: Vec<String>,
    compiled: Vec<Vec<ComponentPattern>>,
}

impl PartialEq for DeviceClass {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.globs == other.globs
    }
}

impl Eq for DeviceClass {}

impl DeviceClass {
    /// A class named `name` (a DNS label) matching any of `globs` (absolute path globs).
    pub fn new(name: &str, globs: &[&str]) -> Result<DeviceClass, DeviceError> {
        let value = format!("{name}={}", globs.join(","));
        let invalid = |reason: String| DeviceError::InvalidClass { value: value.clone(), reason };
        validate_name(name).map_err(invalid)?;
        if globs.is_empty() {
            return Err(invalid("give at least one path glob after '=', e.g. camera=/dev/video*".into()));
        }
        let compiled = globs.iter().map(|g| glob::compile(g.trim())).collect::<Result<Vec<_>, _>>().map_err(invalid)?;
        Ok(DeviceClass { name: name.to_string(), globs: globs.iter().map(|g| g.trim().to_string()).collect(), compiled })
    }

    /// The class name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The path globs, as given.
    pub fn globs(&self) -> &[String] {
        &self.globs
    }

    /// The extended resource the class is advertised as: `flotilla.dev/<name>`.
    pub fn resource(&self) -> String {
        format!("{CLASS_RESOURCE_PREFIX}{}", self.name)
    }

    /// The existing paths matching the class. A glob under `/dev/` is looked up under
    /// `dev_root` instead (the same place on a real node; a scratch directory in tests).
    pub fn expand(&self, dev_root: &Path) -> Vec<PathBuf> {
        let mut paths = Vec::new();
        for (glob, compiled) in self.globs.iter().zip(&self.compiled) {
            let (root, components) = if glob.starts_with("/dev/") { (dev_root, &compiled[1..]) } else { (Path::new("/"), &compiled[..]) };
            for path in glob::expand(root, components) {
                if !paths.contains(&path) {
                    paths.push(path);
                }
            }
        }
        paths
    }
}

impl FromStr for DeviceClass {
    type Err = DeviceError;

    /// Parses `NAME=GLOB[,GLOB...]`, the form of the `--device-class` flag.
    fn from_str(value: &str) -> Result<DeviceClass, DeviceError> {
        let Some((name, globs)) = value.split_once('=') else {
            return Err(DeviceError::InvalidClass {
                value: value.to_string(),
                reason: "expected NAME=GLOB[,GLOB...], e.g. camera=/dev/video* or serial=/dev/ttyUSB*,/dev/ttyACM*".into(),
            });
        };
        let globs: Vec<&str> = globs.split(',').map(str::trim).filter(|g| !g.is_empty()).collect();
        DeviceClass::new(name.trim(), &globs).map_err(|e| match e {
            DeviceError::InvalidClass { reason, .. } => DeviceError::InvalidClass { value: value.to_string(), reason },
            other => other,
        })
    }
}

impl fmt::Display for DeviceClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.name, self.globs.join(","))
    }
}

/// A class name is a DNS label: 1 to 63 lower-case letters, digits and '-', starting and
/// ending with a letter or digit, so `flotilla.dev/<name>` is a valid resource name.
fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(format!("class name {name:?} must be 1 to {MAX_NAME} characters"));
    }
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Err(format!("class name {name:?} may contain only lower-case letters, digits and '-'"));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(format!("class name {name:?} must start and end with a letter or digit"));
    }
    Ok(())
}

/// Checks that no two classes share a name.
pub fn check_unique(classes: &[DeviceClass]) -> Result<(), DeviceError> {
    for (i, class) in classes.iter().enumerate() {
        if classes[..i].iter().any(|c| c.name == class.name) {
            return Err(DeviceError::InvalidClass { value: class.to_string(), reason: format!("class {:?} is given more than once", class.name) });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_values_parse() {
        let camera: DeviceClass = "camera=/dev/video*".parse().expect("valid");
        assert_eq!((camera.name(), camera.globs()), ("camera", &["/dev/video*".to_string()][..]));
        assert_eq!(camera.resource(), "flotilla.dev/camera");
        let serial: DeviceClass = "serial=/dev/ttyUSB*, /dev/ttyACM*".parse().expect("valid");
        assert_eq!(serial.globs(), ["/dev/ttyUSB*", "/dev/ttyACM*"]);
        assert_eq!(serial.to_string(), "serial=/dev/ttyUSB*,/dev/ttyACM*");
        assert!("gpio-2=/sys/class/gpio/gpio[0-9]*".parse::<DeviceClass>().is_ok());
    }

    #[test]
    fn bad_flag_values_are_named_with_the_reason() {
        let cases = [
            ("camera", "expected NAME=GLOB"),
            ("=/dev/video*", "1 to 63"),
            ("Camera=/dev/video*", "lower-case"),
            ("cam_era=/dev/video*", "lower-case"),
            ("-cam=/dev/video*", "start and end"),
            ("camera=", "at least one path glob"),
            ("camera=video*", "absolute"),
            ("camera=/dev/video[0-9", "unclosed"),
            ("camera=/dev/../mem", "'..'"),
        ];
        for (value, reason) in cases {
            let err = value.parse::<DeviceClass>().expect_err(value).to_string();
            assert!(err.contains(&format!("{value:?}")), "{value}: {err}");
            assert!(err.contains(reason), "{value}: {err}");
        }
        let long = format!("{}=/dev/x", "a".repeat(64));
        assert!(long.parse::<DeviceClass>().is_err());
    }

    #[test]
    fn duplicate_names_are_refused() {
        let classes: Vec<DeviceClass> = ["a=/dev/x", "b=/dev/y", "a=/dev/z"].iter().map(|v| v.parse().expect("valid")).collect();
        let err = check_unique(&classes).expect_err("duplicate").to_string();
        assert!(err.contains("\"a=/dev/z\"") && err.contains("more than once"), "{err}");
        assert!(check_unique(&classes[..2]).is_ok());
    }

    #[test]
    fn dev_globs_are_looked_up_under_the_dev_root() {
        let dev = tempfile::tempdir().expect("tempdir");
        std::fs::write(dev.path().join("video0"), "").expect("file");
        std::fs::write(dev.path().join("video1"), "").expect("file");
        let class: DeviceClass = "camera=/dev/video*,/dev/video0".parse().expect("valid");
        assert_eq!(class.expand(dev.path()), [dev.path().join("video0"), dev.path().join("video1")], "each path once");
    }
}
