//! Runs the `osv`, `inventory` and `signature` fuzz bodies over their seed corpora in `fuzz/corpus/` and
//! deterministic mutations of them, so the fuzz targets' assertions hold on stable in every run.

#[path = "../../../fuzz/mutate.rs"]
mod mutate;

const OSV_TOKENS: &[&[u8]] = &[
    b"\"introduced\"",
    b"\"fixed\"",
    b"\"last_affected\"",
    b"\"limit\"",
    b"\"0\"",
    b"\"~\"",
    b"\"1:\"",
    b"\"-r\"",
    b"\"rc1\"",
    b"\"Debian:12\"",
    b"\"PyPI\"",
    b"\"Alpine:v3.18\"",
    b"\"crates.io\"",
    b"\"SEMVER\"",
    b"\"GIT\"",
    b"null",
    b"[]",
    b"{}",
    b"99999999999999999999999",
];

const INVENTORY_TOKENS: &[&[u8]] = &[
    b"\n\n",
    b"Package: ",
    b"Version: ",
    b"Status: install ok installed\n",
    b"Source: x (",
    b"P:",
    b"V:",
    b"o:",
    b"[[package]]",
    b"node_modules/",
    b"\"version\"",
    b"Name: ",
    b"ID=",
    b"\x7fELF",
    b"\xff Go buildinf:",
];

#[test]
fn osv_seeds() {
    mutate::run_seeds("osv", trust::fuzzing::osv);
}

#[test]
fn osv_mutants() {
    mutate::run_mutants("osv", 0x05f5_eed0, 1500, OSV_TOKENS, trust::fuzzing::osv);
}

#[test]
fn inventory_seeds() {
    mutate::run_seeds("inventory", trust::fuzzing::inventory);
}

#[test]
fn inventory_mutants() {
    mutate::run_mutants("inventory", 0x1bad_5eed, 400, INVENTORY_TOKENS, trust::fuzzing::inventory);
}

const SIGNATURE_TOKENS: &[&[u8]] = &[
    b"\"critical\"",
    b"\"docker-manifest-digest\"",
    b"\"cosign container image signature\"",
    b"\"optional\"",
    b"\"dsseEnvelope\"",
    b"\"payloadType\"",
    b"\"signatures\"",
    b"\"application/vnd.dev.sigstore.bundle.v0.3+json\"",
    b"null",
    b"{}",
    b"MEUCIQ",
];

#[test]
fn signature_seeds() {
    mutate::run_seeds("signature", trust::fuzzing::signature);
}

#[test]
fn signature_mutants() {
    mutate::run_mutants("signature", 0x5160_5eed, 1500, SIGNATURE_TOKENS, trust::fuzzing::signature);
}
