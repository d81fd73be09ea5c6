//! Runs the `layer` and `layer_entries` fuzz bodies over their seed corpora in `fuzz/corpus/` and
//! thousands of deterministic mutations of them, so the fuzz targets' assertions hold on stable in
//! every test run.

#[path = "../../../fuzz/mutate.rs"]
mod mutate;

/// Path pieces, tar type flags and header fields, for insertions and overwrites.
const TOKENS: &[&[u8]] = &[
    b"../",
    b"..",
    b"/",
    b"./",
    b"outside",
    b"root",
    b".wh.",
    b".wh..wh..opq",
    b"0",
    b"1",
    b"2",
    b"3",
    b"5",
    b"6",
    b"7",
    b"x",
    b"g",
    b"L",
    b"K",
    b"ustar\x0000",
    b"ustar  \x00",
    b"00000000777",
    b"77777777777",
    b"\x80\x00\x00\x00",
    b"\xff\xff\xff\xff",
    b"24 path=../outside/file\n",
    b"30 SCHILY.xattr.user.a=bcdefg\n",
];

#[test]
fn seeds_do_not_escape_the_root() {
    mutate::run_seeds("layer", image::fuzzing::layer);
}

#[test]
fn mutants_of_the_seeds_do_not_escape_the_root() {
    mutate::run_mutants("layer", 0x1a7e_5eed, 1000, TOKENS, image::fuzzing::layer);
}

#[test]
fn entry_list_seeds_do_not_escape_the_root() {
    mutate::run_seeds("layer_entries", image::fuzzing::layer_entries);
}

#[test]
fn mutants_of_the_entry_list_seeds_do_not_escape_the_root() {
    mutate::run_mutants("layer_entries", 0xe7_7a1e5, 1500, &[], image::fuzzing::layer_entries);
}
