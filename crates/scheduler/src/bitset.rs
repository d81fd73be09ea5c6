//! A fixed-universe set of node slots: one bit per node, so intersecting the nodes that carry a
//! label with the nodes that have a GPU costs a few dozen word operations.

/// A set of node slot numbers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bitset {
    words: Vec<u64>,
}

impl Bitset {
    /// Adds `slot`.
    pub fn insert(&mut self, slot: usize) {
        let word = slot / 64;
        if word >= self.words.len() {
            self.words.resize(word + 1, 0);
        }
        self.words[word] |= 1 << (slot % 64);
    }

    /// Removes `slot`.
    pub fn remove(&mut self, slot: usize) {
        if let Some(w) = self.words.get_mut(slot / 64) {
            *w &= !(1 << (slot % 64));
        }
    }

    /// True when `slot` is in the set.
    pub fn contains(&self, slot: usize) -> bool {
        self.words.get(slot / 64).is_some_and(|w| w & (1 << (slot % 64)) != 0)
    }

    /// Keeps only the slots also in `other`.
    pub fn intersect(&mut self, other: &Bitset) {
        for (i, w) in self.words.iter_mut().enumerate() {
            *w &= other.words.get(i).copied().unwrap_or(0);
        }
    }

    /// Removes every slot of `other`.
    pub fn difference(&mut self, other: &Bitset) {
        for (w, o) in self.words.iter_mut().zip(&other.words) {
            *w &= !o;
        }
    }

    /// Adds every slot of `other`.
    pub fn union(&mut self, other: &Bitset) {
        if other.words.len() > self.words.len() {
            self.words.resize(other.words.len(), 0);
        }
        for (w, o) in self.words.iter_mut().zip(&other.words) {
            *w |= o;
        }
    }

    /// How many slots are in the set.
    pub fn len(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// True when no slot is in the set.
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|w| *w == 0)
    }

    /// Every slot, ascending, starting at the first slot ≥ `start` and wrapping around.
    pub fn iter_from(&self, start: usize) -> impl Iterator<Item = usize> + '_ {
        let bits = self.words.len() * 64;
        let start = if bits == 0 { 0 } else { start % bits };
        self.range(start, bits).chain(self.range(0, start))
    }

    fn range(&self, from: usize, to: usize) -> impl Iterator<Item = usize> + '_ {
        let first = from / 64;
        let last = to.div_ceil(64).min(self.words.len());
        (first..last).flat_map(move |i| {
            let mut w = self.words[i];
            if i == first {
                w &= u64::MAX.checked_shl((from % 64) as u32).unwrap_or(0);
            }
            if i == to / 64 {
                w &= (1u64 << (to % 64)).wrapping_sub(1);
            }
            std::iter::from_fn(move || {
                (w != 0).then(|| {
                    let bit = w.trailing_zeros() as usize;
                    w &= w - 1;
                    i * 64 + bit
                })
            })
        })
    }
}

impl FromIterator<usize> for Bitset {
    fn from_iter<I: IntoIterator<Item = usize>>(iter: I) -> Bitset {
        let mut set = Bitset::default();
        for slot in iter {
            set.insert(slot);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iterates_from_any_start_and_wraps() {
        let set: Bitset = [1, 63, 64, 130].into_iter().collect();
        assert_eq!(set.iter_from(0).collect::<Vec<_>>(), [1, 63, 64, 130]);
        assert_eq!(set.iter_from(64).collect::<Vec<_>>(), [64, 130, 1, 63]);
        assert_eq!(set.iter_from(131).collect::<Vec<_>>(), [1, 63, 64, 130]);
        assert_eq!(set.iter_from(2).collect::<Vec<_>>(), [63, 64, 130, 1]);
        assert_eq!(set.iter_from(1000).count(), 4);
        assert_eq!(Bitset::default().iter_from(5).count(), 0);
    }

    #[test]
    fn set_operations() {
        let mut a: Bitset = [1, 2, 100].into_iter().collect();
        let b: Bitset = [2, 100, 200].into_iter().collect();
        a.intersect(&b);
        assert_eq!(a.iter_from(0).collect::<Vec<_>>(), [2, 100]);
        a.union(&b);
        assert_eq!(a.len(), 3);
        a.difference(&[2, 5].into_iter().collect());
        assert_eq!(a.iter_from(0).collect::<Vec<_>>(), [100, 200]);
        a.insert(2);
        a.remove(200);
        assert!(!a.contains(200) && a.contains(100));
        a.remove(2);
        a.remove(100);
        assert_eq!(a.len(), 0);
    }
}
