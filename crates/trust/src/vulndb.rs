//! The local vulnerability database: OSV entries in one file, indexed by ecosystem and package
//! name, so a scan reads only the advisories of the packages it has.
//!
//! Layout (little endian): the magic `FLOTVDB1`; six u64s giving the metadata (JSON), the key
//! table and the index; then the entries as JSON. An index slot is 24 bytes: key offset and
//! length (u32 each) into the key table, the entry's offset (u64) and length (u32), and padding;
//! slots are sorted by key (`ecosystem NUL name`), so a lookup is a binary search.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, Write as _};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::osv::{self, Entry, OsvError};

const MAGIC: &[u8; 8] = b"FLOTVDB1";
const HEADER: usize = 8 + 6 * 8;
const SLOT: usize = 24;

/// Why the database could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum VulnDbError {
    /// No database at the path.
    #[error("no vulnerability database at {path}: run `flotilla vulndb import` with OSV advisories first")]
    Missing {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The file is not a database this version can read.
    #[error("vulnerability database {path} is unreadable ({reason}); import the advisories again")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An advisory file was refused; nothing was imported.
    #[error("{file}: {source}; nothing was imported")]
    Advisory {
        /// The advisory file.
        file: PathBuf,
        /// What is wrong in it.
        source: OsvError,
    },
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// What the database holds and when it was built.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// When the database file was written.
    pub built_at: DateTime<Utc>,
    /// Distinct advisories.
    pub advisories: u64,
    /// Affected-package entries (what is indexed).
    pub entries: u64,
    /// The latest `modified` time among the advisories.
    pub newest_advisory: String,
    /// Entries per ecosystem.
    pub ecosystems: BTreeMap<String, u64>,
}

/// An open database.
pub struct VulnDb {
    path: PathBuf,
    file: File,
    meta: Meta,
    keys: Vec<u8>,
    index: Vec<u8>,
}

impl VulnDb {
    /// Opens the database at `path`, reading its metadata and index (not its entries).
    pub fn open(path: &Path) -> Result<VulnDb, VulnDbError> {
        let file = File::open(path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => VulnDbError::Missing { path: path.to_path_buf() },
            _ => VulnDbError::Io { path: path.to_path_buf(), source: e },
        })?;
        let corrupt = |reason: &str| VulnDbError::Corrupt { path: path.to_path_buf(), reason: reason.to_string() };
        let len = file.metadata().map_err(|e| VulnDbError::Io { path: path.to_path_buf(), source: e })?.len();
        let mut header = [0u8; HEADER];
        file.read_exact_at(&mut header, 0).map_err(|_| corrupt("shorter than its header"))?;
        if &header[..8] != MAGIC {
            return Err(corrupt("not a Flotilla vulnerability database"));
        }
        let field = |i: usize| u64::from_le_bytes(header[8 + i * 8..16 + i * 8].try_into().expect("8 bytes"));
        let (meta_off, meta_len, keys_off, keys_len, index_off, slots) = (field(0), field(1), field(2), field(3), field(4), field(5));
        let section = |off: u64, size: u64| -> Result<Vec<u8>, VulnDbError> {
            if off.checked_add(size).is_none_or(|end| end > len) || size > 1 << 32 {
                return Err(corrupt("a section lies outside the file"));
            }
            let mut buf = vec![0u8; size as usize];
            file.read_exact_at(&mut buf, off).map_err(|e| VulnDbError::Io { path: path.to_path_buf(), source: e })?;
            Ok(buf)
        };
        let meta: Meta = serde_json::from_slice(&section(meta_off, meta_len)?).map_err(|_| corrupt("metadata is not valid"))?;
        let keys = section(keys_off, keys_len)?;
        let index = section(index_off, slots.checked_mul(SLOT as u64).ok_or_else(|| corrupt("index size overflows"))?)?;
        let db = VulnDb { path: path.to_path_buf(), file, meta, keys, index };
        for i in 0..db.slots() {
            let slot = db.slot(i);
            if db.key(&slot).is_none() || slot.entry_off.checked_add(u64::from(slot.entry_len)).is_none_or(|end| end > len) {
                return Err(corrupt(&format!("index slot {i} points outside the file")));
            }
        }
        Ok(db)
    }

    /// What the database holds.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// How long ago the database was built, if longer than `max_age`.
    pub fn stale(&self, now: DateTime<Utc>, max_age: chrono::Duration) -> Option<chrono::Duration> {
        let age = now - self.meta.built_at;
        (age > max_age).then_some(age)
    }

    /// The entries for a package (`name` as the ecosystem normalises it).
    pub fn lookup(&self, ecosystem: &str, name: &str) -> Result<Vec<Entry>, VulnDbError> {
        let name = osv::normalize_name(ecosystem, name);
        let mut wanted = Vec::with_capacity(ecosystem.len() + 1 + name.len());
        wanted.extend_from_slice(ecosystem.as_bytes());
        wanted.push(0);
        wanted.extend_from_slice(name.as_bytes());
        let (mut lo, mut hi) = (0, self.slots());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.key(&self.slot(mid)).unwrap_or_default() < wanted.as_slice() {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let mut out = Vec::new();
        while lo < self.slots() {
            let slot = self.slot(lo);
            if self.key(&slot) != Some(wanted.as_slice()) {
                break;
            }
            out.push(self.read_entry(&slot)?);
            lo += 1;
        }
        Ok(out)
    }

    /// Every entry, in key order.
    pub fn entries(&self) -> Result<Vec<Entry>, VulnDbError> {
        (0..self.slots()).map(|i| self.read_entry(&self.slot(i))).collect()
    }

    fn slots(&self) -> usize {
        self.index.len() / SLOT
    }

    fn slot(&self, i: usize) -> Slot {
        let raw = &self.index[i * SLOT..(i + 1) * SLOT];
        let u32_at = |o: usize| u32::from_le_bytes(raw[o..o + 4].try_into().expect("4 bytes"));
        Slot { key_off: u32_at(0), key_len: u32_at(4), entry_off: u64::from_le_bytes(raw[8..16].try_into().expect("8 bytes")), entry_len: u32_at(16) }
    }

    fn key(&self, slot: &Slot) -> Option<&[u8]> {
        let start = slot.key_off as usize;
        self.keys.get(start..start.checked_add(slot.key_len as usize)?)
    }

    fn read_entry(&self, slot: &Slot) -> Result<Entry, VulnDbError> {
        let mut buf = vec![0u8; slot.entry_len as usize];
        self.file.read_exact_at(&mut buf, slot.entry_off).map_err(|e| VulnDbError::Io { path: self.path.clone(), source: e })?;
        serde_json::from_slice(&buf).map_err(|e| VulnDbError::Corrupt { path: self.path.clone(), reason: format!("entry at byte {}: {e}", slot.entry_off) })
    }
}

