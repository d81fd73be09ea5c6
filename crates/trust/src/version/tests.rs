use std::cmp::Ordering::{self, Equal, Greater, Less};
use std::io::Write as _;
use std::process::{Command, Stdio};

use proptest::prelude::*;

use super::Scheme;

fn check(scheme: Scheme, cases: &[(&str, &str, Ordering)]) {
    for (a, b, want) in cases {
        assert_eq!(scheme.compare(a, b), Some(*want), "{scheme:?}: {a} vs {b}");
        assert_eq!(scheme.compare(b, a), Some(want.reverse()), "{scheme:?}: {b} vs {a}");
    }
}

#[test]
fn dpkg_examples() {
    check(
        Scheme::Dpkg,
        &[
            ("1.0~rc1", "1.0", Less),
            ("1.0~~", "1.0~", Less),
            ("1.0", "1.0+b1", Less),
            ("1:0.9", "2.0", Greater),
            ("1.2.3-1", "1.2.3-1+deb12u1", Less),
            ("1.21.3-1+deb12u1", "1.21.4-1", Less),
            ("2021a-0+deb9u4", "2021a-0+deb9u3", Greater),
            ("1.0a", "1.0-", Greater),
            ("1.0", "1.0-0", Equal),
            ("0010", "10", Equal),
            ("1.18.25", "1.18.26", Less),
        ],
    );
    assert_eq!(Scheme::Dpkg.compare("x:1", "1"), None);
}

#[test]
fn apk_examples() {
    check(
        Scheme::Apk,
        &[
            ("1.2.3", "1.2.3-r1", Less),
            ("1.2.3-r9", "1.2.3-r10", Less),
            ("1.2.3_rc1", "1.2.3", Less),
            ("1.2.3_alpha", "1.2.3_beta", Less),
            ("1.2.3", "1.2.3_p1", Less),
            ("1.2.3a", "1.2.3b", Less),
            ("1.2.3", "1.2.3.1", Less),
            ("1.2.3-r1", "1.2.3.1", Less),
            ("1.02", "1.1", Less),
            ("2.6.6-r0", "2.6.12-r0", Less),
            ("1.2.5-r0", "1.2.5-r9", Less),
        ],
    );
    assert_eq!(Scheme::Apk.compare("1..2", "1"), None);
}

#[test]
fn semver_examples() {
    check(
        Scheme::Semver,
        &[
            ("1.0.0-alpha", "1.0.0-alpha.1", Less),
            ("1.0.0-alpha.1", "1.0.0-alpha.beta", Less),
            ("1.0.0-beta.2", "1.0.0-beta.11", Less),
            ("1.0.0-rc.1", "1.0.0", Less),
            ("1.0.0+build.5", "1.0.0", Equal),
            ("v1.2", "1.2.0", Equal),
            ("0.21.11", "0.23.5", Less),
            ("99999999999999999999.0.0", "1.0.0", Greater),
        ],
    );
    assert_eq!(Scheme::Semver.compare("1.2.3.4", "1"), None);
}

#[test]
fn pep440_examples() {
    check(
        Scheme::Pep440,
        &[
            ("1.0.dev1", "1.0a1", Less),
            ("1.0a1", "1.0b1", Less),
            ("1.0rc1", "1.0", Less),
            ("1.0", "1.0.post1", Less),
            ("1.0.post1.dev1", "1.0.post1", Less),
            ("1.0", "1.0.0", Equal),
            ("1.0-1", "1.0.post1", Equal),
            ("1.0+local.7", "1.0", Greater),
            ("1.0+abc", "1.0+5", Less),
            ("1!0.1", "2.0", Greater),
            ("1.0ALPHA2", "1.0a2", Equal),
            ("2.2.28", "2.2.3", Greater),
        ],
    );
    assert_eq!(Scheme::Pep440.compare("not a version", "1"), None);
}

#[test]
fn ecosystems_map_to_schemes() {
    assert_eq!(Scheme::for_ecosystem("Debian:12"), Some(Scheme::Dpkg));
    assert_eq!(Scheme::for_ecosystem("Alpine:v3.18"), Some(Scheme::Apk));
    assert_eq!(Scheme::for_ecosystem("crates.io"), Some(Scheme::Semver));
    assert_eq!(Scheme::for_ecosystem("PyPI"), Some(Scheme::Pep440));
    assert_eq!(Scheme::for_ecosystem("Maven"), None);
}

/// Runs `program` with one "a b" pair per stdin line and reads one of `<`, `=`, `>` per line.
fn oracle(program: &str, args: &[&str], pairs: &[(String, String)]) -> Vec<Ordering> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("the reference ordering {program} cannot run ({e}): scripts/deps.sh installs it"));
    let input: String = pairs.iter().map(|(a, b)| format!("{a} {b}\n")).collect();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{program} failed: {out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| match l {
            "<" => Less,
            "=" => Equal,
            ">" => Greater,
            other => panic!("{program} answered {other:?}"),
        })
        .collect()
}

