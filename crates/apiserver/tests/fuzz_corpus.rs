//! Runs the `join_request` fuzz body over the seed corpus in `fuzz/corpus/join_request` and
//! deterministic mutations of it, so the fuzz target's assertions hold on stable in every run.

#[path = "../../../fuzz/mutate.rs"]
mod mutate;

/// Pieces of JSON, of the request's fields and of PEM, for insertions and overwrites.
const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"\"",
    b"\\u0000",
    b"\\n",
    b":",
    b",",
    b"null",
    b"\"nodeName\": ",
    b"\"nodeSecret\": ",
    b"\"servingCsr\": ",
    b"-----BEGIN CERTIFICATE REQUEST-----\\n",
    b"-----END CERTIFICATE REQUEST-----\\n",
    b"MIIB",
    b"==",
    b"a.b.c",
    b"..",
    b"\xff",
];

#[test]
fn seeds_do_not_panic() {
    mutate::run_seeds("join_request", apiserver::fuzzing::join_request);
}

#[test]
fn mutants_of_the_seeds_do_not_panic() {
    mutate::run_mutants("join_request", 0x101_7e57, 3000, TOKENS, apiserver::fuzzing::join_request);
}
