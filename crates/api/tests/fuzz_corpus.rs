//! Runs the `manifest` fuzz body over the seed corpus in `fuzz/corpus/manifest` and thousands of
//! deterministic mutations of it, so the fuzz target's assertions hold on stable in every test run.

#[path = "../../../fuzz/mutate.rs"]
mod mutate;

/// Pieces of YAML and JSON syntax and of the manifest schema, for insertions and overwrites.
const TOKENS: &[&[u8]] = &[
    b"\n---\n",
    b": ",
    b"\n- ",
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b"'",
    b"&a ",
    b"*a",
    b"<<: *a\n",
    b"!!str ",
    b"!!binary ",
    b"|\n",
    b">-\n",
    b"~",
    b"null",
    b"-1",
    b"1e400",
    b"99999999999999999999",
    b"0x1F",
    b"kind: List\nitems:\n",
    b"apiVersion: v1\n",
    b"kind: Pod\n",
    b"apps/v1",
    b"Deployment",
    b"metadata:\n  name: x\n",
    b"containers: []",
    b"999999999999999999%",
    b".170141183460469231731687303715M",
    b"\t",
    b"\r\n",
    b"\xef\xbb\xbf",
    b"\xff",
    b"flotilla.dev/v1alpha1",
    b"Function",
    b"nats://",
    b"mqtt://",
    b"sensors.>",
    b"cams/+/#",
    b"qos: 3",
    b"ackWait: 0s",
    b"maxDeliver: -1",
    b"backoff: [1s, x]",
    b"18446744073709551616ms",
];

#[test]
fn seeds_do_not_panic() {
    mutate::run_seeds("manifest", api::fuzzing::manifest);
}

#[test]
fn mutants_of_the_seeds_do_not_panic() {
    mutate::run_mutants("manifest", 0x5eed_3a41_f357, 3000, TOKENS, api::fuzzing::manifest);
}