fn agree(scheme: Scheme, pairs: &[(String, String)], reference: &[Ordering]) -> Result<(), TestCaseError> {
    prop_assert_eq!(pairs.len(), reference.len());
    for ((a, b), want) in pairs.iter().zip(reference) {
        prop_assert_eq!(scheme.compare(a, b), Some(*want), "{:?}: {} vs {}", scheme, a, b);
    }
    Ok(())
}

fn dpkg_version() -> impl Strategy<Value = String> + Clone {
    ("(|[0-3]:)", "[0-9][0-9a-z.+~]{0,6}", "(|-[0-9a-z.+~]{1,5})").prop_map(|(e, u, r)| format!("{e}{u}{r}"))
}

fn semver_version() -> impl Strategy<Value = String> + Clone {
    let number = "(0|[1-9][0-9]?)";
    let identifier = "(0|[1-9][0-9]?|alpha|beta|rc|x[0-9a-z]{0,2})";
    (number, number, number, proptest::collection::vec(identifier, 0..3)).prop_map(|(major, minor, patch, pre)| {
        let pre = if pre.is_empty() { String::new() } else { format!("-{}", pre.join(".")) };
        format!("{major}.{minor}.{patch}{pre}")
    })
}

fn pep440_version() -> impl Strategy<Value = String> + Clone {
    (
        "(|[0-2]!)",
        "[0-9]{1,2}(\\.[0-9]{1,2}){0,3}",
        "(|a|b|rc|alpha|c|-beta)(|[0-9])",
        "(|\\.post[0-9]|-[1-3])",
        "(|\\.dev[0-9])",
        "(|\\+[a-z0-9]{1,3}(\\.[a-z0-9]{1,2})?)",
    )
        .prop_map(|(e, r, p, post, dev, local)| {
            let p = if p.chars().all(|c| c.is_ascii_digit()) { String::new() } else { p };
            format!("{e}{r}{p}{post}{dev}{local}")
        })
}

fn pairs(version: impl Strategy<Value = String> + Clone) -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::vec((version.clone(), version), 200)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4, ..ProptestConfig::default() })]

    /// dpkg itself is the reference: `dpkg --compare-versions`.
    #[test]
    fn dpkg_agrees_with_dpkg(pairs in pairs(dpkg_version())) {
        let reference: Vec<Ordering> = pairs
            .iter()
            .map(|(a, b)| {
                let lt = Command::new("dpkg").args(["--compare-versions", a, "lt", b]).status().expect("dpkg runs").success();
                let eq = Command::new("dpkg").args(["--compare-versions", a, "eq", b]).status().expect("dpkg runs").success();
                if lt { Less } else if eq { Equal } else { Greater }
            })
            .collect();
        agree(Scheme::Dpkg, &pairs, &reference)?;
    }

    /// Python's `packaging` (python3-packaging) is the reference for PEP 440.
    #[test]
    fn pep440_agrees_with_python_packaging(pairs in pairs(pep440_version())) {
        let script = "import sys\nfrom packaging.version import Version\nfor line in sys.stdin:\n    a, b = map(Version, line.split())\n    print('<' if a < b else '=' if a == b else '>')\n";
        let reference = oracle("/usr/bin/python3", &["-c", script], &pairs);
        agree(Scheme::Pep440, &pairs, &reference)?;
    }

    /// npm's `semver` (node-semver) is the reference for Semantic Versioning.
    #[test]
    fn semver_agrees_with_node_semver(pairs in pairs(semver_version())) {
        let script = "const cmp=require('/usr/share/nodejs/semver/functions/compare');const l=require('fs').readFileSync(0,'utf8').trim().split('\\n');for(const x of l){const [a,b]=x.split(' ');const c=cmp(a,b);console.log(c<0?'<':c>0?'>':'=')}";
        let reference = oracle("node", &["-e", script], &pairs);
        agree(Scheme::Semver, &pairs, &reference)?;
    }

    /// Every scheme is a total order on what it accepts: antisymmetric and transitive.
    #[test]
    fn apk_is_a_total_order(v in proptest::collection::vec("[0-9]{1,2}(\\.[0-9]{1,2}){0,2}[a-c]?(_(alpha|rc|p|git)[0-9]?)?(-r[0-9])?", 3)) {
        let cmp = |a: &str, b: &str| Scheme::Apk.compare(a, b).expect("generated versions are valid");
        prop_assert_eq!(cmp(&v[0], &v[1]), cmp(&v[1], &v[0]).reverse());
        if cmp(&v[0], &v[1]) != Greater && cmp(&v[1], &v[2]) != Greater {
            prop_assert_ne!(cmp(&v[0], &v[2]), Greater);
        }
    }
}
