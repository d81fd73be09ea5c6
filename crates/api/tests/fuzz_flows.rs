//! Runs the `flows` fuzz body over the seed corpus in `fuzz/corpus/flows` and thousands of
//! deterministic mutations of it, so the fuzz target's assertions hold on stable in every test run.

#[path = "../../../fuzz/mutate.rs"]
mod mutate;

/// Pieces of flow queries and flow lines.
const TOKENS: &[&[u8]] = &[
    b"&",
    b"=",
    b"/",
    b"pod=",
    b"namespace=",
    b"verdict=",
    b"last=",
    b"follow=",
    b"node=",
    b"+",
    b"-1",
    b"99999999999999999999999",
    b"\"DROPPED\"",
    b"\"EGRESS\"",
    b"\"port\":65536",
    b"\"identity\":-1",
    b"\"time\":\"9999-12-31T23:59:59Z\"",
    b"null",
    b"\xff",
];

#[test]
fn seeds_do_not_panic() {
    mutate::run_seeds("flows", api::fuzzing::flows);
}

#[test]
fn mutants_of_the_seeds_do_not_panic() {
    mutate::run_mutants("flows", 0xf10_5eed, 5000, TOKENS, api::fuzzing::flows);
}
