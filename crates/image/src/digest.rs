//! Content digests (`sha256:<hex>`): parsing, computing, and checking streams against them.

use std::fmt;
use std::io::{self, Read};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Why a string is not a digest this store accepts.
#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    /// Only `sha256` digests are supported.
    #[error("digest {digest:?}: unsupported algorithm (only sha256 is supported)")]
    UnsupportedAlgorithm {
        /// The digest as given.
        digest: String,
    },
    /// The encoded part is not 64 lowercase hex characters.
    #[error("digest {digest:?}: malformed (want sha256:<64 lowercase hex characters>)")]
    Malformed {
        /// The digest as given.
        digest: String,
    },
}

/// A validated `sha256:<64 lowercase hex>` digest.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest(String);

impl Digest {
    /// Parses and validates a digest string.
    pub fn parse(s: &str) -> Result<Self, DigestError> {
        let Some((algorithm, encoded)) = s.split_once(':') else {
            return Err(DigestError::Malformed { digest: s.to_string() });
        };
        if algorithm != "sha256" {
            return Err(DigestError::UnsupportedAlgorithm { digest: s.to_string() });
        }
        let valid_hex = encoded.len() == 64 && encoded.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !valid_hex {
            return Err(DigestError::Malformed { digest: s.to_string() });
        }
        Ok(Digest(s.to_string()))
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self::from_hasher(Sha256::new_with_prefix(bytes))
    }

    pub(crate) fn from_hasher(hasher: Sha256) -> Self {
        Digest(format!("sha256:{}", hex::encode(hasher.finalize())))
    }

    /// The hex-encoded part, used as the file name in the blob store.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    /// The full `sha256:<hex>` form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Digest {
    type Error = DigestError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Digest::parse(&s)
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> String {
        d.0
    }
}

/// A reader that hashes and counts everything read through it.
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        HashingReader { inner, hasher: Sha256::new(), count: 0 }
    }

    /// Reads the rest of the stream, so the digest covers trailing bytes a consumer ignored.
    pub(crate) fn drain(&mut self) -> io::Result<()> {
        io::copy(self, &mut io::sink()).map(|_| ())
    }

    /// Bytes read so far.
    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    /// The digest of everything read.
    pub(crate) fn digest(self) -> Digest {
        Digest::from_hasher(self.hasher)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sha256_and_rejects_others() {
        let d = Digest::of(b"hello");
        assert_eq!(d.as_str(), "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
        assert_eq!(Digest::parse(d.as_str()).unwrap(), d);
        assert!(matches!(Digest::parse("sha512:abcd"), Err(DigestError::UnsupportedAlgorithm { .. })));
        assert!(matches!(Digest::parse("sha256:ABCD"), Err(DigestError::Malformed { .. })));
        assert!(matches!(Digest::parse(&d.as_str().to_uppercase().replace("SHA256", "sha256")), Err(DigestError::Malformed { .. })));
        assert!(matches!(Digest::parse("nocolon"), Err(DigestError::Malformed { .. })));
        assert!(serde_json::from_str::<Digest>("\"sha256:../../etc/passwd\"").is_err());
    }
}
