//! Layer decompression, chosen by sniffing the stream's magic bytes (tar, gzip, zstd).

use std::io::{self, BufRead, BufReader, Cursor, Read};

use flate2::read::MultiGzDecoder;
use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Returns a reader of the uncompressed stream, whatever compression `reader` uses.
pub(crate) fn decompress<'a, R: Read + 'a>(mut reader: R) -> io::Result<Box<dyn Read + 'a>> {
    let mut magic = [0u8; 4];
    let mut got = 0;
    while got < magic.len() {
        match reader.read(&mut magic[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let whole = Cursor::new(magic[..got].to_vec()).chain(reader);
    Ok(if magic[..got].starts_with(&GZIP_MAGIC) {
        Box::new(MultiGzDecoder::new(whole))
    } else if magic[..got] == ZSTD_MAGIC {
        Box::new(ZstdReader { source: BufReader::new(whole), decoder: FrameDecoder::new(), in_frame: false })
    } else {
        Box::new(whole)
    })
}

/// A zstd decoder that reads every frame of a stream and skips skippable frames (`zstd:chunked`
/// layers are many frames).
struct ZstdReader<R> {
    source: BufReader<R>,
    decoder: FrameDecoder,
    in_frame: bool,
}

impl<R: Read> Read for ZstdReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.in_frame {
                if self.source.fill_buf()?.is_empty() {
                    return Ok(0);
                }
                match self.decoder.reset(&mut self.source) {
                    Ok(()) => self.in_frame = true,
                    Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame { length, .. })) => {
                        let skipped = io::copy(&mut (&mut self.source).take(u64::from(length)), &mut io::sink())?;
                        if skipped != u64::from(length) {
                            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "truncated zstd skippable frame"));
                        }
                        continue;
                    }
                    Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
                }
            }
            while self.decoder.can_collect() < buf.len() && !self.decoder.is_finished() {
                let wanted = buf.len() - self.decoder.can_collect();
                self.decoder
                    .decode_blocks(&mut self.source, BlockDecodingStrategy::UptoBytes(wanted))
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            }
            let n = self.decoder.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            if self.decoder.is_finished() && self.decoder.can_collect() == 0 {
                self.in_frame = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn read_all(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        decompress(bytes).unwrap().read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn sniffs_plain_gzip_and_zstd() {
        assert_eq!(read_all(b"plain tar bytes"), b"plain tar bytes");
        assert_eq!(read_all(b"ab"), b"ab");
        assert_eq!(read_all(b""), b"");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"gzipped").unwrap();
        assert_eq!(read_all(&gz.finish().unwrap()), b"gzipped");

        let frame = |data: &[u8]| ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest);
        let mut two_frames = frame(b"first ");
        // A skippable frame between the two data frames, as zstd:chunked writes.
        two_frames.extend_from_slice(&[0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 1, 2, 3]);
        two_frames.extend(frame(b"second"));
        assert_eq!(read_all(&two_frames), b"first second");
    }

    #[test]
    fn garbage_after_magic_is_an_error_not_a_panic() {
        let mut out = Vec::new();
        let mut bad_zstd = ZSTD_MAGIC.to_vec();
        bad_zstd.extend_from_slice(&[0xff; 64]);
        assert!(decompress(&bad_zstd[..]).unwrap().read_to_end(&mut out).is_err());
        assert!(decompress(&[0x1f, 0x8b, 0, 0, 0][..]).unwrap().read_to_end(&mut out).is_err());
    }
}
