//! The IDX format (big-endian header, then the items), gzip-compressed, validated against what a
//! Fashion-MNIST split must be.

use std::io::Read;
use std::path::Path;

use flate2::read::MultiGzDecoder;

use crate::{DataError, NUM_CLASSES, PIXELS, SIDE};

const LABEL_MAGIC: u32 = 2049;
const IMAGE_MAGIC: u32 = 2051;

/// The decompressed bytes of a gzip file (every member of a multi-member file, as `gzip`
/// itself reads them), but never more than `limit` bytes: a file that inflates to more is cut
/// there, so a small file that would inflate to gigabytes costs no more than a valid one.
pub(crate) fn gunzip(path: &Path, limit: usize) -> Result<Vec<u8>, DataError> {
    let io = |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut out = Vec::new();
    MultiGzDecoder::new(std::io::BufReader::new(file))
        .take(u64::try_from(limit).unwrap_or(u64::MAX))
        .read_to_end(&mut out)
        .map_err(io)?;
    Ok(out)
}

/// Bytes an IDX3 file of `count` images has after decompression.
pub(crate) fn images_len(count: usize) -> usize {
    16 + count * PIXELS
}

/// Bytes an IDX1 file of `count` labels has after decompression.
pub(crate) fn labels_len(count: usize) -> usize {
    8 + count
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn header(path: &Path, bytes: &[u8], words: usize, magic: u32) -> Result<Vec<u32>, DataError> {
    if bytes.len() < 4 * words {
        return Err(DataError::TruncatedHeader {
            path: path.to_path_buf(),
            len: bytes.len(),
        });
    }
    let fields: Vec<u32> = (0..words).map(|i| be_u32(bytes, 4 * i)).collect();
    if fields[0] != magic {
        return Err(DataError::BadMagic {
            path: path.to_path_buf(),
            expected: magic,
            got: fields[0],
        });
    }
    Ok(fields)
}

fn check_count_and_length(
    path: &Path,
    declared: u32,
    expected: usize,
    body: &[u8],
    item_len: usize,
) -> Result<(), DataError> {
    let declared = declared as usize;
    if declared != expected {
        return Err(DataError::WrongCount {
            path: path.to_path_buf(),
            expected,
            got: declared,
        });
    }
    if body.len() != expected * item_len {
        return Err(DataError::WrongLength {
            path: path.to_path_buf(),
            expected: expected * item_len,
            got: body.len(),
        });
    }
    Ok(())
}

/// Validates a decompressed IDX3 image file of `count` 28x28 images and returns its pixels.
/// `path` only names the file in errors.
pub fn parse_images(path: &Path, bytes: &[u8], count: usize) -> Result<Vec<u8>, DataError> {
    let h = header(path, bytes, 4, IMAGE_MAGIC)?;
    if h[2] as usize != SIDE || h[3] as usize != SIDE {
        return Err(DataError::BadDimensions {
            path: path.to_path_buf(),
            rows: h[2],
            cols: h[3],
        });
    }
    let body = &bytes[16..];
    check_count_and_length(path, h[1], count, body, PIXELS)?;
    Ok(body.to_vec())
}

/// Validates a decompressed IDX1 label file of `count` labels in `0..10` and returns them.
/// `path` only names the file in errors.
pub fn parse_labels(path: &Path, bytes: &[u8], count: usize) -> Result<Vec<u8>, DataError> {
    let h = header(path, bytes, 2, LABEL_MAGIC)?;
    let body = &bytes[8..];
    check_count_and_length(path, h[1], count, body, 1)?;
    if let Some((index, &label)) = body
        .iter()
        .enumerate()
        .find(|&(_, &l)| usize::from(l) >= NUM_CLASSES)
    {
        return Err(DataError::BadLabel {
            path: path.to_path_buf(),
            index,
            label,
        });
    }
    Ok(body.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx_labels(magic: u32, count: u32, body: &[u8]) -> Vec<u8> {
        let mut v = magic.to_be_bytes().to_vec();
        v.extend(count.to_be_bytes());
        v.extend(body);
        v
    }

    fn idx_images(magic: u32, count: u32, rows: u32, cols: u32, body_len: usize) -> Vec<u8> {
        let mut v = magic.to_be_bytes().to_vec();
        for x in [count, rows, cols] {
            v.extend(x.to_be_bytes());
        }
        v.extend(std::iter::repeat_n(7u8, body_len));
        v
    }

    fn p() -> &'static Path {
        Path::new("x.idx")
    }

    #[test]
    fn valid_files_parse() {
        assert_eq!(
            parse_labels(p(), &idx_labels(2049, 3, &[0, 9, 4]), 3).unwrap(),
            vec![0, 9, 4]
        );
        let img = parse_images(p(), &idx_images(2051, 2, 28, 28, 2 * 784), 2).unwrap();
        assert_eq!(img.len(), 2 * 784);
    }

    #[test]
    fn bad_magic_is_reported() {
        let e = parse_labels(p(), &idx_labels(2051, 3, &[0, 1, 2]), 3).unwrap_err();
        assert!(matches!(
            e,
            DataError::BadMagic {
                expected: 2049,
                got: 2051,
                ..
            }
        ));
        let e = parse_images(p(), &idx_images(2049, 1, 28, 28, 784), 1).unwrap_err();
        assert!(matches!(e, DataError::BadMagic { expected: 2051, .. }));
    }

    #[test]
    fn truncated_files_are_reported() {
        let e = parse_labels(p(), &[0, 0, 8], 3).unwrap_err();
        assert!(matches!(e, DataError::TruncatedHeader { len: 3, .. }));
        let e = parse_labels(p(), &idx_labels(2049, 3, &[0, 1]), 3).unwrap_err();
        assert!(matches!(
            e,
            DataError::WrongLength {
                expected: 3,
                got: 2,
                ..
            }
        ));
        let e = parse_images(p(), &idx_images(2051, 2, 28, 28, 784 + 5), 2).unwrap_err();
        assert!(matches!(e, DataError::WrongLength { .. }));
    }

    #[test]
    fn wrong_count_and_dims_are_reported() {
        let e = parse_labels(p(), &idx_labels(2049, 2, &[0, 1]), 3).unwrap_err();
        assert!(matches!(
            e,
            DataError::WrongCount {
                expected: 3,
                got: 2,
                ..
            }
        ));
        let e = parse_images(p(), &idx_images(2051, 1, 32, 28, 32 * 28), 1).unwrap_err();
        assert!(matches!(
            e,
            DataError::BadDimensions {
                rows: 32,
                cols: 28,
                ..
            }
        ));
    }

    #[test]
    fn out_of_range_label_is_reported() {
        let e = parse_labels(p(), &idx_labels(2049, 3, &[0, 10, 1]), 3).unwrap_err();
        assert!(matches!(
            e,
            DataError::BadLabel {
                index: 1,
                label: 10,
                ..
            }
        ));
    }

    #[test]
    fn gzip_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.gz");
        std::fs::write(&path, b"not gzip").unwrap();
        let msg = gunzip(&path, 100).unwrap_err().to_string();
        assert!(msg.contains("bad.gz"), "{msg}");
    }

    #[test]
    fn a_gzip_round_trip_loads_as_a_split() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let write_gz = |name: &str, bytes: &[u8]| {
            let path = dir.path().join(name);
            let mut gz = flate2::write::GzEncoder::new(
                std::fs::File::create(&path).unwrap(),
                flate2::Compression::fast(),
            );
            gz.write_all(bytes).unwrap();
            gz.finish().unwrap();
            path
        };
        let images = write_gz("i.gz", &idx_images(2051, 2, 28, 28, 2 * 784));
        let labels = write_gz("l.gz", &idx_labels(2049, 2, &[3, 8]));
        let split = crate::load_split(&images, &labels, 2).unwrap();
        assert_eq!(split.labels, vec![3, 8]);
        assert_eq!(split.image(1), &[7u8; PIXELS]);
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(bytes).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn a_multi_member_gzip_reads_whole() {
        // `cat a.gz b.gz` is a valid gzip file of both contents; a single-member decoder stopped
        // after the first and reported a misleading length error.
        let dir = tempfile::tempdir().unwrap();
        let labels = idx_labels(2049, 4, &[1, 2, 3, 4]);
        let mut file = gz(&labels[..6]);
        file.extend(gz(&labels[6..]));
        let path = dir.path().join("l.gz");
        std::fs::write(&path, file).unwrap();
        let bytes = gunzip(&path, labels_len(4)).unwrap();
        assert_eq!(parse_labels(&path, &bytes, 4).unwrap(), vec![1, 2, 3, 4]);
    }

    #[test]
    fn an_oversized_file_is_not_inflated_past_what_the_split_needs() {
        // 8 MB of zeros compress to a few KB; only the expected length plus one byte is
        // inflated, and the length error says the file is too long.
        let dir = tempfile::tempdir().unwrap();
        let mut labels = idx_labels(2049, 2, &[1, 2]);
        labels.resize(8 << 20, 0);
        let path = dir.path().join("l.gz");
        std::fs::write(&path, gz(&labels)).unwrap();
        let bytes = gunzip(&path, labels_len(2) + 1).unwrap();
        assert_eq!(bytes.len(), labels_len(2) + 1);
        let e = parse_labels(&path, &bytes, 2).unwrap_err();
        assert!(
            matches!(
                e,
                DataError::WrongLength {
                    expected: 2,
                    got: 3,
                    ..
                }
            ),
            "{e}"
        );
    }
}
