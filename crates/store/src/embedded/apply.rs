//! One key write applied to one key space: the redb key table for durable keys, a batch's staged
//! volatile keys for the rest. The checks and the change a write makes are the same in both.

use redb::{ReadableTable, Table};

use super::tables;
use super::writer::Written;
use crate::{EventKind, KeyValue, Revision, StoreError, WatchEvent};

/// Where the keys of one kind live, as the writer sees them.
pub(crate) trait KeySpace {
    /// The key-value at `key`, if any.
    fn get(&self, key: &str) -> Result<Option<KeyValue>, redb::Error>;
    /// Stores `kv` under its key.
    fn put(&mut self, kv: &KeyValue) -> Result<(), redb::Error>;
    /// Removes `key`.
    fn remove(&mut self, key: &str) -> Result<(), redb::Error>;
}

impl KeySpace for Table<'_, &'static str, (i64, i64, &'static [u8])> {
    fn get(&self, key: &str) -> Result<Option<KeyValue>, redb::Error> {
        Ok(ReadableTable::get(self, key)?.map(|row| tables::key_value(key, row.value())))
    }

    fn put(&mut self, kv: &KeyValue) -> Result<(), redb::Error> {
        self.insert(kv.key.as_str(), (kv.create_revision, kv.mod_revision, kv.value.as_slice()))?;
        Ok(())
    }

    fn remove(&mut self, key: &str) -> Result<(), redb::Error> {
        Table::remove(self, key)?;
        Ok(())
    }
}

/// A write to one key.
#[derive(Debug)]
pub(crate) enum KeyChange {
    /// Create the key, which must not exist.
    Create { value: Vec<u8> },
    /// Replace the key, whose mod revision must be `expected`.
    Update { value: Vec<u8>, expected: Revision },
    /// Delete the key, checking its mod revision when `expected` is given.
    Delete { expected: Option<Revision> },
}

/// An accepted write and its change, or why it was refused.
pub(crate) type Outcome = Result<(Written, WatchEvent), StoreError>;

/// Applies `change` to `key` at revision `next`, or refuses it leaving `space` untouched.
pub(crate) fn apply_change(space: &mut dyn KeySpace, key: &str, change: &KeyChange, next: Revision) -> Result<Outcome, redb::Error> {
    let existing = space.get(key)?;
    let outcome = match (change, existing) {
        (KeyChange::Create { .. }, Some(_)) => Err(StoreError::AlreadyExists { key: key.to_owned() }),
        (KeyChange::Create { value }, None) => {
            let kv = KeyValue { key: key.to_owned(), value: value.clone(), create_revision: next, mod_revision: next };
            space.put(&kv)?;
            Ok((Written { revision: next, removed: None }, WatchEvent { kind: EventKind::Put, kv, prev: None }))
        }
        (KeyChange::Update { .. } | KeyChange::Delete { .. }, None) => Err(StoreError::NotFound { key: key.to_owned() }),
        (KeyChange::Update { value, expected }, Some(prev)) => {
            if prev.mod_revision != *expected {
                return Ok(Err(conflict(key, *expected, prev.mod_revision)));
            }
            let kv = KeyValue { value: value.clone(), mod_revision: next, ..prev.clone() };
            space.put(&kv)?;
            Ok((Written { revision: next, removed: None }, WatchEvent { kind: EventKind::Put, kv, prev: Some(prev) }))
        }
        (KeyChange::Delete { expected }, Some(prev)) => {
            if let Some(expected) = expected.filter(|expected| *expected != prev.mod_revision) {
                return Ok(Err(conflict(key, expected, prev.mod_revision)));
            }
            space.remove(key)?;
            let event = WatchEvent { kind: EventKind::Delete, kv: KeyValue { mod_revision: next, ..prev.clone() }, prev: Some(prev.clone()) };
            Ok((Written { revision: next, removed: Some(prev) }, event))
        }
    };
    Ok(outcome)
}

fn conflict(key: &str, expected: Revision, actual: Revision) -> StoreError {
    StoreError::Conflict { key: key.to_owned(), expected, actual }
}
