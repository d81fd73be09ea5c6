//! Listings across both key spaces: the file's keys and the volatile keys in memory, merged in
//! key order, as of one revision.

use redb::ReadableDatabase;

use super::tables::{self, Counters, META};
use super::{volatile, Shared};
use crate::{KeyValue, Revision};

/// Every key starting with `prefix`, sorted, and the store revision the listing is consistent
/// with.
///
/// The writer commits a batch to the file first and applies it to memory after, so a file
/// snapshot taken under the memory lock may hold one batch more than memory does. The file's
/// META revision tells: it matches memory's record of the last commit only when both show the
/// same batches. Otherwise the writer is between the two steps, and the read starts over.
pub(crate) fn list(shared: &Shared, prefix: &str) -> Result<(Vec<KeyValue>, Revision), redb::Error> {
    list_at_most(shared, prefix, usize::MAX).map(|listed| listed.expect("an unbounded listing is never cut short"))
}

/// [`list`], or `None` when the prefix holds more than `limit` keys of the file.
pub(crate) fn list_at_most(shared: &Shared, prefix: &str, limit: usize) -> Result<Option<(Vec<KeyValue>, Revision)>, redb::Error> {
    let scope = shared.prefixes.scope(prefix);
    loop {
        let memory = shared.memory();
        let volatile = if scope.volatile { memory.list(prefix) } else { Vec::new() };
        if !scope.durable {
            return Ok(Some((volatile, memory.revision)));
        }
        let txn = shared.db.begin_read()?;
        if Counters::read(&txn.open_table(META)?)?.revision != memory.durable_revision {
            drop(memory);
            std::thread::yield_now();
            continue;
        }
        let revision = memory.revision;
        drop(memory);
        let Some(durable) = tables::list(&txn, prefix, limit)? else { return Ok(None) };
        return Ok(Some((volatile::merge(durable, volatile, |a, b| a.key < b.key), revision)));
    }
}
