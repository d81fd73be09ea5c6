//! The redb tables of the embedded store, their row formats, and the reads over them.

use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition};

use crate::{EventKind, KeyValue, Revision, WatchEvent};

/// Every live key: key → (create_revision, mod_revision, value).
pub(crate) const KV: TableDefinition<&str, (i64, i64, &[u8])> = TableDefinition::new("kv");

/// The change history: revision → one change. See [`LogRow`].
pub(crate) const LOG: TableDefinition<i64, LogRow> = TableDefinition::new("log");

/// Counters kept with the data: [`META_REVISION`], [`META_HISTORY_START`] and
/// [`META_RESERVED`].
pub(crate) const META: TableDefinition<&str, i64> = TableDefinition::new("meta");

/// The store revision as of the last commit (volatile writes since then are not in the file).
pub(crate) const META_REVISION: &str = "revision";

/// Present while volatile writes may have used revisions up to this one, which the file does not
/// otherwise record: the next run starts counting after it.
pub(crate) const META_RESERVED: &str = "revision_reserved";

/// The oldest revision whose change is still in [`LOG`]; every later one is there too.
pub(crate) const META_HISTORY_START: &str = "history_start";

/// One change in [`LOG`]: (kind, key, value, create_revision, prev). A put stores its new value
/// and create revision; a delete stores neither (they are the previous value's) and always has
/// `prev`. `prev` is (value, create_revision, mod_revision) of the key before the change.
pub(crate) type LogRow = (u8, &'static str, &'static [u8], i64, Option<(&'static [u8], i64, i64)>);

const KIND_PUT: u8 = 0;
const KIND_DELETE: u8 = 1;

/// The revision counters, as stored in [`META`] or as the writer holds them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Counters {
    /// The revision of the last change; 0 for an empty store. In [`META`], as of the last commit.
    pub revision: Revision,
    /// The oldest revision still in the history; 1 until anything was compacted.
    pub history_start: Revision,
    /// The last revision volatile writes may use before reserving more; 0 when none is held.
    pub reserved: Revision,
}

impl Counters {
    /// Reads the counters from `meta`, with the defaults of a new store.
    pub fn read(meta: &impl ReadableTable<&'static str, i64>) -> Result<Self, redb::Error> {
        let revision = meta.get(META_REVISION)?.map_or(0, |v| v.value());
        let history_start = meta.get(META_HISTORY_START)?.map_or(1, |v| v.value());
        let reserved = meta.get(META_RESERVED)?.map_or(0, |v| v.value());
        Ok(Self { revision, history_start, reserved })
    }

    /// Writes the counters into `meta`.
    pub fn write(&self, meta: &mut redb::Table<&'static str, i64>) -> Result<(), redb::Error> {
        meta.insert(META_REVISION, self.revision)?;
        meta.insert(META_HISTORY_START, self.history_start)?;
        if self.reserved > 0 {
            meta.insert(META_RESERVED, self.reserved)?;
        } else {
            meta.remove(META_RESERVED)?;
        }
        Ok(())
    }

    /// The oldest `after` a watch may start from: it needs every change after it.
    pub fn oldest_watchable(&self) -> Revision {
        self.history_start - 1
    }
}

/// Builds the key-value of a [`KV`] row.
pub(crate) fn key_value(key: &str, row: (i64, i64, &[u8])) -> KeyValue {
    let (create_revision, mod_revision, value) = row;
    KeyValue { key: key.to_owned(), value: value.to_vec(), create_revision, mod_revision }
}

/// The [`LOG`] row of `event`.
pub(crate) fn log_row(event: &WatchEvent) -> LogRowRef<'_> {
    let prev = event.prev.as_ref().map(|p| (p.value.as_slice(), p.create_revision, p.mod_revision));
    match event.kind {
        EventKind::Put => (KIND_PUT, event.kv.key.as_str(), event.kv.value.as_slice(), event.kv.create_revision, prev),
        EventKind::Delete => (KIND_DELETE, event.kv.key.as_str(), &[], 0, prev),
    }
}

/// A [`LogRow`] borrowing from the event it describes.
pub(crate) type LogRowRef<'a> = (u8, &'a str, &'a [u8], i64, Option<(&'a [u8], i64, i64)>);

