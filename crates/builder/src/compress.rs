//! Recognising archives by their content, as Docker does for `ADD` and for a context on
//! stdin: a gzip, bzip2, xz or zstd stream (by magic number) or none, and then whether what
//! it holds starts with a valid tar header. A file's name never matters.

use std::io::{self, BufReader, Read};

/// The compression of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Not compressed.
    None,
    /// gzip.
    Gzip,
    /// bzip2.
    Bzip2,
    /// xz.
    Xz,
    /// zstd.
    Zstd,
}

impl Compression {
    /// Detects the compression from the first bytes of a stream.
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b, 0x08]) {
            Compression::Gzip
        } else if head.starts_with(b"BZh") {
            Compression::Bzip2
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Compression::Xz
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// A reader of the decompressed stream, whatever the compression was.
pub fn decompress<'a, R: Read + 'a>(
    mut reader: R,
) -> io::Result<(Compression, Box<dyn Read + 'a>)> {
    // The longest magic number is 6 bytes; a pipe may deliver fewer in one read.
    let mut head = Vec::with_capacity(8);
    (&mut reader).take(8).read_to_end(&mut head)?;
    let kind = Compression::detect(&head);
    let reader = BufReader::with_capacity(64 * 1024, io::Cursor::new(head).chain(reader));
    let out: Box<dyn Read + 'a> = match kind {
        Compression::None => Box::new(reader),
        // Multi-member readers: `cat a.gz b.gz` is one valid stream for gzip and bzip2.
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(reader)),
        Compression::Xz => Box::new(xz2::read::XzDecoder::new_multi_decoder(reader)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(reader)?),
    };
    Ok((kind, out))
}

/// Whether a 512-byte block is a tar header: not all zeros, and its checksum (the byte sum
/// with the checksum field as spaces, unsigned or signed as old tars wrote it) matches.
pub fn is_tar_header(block: &[u8]) -> bool {
    if block.len() < 512 || block[..512].iter().all(|&b| b == 0) {
        return false;
    }
    let field = &block[148..156];
    let text: String = field
        .iter()
        .take_while(|&&b| b != 0)
        .map(|&b| b as char)
        .collect();
    let Ok(stored) = u32::from_str_radix(text.trim(), 8) else {
        return false;
    };
    let mut unsigned: u32 = 0;
    let mut signed: i32 = 0;
    for (i, &b) in block[..512].iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += u32::from(b);
        signed += i32::from(b as i8);
    }
    stored == unsigned || i64::from(stored) == i64::from(signed)
}

/// Whether `reader` holds a tar archive, compressed or not: Docker's test for `ADD` (its
/// first header must parse; an empty or corrupt stream is just a file).
pub fn is_archive<R: Read>(reader: R) -> bool {
    let Ok((_, mut inner)) = decompress(reader) else {
        return false;
    };
    let mut block = [0u8; 512];
    let mut filled = 0;
    while filled < block.len() {
        match inner.read(&mut block[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    filled == block.len() && is_tar_header(&block)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn small_tar() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "a", &b"hi"[..]).unwrap();
        b.into_inner().unwrap()
    }

    #[test]
    fn detects_archives_by_content() {
        let plain = small_tar();
        assert!(is_archive(&plain[..]));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).unwrap();
        let gz = gz.finish().unwrap();
        assert!(is_archive(&gz[..]));
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        bz.write_all(&plain).unwrap();
        assert!(is_archive(&bz.finish().unwrap()[..]));
        let mut xz = xz2::write::XzEncoder::new(Vec::new(), 1);
        xz.write_all(&plain).unwrap();
        assert!(is_archive(&xz.finish().unwrap()[..]));
        let zst = zstd::encode_all(&plain[..], 1).unwrap();
        assert!(is_archive(&zst[..]));
        assert!(!is_archive(&b"FROM scratch\n"[..]));
        assert!(!is_archive(&[0u8; 1024][..]));
        assert!(!is_archive(&b""[..]));
        // gzip of something that is not a tar: a file, not an archive.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"just text").unwrap();
        assert!(!is_archive(&gz.finish().unwrap()[..]));
    }
}
