//! The content-addressed blob store (`blobs/sha256/<hex>`): every blob is checked against its
//! descriptor's digest and size when written and again when read.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use tempfile::NamedTempFile;

use crate::digest::{Digest, HashingReader};
use crate::durable::sync_dir;
use crate::manifest::Descriptor;

/// Why a blob could not be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The content does not match its descriptor.
    #[error("blob {digest} is corrupt: expected {expected_size} bytes with that digest, got {actual_size} bytes hashing to {actual_digest}")]
    Corrupt {
        /// The digest the descriptor promised.
        digest: Digest,
        /// The size the descriptor promised.
        expected_size: u64,
        /// Bytes actually seen (may stop early once past the expected size).
        actual_size: u64,
        /// Digest of what was seen (`unknown` when reading stopped early).
        actual_digest: String,
    },
    /// The blob is not in the store.
    #[error("blob {digest} is missing from the store")]
    Missing {
        /// The digest looked for.
        digest: Digest,
    },
    /// A document is larger than this store reads into memory.
    #[error("blob {digest}: {size} bytes is larger than the {limit}-byte limit for documents")]
    TooLarge {
        /// The blob's digest.
        digest: Digest,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Filesystem failure.
    #[error("blob store {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> BlobError + '_ {
    move |source| BlobError::Io { path: path.to_path_buf(), source }
}

/// A directory of blobs named by their sha256.
#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
    tmp: PathBuf,
}

impl BlobStore {
    /// Opens (creating if needed) the blob store in `dir`, staging writes in `tmp` (same filesystem).
    pub fn open(dir: &Path, tmp: &Path) -> Result<Self, BlobError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        fs::create_dir_all(tmp).map_err(io_err(tmp))?;
        Ok(BlobStore { dir: dir.to_path_buf(), tmp: tmp.to_path_buf() })
    }

    /// Where the blob with `digest` lives.
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.hex())
    }

    /// Whether a blob of the descriptor's size is present (content is checked when read).
    pub fn contains(&self, desc: &Descriptor) -> bool {
        fs::symlink_metadata(self.path(&desc.digest)).is_ok_and(|m| m.is_file() && m.len() == desc.size)
    }

    /// Starts writing the blob `desc` describes.
    pub fn writer(&self, desc: &Descriptor) -> Result<BlobWriter, BlobError> {
        let file = tempfile::Builder::new().prefix("blob-").tempfile_in(&self.tmp).map_err(io_err(&self.tmp))?;
        Ok(BlobWriter { file, hasher: Sha256::new(), written: 0, desc: desc.clone(), dest: self.path(&desc.digest) })
    }

    /// Copies `reader` into the store, failing without storing anything if it does not match `desc`.
    pub fn put_reader(&self, desc: &Descriptor, mut reader: impl Read) -> Result<(), BlobError> {
        let mut writer = self.writer(desc)?;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(BlobError::Io { path: writer.dest.clone(), source: e }),
            };
            writer.write_chunk(&buf[..n])?;
        }
        writer.commit()
    }

    /// Stores `bytes` under their own digest and returns a descriptor of `media_type` for them.
    pub fn put_bytes(&self, media_type: &str, bytes: &[u8]) -> Result<Descriptor, BlobError> {
        let desc = Descriptor::new(media_type, Digest::of(bytes), bytes.len() as u64);
        if !self.contains(&desc) {
            self.put_reader(&desc, bytes)?;
        }
        Ok(desc)
    }

    /// Stores content whose digest nothing states in advance (docker-archive layers) under the
    /// digest it hashes to, and returns its descriptor.
    pub fn put_unknown(&self, media_type: &str, reader: impl Read) -> Result<Descriptor, BlobError> {
        let mut file = tempfile::Builder::new().prefix("blob-").tempfile_in(&self.tmp).map_err(io_err(&self.tmp))?;
        let mut hashing = HashingReader::new(reader);
        io::copy(&mut hashing, &mut file).map_err(io_err(file.path()))?;
        let size = hashing.count();
        let desc = Descriptor::new(media_type, hashing.digest(), size);
        if self.contains(&desc) {
            return Ok(desc);
        }
        file.as_file().sync_all().map_err(io_err(file.path()))?;
        let dest = self.path(&desc.digest);
        file.persist(&dest).map_err(|e| BlobError::Io { path: dest.clone(), source: e.error })?;
        sync_dir(&self.dir).map_err(io_err(&self.dir))?;
        Ok(desc)
    }

    /// Reads a small blob (manifest, config) fully and verifies it.
    pub fn read_verified(&self, desc: &Descriptor, limit: u64) -> Result<Vec<u8>, BlobError> {
        if desc.size > limit {
            return Err(BlobError::TooLarge { digest: desc.digest.clone(), size: desc.size, limit });
        }
        let mut reader = self.open_verified(desc)?;
        let mut bytes = Vec::with_capacity(desc.size as usize);
        let path = self.path(&desc.digest);
        reader.read_to_end(&mut bytes).map_err(|e| reader.error_or(e, &path))?;
        reader.finish()?;
        Ok(bytes)
    }

    /// Opens a blob for streaming; call [`VerifyingReader::finish`] after reading to check it.
    pub fn open_verified(&self, desc: &Descriptor) -> Result<VerifyingReader<File>, BlobError> {
        let path = self.path(&desc.digest);
        let file = File::open(&path).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => BlobError::Missing { digest: desc.digest.clone() },
            _ => BlobError::Io { path: path.clone(), source },
        })?;
        Ok(VerifyingReader::new(file, desc))
    }

    /// Every digest in the store.
    pub fn list(&self) -> Result<Vec<Digest>, BlobError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let entry = entry.map_err(io_err(&self.dir))?;
            if let Some(d) = entry.file_name().to_str().and_then(|n| Digest::parse(&format!("sha256:{n}")).ok()) {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Deletes a blob; a missing one is not an error.
    pub fn remove(&self, digest: &Digest) -> Result<(), BlobError> {
        let path = self.path(digest);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(BlobError::Io { path, source: e }),
            _ => Ok(()),
        }
    }
}