/// Rebuilds the event at `revision` from its [`LOG`] row; `None` for a row this version cannot
/// read (an unknown kind, or a delete without its previous value).
pub(crate) fn event_from_row(revision: Revision, row: LogRowRef<'_>) -> Option<WatchEvent> {
    let (kind, key, value, create_revision, prev) = row;
    let prev = prev.map(|(value, create_revision, mod_revision)| KeyValue { key: key.to_owned(), value: value.to_vec(), create_revision, mod_revision });
    match kind {
        KIND_PUT => Some(WatchEvent {
            kind: EventKind::Put,
            kv: KeyValue { key: key.to_owned(), value: value.to_vec(), create_revision, mod_revision: revision },
            prev,
        }),
        KIND_DELETE => {
            let last = prev.clone()?;
            Some(WatchEvent { kind: EventKind::Delete, kv: KeyValue { mod_revision: revision, ..last }, prev })
        }
        _ => None,
    }
}

/// The value at `key`, if any.
pub(crate) fn get(db: &Database, key: &str) -> Result<Option<KeyValue>, redb::Error> {
    let txn = db.begin_read()?;
    let kv = txn.open_table(KV)?;
    let found = kv.get(key)?.map(|row| key_value(key, row.value()));
    Ok(found)
}

/// Every key starting with `prefix` in the snapshot `txn`, sorted; `None` when there are more
/// than `limit`.
pub(crate) fn list(txn: &ReadTransaction, prefix: &str, limit: usize) -> Result<Option<Vec<KeyValue>>, redb::Error> {
    let kv = txn.open_table(KV)?;
    let mut found = Vec::new();
    for entry in kv.range::<&str>(prefix..)? {
        let (key, row) = entry?;
        let key = key.value();
        if !key.starts_with(prefix) {
            break;
        }
        if found.len() == limit {
            return Ok(None);
        }
        found.push(key_value(key, row.value()));
    }
    Ok(Some(found))
}

/// A stretch of history read by [`history`].
#[derive(Debug)]
pub(crate) struct HistoryPage {
    /// The counters of the snapshot the page was read from.
    pub counters: Counters,
    /// The changes to keys under the prefix, in revision order.
    pub events: Vec<WatchEvent>,
    /// How many changes the page covered, under the prefix or not.
    pub covered: i64,
    /// The first revision in the range whose row was unreadable, if any.
    pub unreadable: Option<Revision>,
}

/// The changes to keys starting with `prefix` in revisions `after + 1 ..= through`. When part of
/// that range is compacted, the page is empty and `counters.history_start` says so.
pub(crate) fn history(db: &Database, prefix: &str, after: Revision, through: Revision) -> Result<HistoryPage, redb::Error> {
    let txn = db.begin_read()?;
    let counters = Counters::read(&txn.open_table(META)?)?;
    let mut page = HistoryPage { counters, events: Vec::new(), covered: 0, unreadable: None };
    if after < counters.oldest_watchable() {
        return Ok(page);
    }
    let log = txn.open_table(LOG)?;
    for entry in log.range(after + 1..=through)? {
        let (revision, row) = entry?;
        let revision = revision.value();
        let row = row.value();
        page.covered += 1;
        if !row.1.starts_with(prefix) {
            continue;
        }
        match event_from_row(revision, row) {
            Some(event) => page.events.push(event),
            None => {
                page.unreadable.get_or_insert(revision);
            }
        }
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &[u8], create_revision: i64, mod_revision: i64) -> KeyValue {
        KeyValue { key: key.into(), value: value.to_vec(), create_revision, mod_revision }
    }

    #[test]
    fn put_and_delete_rows_round_trip() {
        let created = WatchEvent { kind: EventKind::Put, kv: kv("/a", b"1", 3, 3), prev: None };
        let updated = WatchEvent { kind: EventKind::Put, kv: kv("/a", b"2", 3, 4), prev: Some(kv("/a", b"1", 3, 3)) };
        let deleted = WatchEvent { kind: EventKind::Delete, kv: kv("/a", b"2", 3, 5), prev: Some(kv("/a", b"2", 3, 4)) };
        for event in [created, updated, deleted] {
            let row = log_row(&event);
            assert_eq!(event_from_row(event.revision(), row), Some(event));
        }
    }

    #[test]
    fn unknown_kind_and_delete_without_prev_are_unreadable() {
        assert_eq!(event_from_row(1, (7, "/a", b"x", 1, None)), None);
        assert_eq!(event_from_row(1, (KIND_DELETE, "/a", b"", 0, None)), None);
    }
}
