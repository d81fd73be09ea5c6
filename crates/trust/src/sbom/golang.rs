//! Go modules compiled into binaries: the build information (Go 1.18 and later) in the ELF
//! section `.go.buildinfo` names the toolchain (the `stdlib` package) and every module.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt as _;
use std::path::Path;

use super::{Kind, Package};

const MAGIC: &[u8] = b"\xff Go buildinf:";
/// The build information is small; a larger section is not one Go wrote.
const MAX_SECTION: u64 = 4 << 20;

/// The Go modules in the executable at `path`; nothing for a file that is not a readable Go
/// binary (one unreadable or malformed file must not stop the inventory).
pub(super) fn parse(path: &Path, location: &str) -> Vec<Package> {
    match File::open(path).and_then(|file| buildinfo_section(&file)) {
        Ok(Some(section)) => packages(&section, location),
        Ok(None) => Vec::new(),
        Err(e) => {
            tracing::debug!(location, error = %e, "executable not read for Go build information");
            Vec::new()
        }
    }
}

/// The bytes of `.go.buildinfo`, if the file is a little-endian ELF with that section.
fn buildinfo_section(file: &File) -> io::Result<Option<Vec<u8>>> {
    let mut ident = [0u8; 64];
    let n = read_at_most(file, &mut ident, 0)?;
    if n < 52 || &ident[..4] != b"\x7fELF" || ident[5] != 1 {
        return Ok(None);
    }
    let u16_at = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as u64;
    let u32_at = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes")) as u64;
    let u64_at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
    let wide = match ident[4] {
        1 => false,
        2 if n >= 64 => true,
        _ => return Ok(None),
    };
    let (shoff, shentsize, shnum, shstrndx) = if wide {
        (u64_at(&ident, 0x28), u16_at(&ident, 0x3A), u16_at(&ident, 0x3C), u16_at(&ident, 0x3E))
    } else {
        (u32_at(&ident, 0x20), u16_at(&ident, 0x2E), u16_at(&ident, 0x30), u16_at(&ident, 0x32))
    };
    if shnum == 0 || shstrndx >= shnum || shentsize < if wide { 64 } else { 40 } || shnum * shentsize > 1 << 20 {
        return Ok(None);
    }
    let mut table = vec![0u8; (shnum * shentsize) as usize];
    if read_at_most(file, &mut table, shoff)? < table.len() {
        return Ok(None);
    }
    let section = |i: u64| {
        let h = &table[(i * shentsize) as usize..];
        if wide {
            (u32_at(h, 0), u64_at(h, 24), u64_at(h, 32))
        } else {
            (u32_at(h, 0), u32_at(h, 16), u32_at(h, 20))
        }
    };
    let (_, names_off, names_size) = section(shstrndx);
    let mut names = vec![0u8; names_size.min(1 << 20) as usize];
    let got = read_at_most(file, &mut names, names_off)?;
    names.truncate(got);
    for i in 0..shnum {
        let (name, off, size) = section(i);
        let name = names.get(name as usize..).unwrap_or_default();
        if name.starts_with(b".go.buildinfo\0") {
            let mut data = vec![0u8; size.min(MAX_SECTION) as usize];
            let got = read_at_most(file, &mut data, off)?;
            data.truncate(got);
            return Ok(Some(data));
        }
    }
    Ok(None)
}

fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64)? {
            0 => break,
            n => done += n,
        }
    }
    Ok(done)
}

