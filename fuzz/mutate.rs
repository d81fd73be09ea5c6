//! Deterministic mutations of a seed corpus, for the stable-toolchain tests that run the fuzz
//! bodies (`crates/*/tests/fuzz_corpus.rs` include this file by path). A few thousand cheap
//! byte-level edits of real inputs, from a fixed seed, so a failure reproduces exactly.

use std::fs;
use std::path::{Path, PathBuf};

/// The files of `fuzz/corpus/<target>`, sorted by name, with their contents.
pub fn seed_corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("listing the corpus").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no seeds", dir.display());
    files.into_iter().map(|p| (p.clone(), fs::read(&p).expect("reading a seed"))).collect()
}

/// Runs `body` on every seed of `target`, naming the seed that fails.
pub fn run_seeds(target: &str, body: fn(&[u8])) {
    for (path, data) in seed_corpus(target) {
        let outcome = std::panic::catch_unwind(|| body(&data));
        assert!(outcome.is_ok(), "seed {} failed", path.display());
    }
}

/// Runs `body` on `count` mutants of the seeds of `target`, generated from `seed` with `tokens`.
/// A failing mutant is saved under the test's temporary directory for `cargo fuzz run` to replay.
pub fn run_mutants(target: &str, seed: u64, count: usize, tokens: &[&[u8]], body: fn(&[u8])) {
    let seeds: Vec<Vec<u8>> = seed_corpus(target).into_iter().map(|(_, data)| data).collect();
    let mut mutator = Mutator::new(seed);
    for i in 0..count {
        let data = mutator.mutant(&seeds, tokens);
        if std::panic::catch_unwind(|| body(&data)).is_err() {
            let saved = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{target}-mutant-{i}"));
            fs::write(&saved, &data).expect("saving the failing mutant");
            panic!("mutant {i} of the {target} corpus failed; input saved to {}", saved.display());
        }
    }
}

/// An xorshift64* generator and the edits it drives.
pub struct Mutator {
    state: u64,
}

impl Mutator {
    /// A generator that always yields the same sequence for the same `seed`.
    pub fn new(seed: u64) -> Self {
        Mutator { state: seed.max(1) }
    }

    fn next(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`0` when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    /// One mutant: a random seed with one to four edits (bit flips, byte sets, `tokens` inserted
    /// or written over, deletions, duplications, splices from another seed, truncation).
    pub fn mutant(&mut self, seeds: &[Vec<u8>], tokens: &[&[u8]]) -> Vec<u8> {
        let mut data = seeds[self.below(seeds.len())].clone();
        for _ in 0..=self.below(4) {
            let at = self.below(data.len() + 1);
            match self.below(9) {
                0 if !data.is_empty() => {
                    let i = self.below(data.len());
                    data[i] ^= 1 << self.below(8);
                }
                1 if !data.is_empty() => {
                    let i = self.below(data.len());
                    data[i] = [0, 0xff, 0x7f, 0x80, b'/', b'.', b'\n', b' ', b'0', b'7'][self.below(10)];
                }
                2 if !tokens.is_empty() => {
                    let token = tokens[self.below(tokens.len())];
                    data.splice(at..at, token.iter().copied());
                }
                3 => {
                    let end = (at + 1 + self.below(64)).min(data.len());
                    data.drain(at.min(end)..end);
                }
                4 => {
                    let end = (at + 1 + self.below(64)).min(data.len());
                    let copy = data[at.min(end)..end].to_vec();
                    let to = self.below(data.len() + 1);
                    data.splice(to..to, copy);
                }
                5 => {
                    let other = &seeds[self.below(seeds.len())];
                    let from = self.below(other.len() + 1);
                    let end = (from + 1 + self.below(512)).min(other.len());
                    data.splice(at..at, other[from.min(end)..end].iter().copied());
                }
                6 => data.truncate(at),
                7 if !tokens.is_empty() => {
                    let token = tokens[self.below(tokens.len())];
                    let end = (at + token.len()).min(data.len());
                    data.splice(at..end, token.iter().copied());
                }
                _ => {
                    let i = self.below(data.len() + 1);
                    data.insert(i, self.next() as u8);
                }
            }
        }
        data
    }
}