/// A blob being written: hashed as it goes, renamed into place only if it matches its descriptor.
pub struct BlobWriter {
    file: NamedTempFile,
    hasher: Sha256,
    written: u64,
    desc: Descriptor,
    dest: PathBuf,
}

impl BlobWriter {
    /// Appends bytes; fails as soon as more arrive than the descriptor's size.
    pub fn write_chunk(&mut self, chunk: &[u8]) -> Result<(), BlobError> {
        self.written += chunk.len() as u64;
        if self.written > self.desc.size {
            return Err(self.corrupt("unknown".to_string()));
        }
        self.hasher.update(chunk);
        self.file.write_all(chunk).map_err(io_err(self.file.path()))
    }

    /// Checks size and digest, fsyncs, and atomically renames the blob into the store.
    pub fn commit(self) -> Result<(), BlobError> {
        let actual = Digest::from_hasher(self.hasher.clone());
        if self.written != self.desc.size || actual != self.desc.digest {
            return Err(self.corrupt(actual.to_string()));
        }
        self.file.as_file().sync_all().map_err(io_err(self.file.path()))?;
        let dest = self.dest;
        self.file.persist(&dest).map_err(|e| BlobError::Io { path: dest.clone(), source: e.error })?;
        let dir = dest.parent().unwrap_or(Path::new("/"));
        sync_dir(dir).map_err(io_err(dir))
    }

    fn corrupt(&self, actual_digest: String) -> BlobError {
        BlobError::Corrupt { digest: self.desc.digest.clone(), expected_size: self.desc.size, actual_size: self.written, actual_digest }
    }
}

/// Reads a blob while checking it against its descriptor: more bytes than promised fail at once,
/// and [`finish`](Self::finish) checks the size and digest at the end.
pub struct VerifyingReader<R> {
    inner: HashingReader<R>,
    desc: Descriptor,
    overflowed: bool,
}

impl<R: Read> VerifyingReader<R> {
    /// Wraps `inner`, which should yield exactly the content `desc` describes.
    pub fn new(inner: R, desc: &Descriptor) -> Self {
        VerifyingReader { inner: HashingReader::new(inner), desc: desc.clone(), overflowed: false }
    }

    /// Reads whatever is left, then checks size and digest.
    pub fn finish(mut self) -> Result<(), BlobError> {
        if !self.overflowed {
            let _ = self.inner.drain();
        }
        let size = self.inner.count();
        let digest = self.desc.digest.clone();
        let expected_size = self.desc.size;
        let actual = self.inner.digest();
        if self.overflowed || size != expected_size || actual != digest {
            let actual_digest = if self.overflowed { "unknown".to_string() } else { actual.to_string() };
            return Err(BlobError::Corrupt { digest, expected_size, actual_size: size, actual_digest });
        }
        Ok(())
    }

    /// Turns a read error into the corruption it stands for, when it came from an overflow.
    pub(crate) fn error_or(&self, e: io::Error, path: &Path) -> BlobError {
        if self.overflowed {
            BlobError::Corrupt {
                digest: self.desc.digest.clone(),
                expected_size: self.desc.size,
                actual_size: self.inner.count(),
                actual_digest: "unknown".to_string(),
            }
        } else {
            BlobError::Io { path: path.to_path_buf(), source: e }
        }
    }

    /// The descriptor being checked against.
    pub fn descriptor(&self) -> &Descriptor {
        &self.desc
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.overflowed {
            return Err(io::Error::other(format!("blob {} is larger than its descriptor says", self.desc.digest)));
        }
        let n = self.inner.read(buf)?;
        if self.inner.count() > self.desc.size {
            self.overflowed = true;
            return Err(io::Error::other(format!("blob {} is larger than its descriptor's {} bytes", self.desc.digest, self.desc.size)));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
