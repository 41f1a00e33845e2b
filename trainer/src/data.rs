//! Fashion-MNIST loading: the four gzip-compressed IDX files, validated.
//!
//! The files are looked up, in order, in `--data-dir`, `$FASHION_MNIST_DIR`, and
//! [`DEBIAN_DATA_DIR`] (Debian package `dataset-fashion-mnist`).

use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

/// Where Debian's `dataset-fashion-mnist` package installs the files.
pub const DEBIAN_DATA_DIR: &str = "/usr/share/datasets/fashion-mnist";
/// Environment variable naming a folder with the four files.
pub const DATA_DIR_ENV: &str = "FASHION_MNIST_DIR";
/// Image side in pixels.
pub const SIDE: usize = 28;
/// Pixels per image.
pub const PIXELS: usize = SIDE * SIDE;
/// Number of classes.
pub const NUM_CLASSES: usize = 10;
/// Class names, by label.
pub const CLASS_NAMES: [&str; NUM_CLASSES] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

const TRAIN_IMAGES: &str = "train-images-idx3-ubyte.gz";
const TRAIN_LABELS: &str = "train-labels-idx1-ubyte.gz";
const TEST_IMAGES: &str = "t10k-images-idx3-ubyte.gz";
const TEST_LABELS: &str = "t10k-labels-idx1-ubyte.gz";
const LABEL_MAGIC: u32 = 2049;
const IMAGE_MAGIC: u32 = 2051;
const TRAIN_COUNT: usize = 60_000;
const TEST_COUNT: usize = 10_000;

/// Everything that can go wrong reading the dataset. Each variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// No candidate folder holds the files.
    #[error(
        "Fashion-MNIST not found (looked in: {searched}). Install Debian's package \
         `dataset-fashion-mnist` (apt-get install dataset-fashion-mnist), or point \
         --data-dir or ${DATA_DIR_ENV} at a folder holding {TRAIN_IMAGES}, {TRAIN_LABELS}, \
         {TEST_IMAGES} and {TEST_LABELS}"
    )]
    NotFound {
        /// The folders tried, comma separated.
        searched: String,
    },
    /// The file could not be opened or decompressed.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The magic number is not the expected one.
    #[error("{path}: bad magic number {got} (expected {expected})")]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// The magic number for this kind of file.
        expected: u32,
        /// The magic number read.
        got: u32,
    },
    /// The header is shorter than its fixed size.
    #[error("{path}: truncated header ({len} bytes after decompression)")]
    TruncatedHeader {
        /// The file.
        path: PathBuf,
        /// Bytes available.
        len: usize,
    },
    /// Image dimensions are not 28x28.
    #[error("{path}: images are {rows}x{cols}, expected 28x28")]
    BadDimensions {
        /// The file.
        path: PathBuf,
        /// Rows per image.
        rows: u32,
        /// Columns per image.
        cols: u32,
    },
    /// The item count is not the one this split has.
    #[error("{path}: header says {got} items, expected {expected}")]
    WrongCount {
        /// The file.
        path: PathBuf,
        /// Items this split must have.
        expected: usize,
        /// Items the header declares.
        got: usize,
    },
    /// The body is not exactly as long as the header says.
    #[error("{path}: body is {got} bytes, header implies {expected}")]
    WrongLength {
        /// The file.
        path: PathBuf,
        /// Bytes the header implies.
        expected: usize,
        /// Bytes present.
        got: usize,
    },
    /// A label is outside 0..=9.
    #[error("{path}: label {label} at index {index} is outside 0..=9")]
    BadLabel {
        /// The file.
        path: PathBuf,
        /// Index of the offending item.
        index: usize,
        /// The label read.
        label: u8,
    },
}

/// One split of the dataset: `len` images of 784 row-major u8 pixels and their labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// Pixels, image after image.
    pub images: Vec<u8>,
    /// Labels in `0..10`.
    pub labels: Vec<u8>,
}

impl Split {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the split is empty.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The pixels of image `i`.
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn image(&self, i: usize) -> &[u8; PIXELS] {
        self.images[i * PIXELS..(i + 1) * PIXELS]
            .try_into()
            .expect("a split holds PIXELS bytes per label")
    }

    /// The first `n` images (all of them if `n >= len`).
    pub fn head(&self, n: usize) -> Split {
        let n = n.min(self.len());
        Split {
            images: self.images[..n * PIXELS].to_vec(),
            labels: self.labels[..n].to_vec(),
        }
    }
}

/// The training and test splits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    /// 60,000 training images.
    pub train: Split,
    /// 10,000 test images.
    pub test: Split,
}

/// The first folder among `explicit`, `$FASHION_MNIST_DIR` and [`DEBIAN_DATA_DIR`] that holds
/// all four files.
pub fn find_data_dir(explicit: Option<&Path>) -> Result<PathBuf, DataError> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(dir) = explicit {
        candidates.push(dir.to_path_buf());
    } else {
        if let Some(dir) = std::env::var_os(DATA_DIR_ENV) {
            candidates.push(PathBuf::from(dir));
        }
        candidates.push(PathBuf::from(DEBIAN_DATA_DIR));
    }
    let has_all = |dir: &Path| {
        [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS]
            .iter()
            .all(|f| dir.join(f).is_file())
    };
    candidates
        .iter()
        .find(|d| has_all(d))
        .cloned()
        .ok_or_else(|| DataError::NotFound {
            searched: candidates
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Loads both splits from the folder [`find_data_dir`] picks.
pub fn load(explicit: Option<&Path>) -> Result<Dataset, DataError> {
    let dir = find_data_dir(explicit)?;
    Ok(Dataset {
        train: load_split(
            &dir.join(TRAIN_IMAGES),
            &dir.join(TRAIN_LABELS),
            TRAIN_COUNT,
        )?,
        test: load_split(&dir.join(TEST_IMAGES), &dir.join(TEST_LABELS), TEST_COUNT)?,
    })
}

/// Loads only the 10,000 test images, from the folder [`find_data_dir`] picks.
pub fn load_test(explicit: Option<&Path>) -> Result<Split, DataError> {
    let dir = find_data_dir(explicit)?;
    load_split(&dir.join(TEST_IMAGES), &dir.join(TEST_LABELS), TEST_COUNT)
}

/// Loads and validates one split of `count` items.
pub fn load_split(images: &Path, labels: &Path, count: usize) -> Result<Split, DataError> {
    Ok(Split {
        images: parse_images(images, &gunzip(images)?, count)?,
        labels: parse_labels(labels, &gunzip(labels)?, count)?,
    })
}

fn gunzip(path: &Path) -> Result<Vec<u8>, DataError> {
    let io = |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut out = Vec::new();
    GzDecoder::new(file).read_to_end(&mut out).map_err(io)?;
    Ok(out)
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

/// Validates a decompressed IDX3 image file and returns its pixels.
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

/// Validates a decompressed IDX1 label file and returns its labels.
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
    fn missing_dir_names_the_options() {
        let dir = tempfile::tempdir().unwrap();
        let msg = find_data_dir(Some(dir.path())).unwrap_err().to_string();
        assert!(msg.contains("dataset-fashion-mnist"), "{msg}");
        assert!(
            msg.contains("--data-dir") && msg.contains(DATA_DIR_ENV),
            "{msg}"
        );
    }

    #[test]
    fn gzip_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.gz");
        std::fs::write(&path, b"not gzip").unwrap();
        let msg = gunzip(&path).unwrap_err().to_string();
        assert!(msg.contains("bad.gz"), "{msg}");
    }
}