struct Slot {
    key_off: u32,
    key_len: u32,
    entry_off: u64,
    entry_len: u32,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportReport {
    /// Advisory files read.
    pub files: u64,
    /// Advisories added or replaced by a newer version.
    pub updated: u64,
    /// Advisories already present at the same or a newer version.
    pub unchanged: u64,
    /// The database as written.
    pub meta: Meta,
}

/// Imports OSV advisory files (and directories of them, recursively) into the database at
/// `db`, creating it if needed. An advisory replaces an earlier one with the same id when its
/// `modified` time is newer. All or nothing: one bad file leaves the database as it was.
pub fn import(db: &Path, sources: &[PathBuf], now: DateTime<Utc>) -> Result<ImportReport, VulnDbError> {
    let mut by_id: HashMap<String, (String, Vec<Entry>)> = HashMap::new();
    match VulnDb::open(db) {
        Ok(existing) => {
            for entry in existing.entries()? {
                by_id.entry(entry.id.clone()).or_insert_with(|| (entry.modified.clone(), Vec::new())).1.push(entry);
            }
        }
        Err(VulnDbError::Missing { .. }) => {}
        // The fix the error suggests: import the advisories again, starting afresh.
        Err(e @ VulnDbError::Corrupt { .. }) => tracing::warn!("{e}; rebuilding it from the advisories given"),
        Err(e) => return Err(e),
    }
    let mut files = Vec::new();
    for source in sources {
        collect_files(source, &mut files)?;
    }
    let (mut updated, mut unchanged) = (0, 0);
    for file in &files {
        let bytes = fs::read(file).map_err(|e| VulnDbError::Io { path: file.clone(), source: e })?;
        let advisory = osv::parse_advisory(&bytes).map_err(|source| VulnDbError::Advisory { file: file.clone(), source })?;
        // An advisory updated to name no package any more still replaces its old entries.
        let newer = match by_id.get(&advisory.id) {
            Some((modified, _)) => newer_than(&advisory.modified, modified),
            None => true,
        };
        if newer {
            by_id.insert(advisory.id, (advisory.modified, advisory.entries));
            updated += 1;
        } else {
            unchanged += 1;
        }
    }
    let meta = write(db, by_id.into_values().flat_map(|(_, entries)| entries).collect(), now)?;
    Ok(ImportReport { files: files.len() as u64, updated, unchanged, meta })
}

/// Compares RFC 3339 times, falling back to text order for ones that do not parse.
fn newer_than(a: &str, b: &str) -> bool {
    match (DateTime::parse_from_rfc3339(a), DateTime::parse_from_rfc3339(b)) {
        (Ok(a), Ok(b)) => a > b,
        _ => a > b,
    }
}

fn collect_files(path: &Path, out: &mut Vec<PathBuf>) -> Result<(), VulnDbError> {
    let io_err = |e| VulnDbError::Io { path: path.to_path_buf(), source: e };
    let meta = fs::metadata(path).map_err(io_err)?;
    if !meta.is_dir() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let mut children: Vec<PathBuf> = fs::read_dir(path).map_err(io_err)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>().map_err(io_err)?;
    children.sort();
    for child in children {
        if child.is_dir() {
            collect_files(&child, out)?;
        } else if child.extension().is_some_and(|e| e == "json") {
            out.push(child);
        }
    }
    Ok(())
}

/// Writes `entries` as a new database file, atomically replacing any old one.
pub fn write(db: &Path, mut entries: Vec<Entry>, now: DateTime<Utc>) -> Result<Meta, VulnDbError> {
    entries.sort_by(|a, b| (&a.ecosystem, &a.name, &a.id).cmp(&(&b.ecosystem, &b.name, &b.id)));
    let mut ecosystems = BTreeMap::new();
    let mut ids = std::collections::HashSet::new();
    let mut newest = String::new();
    for e in &entries {
        *ecosystems.entry(e.ecosystem.clone()).or_insert(0) += 1;
        ids.insert(e.id.as_str());
        if newer_than(&e.modified, &newest) || newest.is_empty() {
            newest = e.modified.clone();
        }
    }
    let meta = Meta { built_at: now, advisories: ids.len() as u64, entries: entries.len() as u64, newest_advisory: newest, ecosystems };
    let mut body = Vec::new();
    let mut keys: Vec<u8> = Vec::new();
    let mut index = Vec::with_capacity(entries.len() * SLOT);
    // Entries are sorted, so those of one package are adjacent and share one key.
    let mut previous: Option<(&Entry, (u32, u32))> = None;
    for e in &entries {
        let (key_off, key_len) = match previous {
            Some((p, k)) if p.ecosystem == e.ecosystem && p.name == e.name => k,
            _ => {
                let k = (keys.len() as u32, (e.ecosystem.len() + 1 + e.name.len()) as u32);
                keys.extend_from_slice(e.ecosystem.as_bytes());
                keys.push(0);
                keys.extend_from_slice(e.name.as_bytes());
                k
            }
        };
        previous = Some((e, (key_off, key_len)));
        let encoded = serde_json::to_vec(e).expect("entries serialise");
        let entry_off = (HEADER + body.len()) as u64;
        body.extend_from_slice(&encoded);
        index.extend_from_slice(&key_off.to_le_bytes());
        index.extend_from_slice(&key_len.to_le_bytes());
        index.extend_from_slice(&entry_off.to_le_bytes());
        index.extend_from_slice(&(encoded.len() as u32).to_le_bytes());
        index.extend_from_slice(&[0u8; 4]);
    }
    let meta_json = serde_json::to_vec(&meta).expect("metadata serialises");
    let keys_off = (HEADER + body.len()) as u64;
    let meta_off = keys_off + keys.len() as u64;
    let index_off = meta_off + meta_json.len() as u64;
    let mut out = Vec::with_capacity(index_off as usize + index.len());
    out.extend_from_slice(MAGIC);
    for v in [meta_off, meta_json.len() as u64, keys_off, keys.len() as u64, index_off, entries.len() as u64] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&body);
    out.extend_from_slice(&keys);
    out.extend_from_slice(&meta_json);
    out.extend_from_slice(&index);
    let dir = db.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io(dir))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io(dir))?;
    // Advisories are public: readable by every user, as a package database is.
    tmp.as_file().set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644)).map_err(io(db))?;
    tmp.write_all(&out).map_err(io(db))?;
    tmp.as_file().sync_all().map_err(io(db))?;
    tmp.persist(db).map_err(|e| VulnDbError::Io { path: db.to_path_buf(), source: e.error })?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))?;
    Ok(meta)
}

fn io(path: &Path) -> impl FnOnce(io::Error) -> VulnDbError + '_ {
    move |source| VulnDbError::Io { path: path.to_path_buf(), source }
}

#[cfg(test)]
mod tests;