/// Go 1.18+: after a 32-byte header (magic, pointer size, flags with bit 2 set) come two
/// varint-prefixed strings, the Go version and the module information.
fn packages(section: &[u8], location: &str) -> Vec<Package> {
    if !section.starts_with(MAGIC) || section.len() < 32 || section[15] & 2 == 0 {
        tracing::debug!(location, "Go build information older than Go 1.18 is not read");
        return Vec::new();
    }
    let mut at = 32;
    let (Some(version), Some(modinfo)) = (varint_bytes(section, &mut at), varint_bytes(section, &mut at)) else {
        return Vec::new();
    };
    let version = String::from_utf8_lossy(version);
    let mut out = Vec::new();
    if let Some(v) = version.strip_prefix("go").filter(|v| v.starts_with(|c: char| c.is_ascii_digit())) {
        out.push(module("stdlib", v, location));
    }
    // The module text sits between two 16-byte sentinels, which are not UTF-8: cut them off
    // the raw bytes.
    let modinfo = if modinfo.len() >= 33 && modinfo[modinfo.len() - 17] == b'\n' { &modinfo[16..modinfo.len() - 16] } else { modinfo };
    let modinfo = String::from_utf8_lossy(modinfo);
    for line in modinfo.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        match fields.as_slice() {
            ["mod" | "dep", path, version, ..] if *version != "(devel)" => out.push(module(path, version, location)),
            ["=>", path, version, ..] => {
                if let Some(last) = out.last_mut().filter(|p| p.name != "stdlib") {
                    *last = module(path, version, location);
                }
            }
            _ => {}
        }
    }
    out
}

fn module(path: &str, version: &str, location: &str) -> Package {
    Package {
        kind: Kind::Go,
        name: path.to_string(),
        version: version.to_string(),
        ecosystem: "Go".into(),
        source: None,
        purl: format!("pkg:golang/{path}@{version}"),
        location: location.to_string(),
    }
}

fn varint_bytes<'a>(data: &'a [u8], at: &mut usize) -> Option<&'a [u8]> {
    let (mut len, mut shift) = (0u64, 0);
    loop {
        let b = *data.get(*at)?;
        *at += 1;
        len |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
    let end = at.checked_add(usize::try_from(len).ok()?)?;
    let bytes = data.get(*at..end)?;
    *at = end;
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_build_info_of_a_real_go_binary() {
        // skopeo is a Go program the test suite installs (scripts/deps.sh).
        assert!(Path::new("/usr/bin/skopeo").exists(), "skopeo is installed by scripts/deps.sh");
        let found = parse(Path::new("/usr/bin/skopeo"), "/usr/bin/skopeo");
        let stdlib = found.iter().find(|p| p.name == "stdlib").expect("the Go toolchain version");
        assert!(stdlib.version.starts_with("1."), "{stdlib:?}");
    }

    #[test]
    fn a_non_go_binary_has_no_build_info() {
        assert!(parse(Path::new("/bin/sh"), "/bin/sh").is_empty());
        assert!(parse(Path::new("/etc/hostname"), "/etc/hostname").is_empty());
        assert!(parse(Path::new("/nonexistent"), "/nonexistent").is_empty());
    }

    #[test]
    fn modules_and_replacements_are_read() {
        // Go wraps the module text in these two 16-byte sentinels, neither valid UTF-8.
        let mut modinfo = b"0w\xaf\x0c\x92t\x08\x02A\xe1\xc1\x07\xe6\xd6\x18\xe6".to_vec();
        modinfo.extend_from_slice(b"path\texample.com/app\nmod\texample.com/app\t(devel)\t\ndep\tgolang.org/x/net\tv0.7.0\th1:x\ndep\tgithub.com/a/b\tv1.0.0\th1:y\n=>\tgithub.com/fork/b\tv1.0.1\th1:z\n");
        modinfo.extend_from_slice(b"\xf92C1\x86\x18 r\x00\x82B\x10A\x16\xd8\xf2");
        let mut section = MAGIC.to_vec();
        section.extend([8, 2]);
        section.resize(32, 0);
        for s in [&b"go1.21.4"[..], &modinfo] {
            let mut len = s.len();
            while len >= 0x80 {
                section.push((len as u8 & 0x7f) | 0x80);
                len >>= 7;
            }
            section.push(len as u8);
            section.extend_from_slice(s);
        }
        let found: Vec<(String, String)> = packages(&section, "/app").into_iter().map(|p| (p.name, p.version)).collect();
        assert_eq!(found, [("stdlib".into(), "1.21.4".into()), ("golang.org/x/net".into(), "v0.7.0".into()), ("github.com/fork/b".into(), "v1.0.1".into())]);
    }
}
