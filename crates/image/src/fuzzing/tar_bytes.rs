//! Tar bytes for the layer fuzz bodies: checksum repair for mutated archives, and archives built
//! from a compact entry list so every input reaches the unpacker as a valid tar.

use tar::{EntryType, Header};

const BLOCK: usize = 512;

/// Fragments that entry paths and link targets are concatenated from: plain names, the names
/// the unpacker treats specially, separators and escapes. `.wh.` followed by `..` is `.wh...`.
const FRAGMENTS: &[&str] = &["a", "b", "file", "dir", "outside", "root", "/", "/", "..", ".", ".wh.", ".wh..wh..opq"];

const KINDS: &[EntryType] = &[EntryType::Regular, EntryType::Directory, EntryType::Symlink, EntryType::Link, EntryType::Char, EntryType::Fifo];

const MODES: &[u32] = &[0o644, 0o755, 0o700, 0o000, 0o1777, 0o4755];

/// The most entries one input builds, so a run stays short.
const MAX_ENTRIES: usize = 32;

/// True when `data` starts with a gzip or zstd magic number.
pub(super) fn is_compressed(data: &[u8]) -> bool {
    data.starts_with(&[0x1f, 0x8b]) || data.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
}

/// Rewrites the checksum of every tar header found by walking `data` header to header by the
/// size fields, the way a tar reader does. Bytes that are not a tar are left alone.
pub(super) fn repair_checksums(data: &mut [u8]) {
    let mut offset = 0usize;
    while let Some(header) = data.get_mut(offset..offset + BLOCK) {
        if header.iter().all(|&b| b == 0) {
            return;
        }
        let size = header_size(&header[124..136]);
        header[148..156].fill(b' ');
        let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
        header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        let padded = size.div_ceil(BLOCK as u64).saturating_mul(BLOCK as u64);
        let Some(next) = usize::try_from(padded).ok().and_then(|p| offset.checked_add(BLOCK)?.checked_add(p)) else {
            return;
        };
        offset = next;
    }
}

/// A tar size field: octal text, or base-256 when the high bit of the first byte is set.
fn header_size(field: &[u8]) -> u64 {
    if field[0] & 0x80 != 0 {
        return field[4..].iter().fold(0u64, |n, &b| (n << 8) | u64::from(b));
    }
    field
        .iter()
        .skip_while(|&&b| b == b' ')
        .take_while(|b| (b'0'..=b'7').contains(b))
        .fold(0u64, |n, &b| n.saturating_mul(8).saturating_add(u64::from(b - b'0')))
}

/// Reads `data` as entries of five fields each (kind, path, link target, mode, content size;
/// paths are a length byte then fragment indexes) and writes them as a GNU tar. Names longer
/// than the header's 100 bytes are cut.
pub(super) fn from_entries(data: &[u8]) -> Vec<u8> {
    let mut bytes = data.iter().copied();
    let mut next = move || bytes.next();
    let mut tar = Vec::new();
    for _ in 0..MAX_ENTRIES {
        let Some(kind) = next() else { break };
        let kind = KINDS[usize::from(kind) % KINDS.len()];
        let path = fragments(&mut next);
        let link = fragments(&mut next);
        let mode = MODES[usize::from(next().unwrap_or(0)) % MODES.len()];
        let size = if kind == EntryType::Regular { usize::from(next().unwrap_or(0) % 4) } else { 0 };
        let mut header = Header::new_gnu();
        let old = header.as_old_mut();
        copy_truncated(&mut old.name, path.as_bytes());
        if matches!(kind, EntryType::Symlink | EntryType::Link) {
            copy_truncated(&mut old.linkname, link.as_bytes());
        }
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(size as u64);
        header.set_mtime(1_600_000_000);
        if kind == EntryType::Char {
            // Character devices 0/0 are overlay whiteouts; other numbers are refused.
            let _ = header.set_device_major(0);
            let _ = header.set_device_minor(0);
        }
        header.set_cksum();
        tar.extend_from_slice(header.as_bytes());
        tar.extend(std::iter::repeat_n(b'x', size));
        tar.resize(tar.len().div_ceil(BLOCK) * BLOCK, 0);
    }
    tar.extend_from_slice(&[0; 2 * BLOCK]);
    tar
}

/// A path of up to seven fragments, chosen by the bytes after a length byte.
fn fragments(next: &mut impl FnMut() -> Option<u8>) -> String {
    let count = next().unwrap_or(0) % 8;
    (0..count).map_while(|_| next()).map(|i| FRAGMENTS[usize::from(i) % FRAGMENTS.len()]).collect()
}

fn copy_truncated(field: &mut [u8], value: &[u8]) {
    let len = value.len().min(field.len());
    field[..len].copy_from_slice(&value[..len]);
}
