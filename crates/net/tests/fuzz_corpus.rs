//! Runs the `dns` fuzz body over the seed corpus in `fuzz/corpus/dns` and thousands of
//! deterministic mutations of it, so the fuzz target's assertions hold on stable in every test run.

#[path = "../../../fuzz/mutate.rs"]
mod mutate;

/// Pieces of DNS messages: label lengths, pointers, counts, types.
const TOKENS: &[&[u8]] = &[b"\x00", b"\x3f", b"\x40", b"\xc0\x0c", b"\xff\xff", b"\x00\x01\x00\x01", b"\x00\x1c", b"\x80", b"\x07cluster\x05local\x00"];

#[test]
fn seeds_do_not_panic() {
    mutate::run_seeds("dns", net::dns::fuzz_query);
}

#[test]
fn mutants_of_the_seeds_do_not_panic() {
    mutate::run_mutants("dns", 0xd45_5eed, 5000, TOKENS, net::dns::fuzz_query);
}
