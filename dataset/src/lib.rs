//! Fashion-MNIST: the four gzip-compressed IDX files, read and validated, the pixel
//! normalisation every model of the pipeline shares, seeded stratified train/validation/test
//! splits ([`splits`]) and seeded image augmentation ([`augment`]).
//!
//! The files are looked up, in order, in an explicit folder (the binaries' `--data-dir`),
//! `$FASHION_MNIST_DIR` ([`DATA_DIR_ENV`]) and [`DEBIAN_DATA_DIR`] (Debian package
//! `dataset-fashion-mnist`). This is the project's only IDX reader: the trainer, the host
//! simulator, the tests, the benches and the firmware's build script all load images through it.
//!
//! ```no_run
//! let test = fashion_mnist::load_test(None)?;
//! assert_eq!(test.len(), 10_000);
//! let first: &[u8; fashion_mnist::PIXELS] = test.image(0);
//! println!("{} pixels of a {}", first.len(), fashion_mnist::CLASS_NAMES[usize::from(test.labels[0])]);
//! # Ok::<(), fashion_mnist::DataError>(())
//! ```

use std::path::{Path, PathBuf};

pub mod augment;
mod idx;
mod pixels;
pub mod splits;

pub use augment::Augmentation;
pub use idx::{parse_images, parse_labels};
pub use pixels::{PIXEL_MEAN, PIXEL_STD, PIXEL_ZERO, normalise, normalise_value, pixel_scale};
pub use splits::{SplitError, SplitPlan, Splits};

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

/// File name of the training images.
pub const TRAIN_IMAGES: &str = "train-images-idx3-ubyte.gz";
/// File name of the training labels.
pub const TRAIN_LABELS: &str = "train-labels-idx1-ubyte.gz";
/// File name of the test images.
pub const TEST_IMAGES: &str = "t10k-images-idx3-ubyte.gz";
/// File name of the test labels.
pub const TEST_LABELS: &str = "t10k-labels-idx1-ubyte.gz";
/// Images in the training split.
pub const TRAIN_COUNT: usize = 60_000;
/// Images in the test split.
pub const TEST_COUNT: usize = 10_000;

/// Everything that can go wrong reading the dataset. Each variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// No candidate folder holds the files.
    #[error(
        "Fashion-MNIST not found ({searched}). Install Debian's package \
         `dataset-fashion-mnist` (apt-get install dataset-fashion-mnist), or point \
         --data-dir or ${DATA_DIR_ENV} at a folder holding {TRAIN_IMAGES}, {TRAIN_LABELS}, \
         {TEST_IMAGES} and {TEST_LABELS}"
    )]
    NotFound {
        /// What is wrong with each folder tried: missing files, a folder that does not exist,
        /// a file name that is a folder.
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

    /// The images at `indices`, in that order (an index may repeat).
    ///
    /// # Panics
    /// If an index is `>= self.len()`.
    pub fn select(&self, indices: &[usize]) -> Split {
        let mut images = Vec::with_capacity(indices.len() * PIXELS);
        for &i in indices {
            images.extend_from_slice(&self.images[i * PIXELS..(i + 1) * PIXELS]);
        }
        Split {
            images,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
        }
    }

    /// This split's images followed by `other`'s: image `self.len() + i` of the result is image
    /// `i` of `other`.
    pub fn concat(&self, other: &Split) -> Split {
        Split {
            images: [self.images.as_slice(), &other.images].concat(),
            labels: [self.labels.as_slice(), &other.labels].concat(),
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
/// all four files. An explicit folder is the only candidate.
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
    let missing = |dir: &Path| -> Vec<String> {
        if !dir.is_dir() {
            let what = if dir.exists() {
                "is not a folder"
            } else {
                "does not exist"
            };
            return vec![format!("{} {what}", dir.display())];
        }
        [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS]
            .iter()
            .filter_map(|f| {
                let path = dir.join(f);
                if path.is_file() {
                    None
                } else if path.is_dir() {
                    Some(format!("{} is a folder, not a file", path.display()))
                } else {
                    Some(format!("{} is missing", path.display()))
                }
            })
            .collect()
    };
    let mut problems = Vec::new();
    for dir in &candidates {
        let m = missing(dir);
        if m.is_empty() {
            return Ok(dir.clone());
        }
        problems.extend(m);
    }
    Err(DataError::NotFound {
        searched: problems.join("; "),
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

/// Loads and validates one split of `count` items from a gzip IDX3 image file and a gzip IDX1
/// label file.
pub fn load_split(images: &Path, labels: &Path, count: usize) -> Result<Split, DataError> {
    // At most one byte more than a valid file inflates to: enough to tell it is too long.
    Ok(Split {
        images: parse_images(
            images,
            &idx::gunzip(images, idx::images_len(count) + 1)?,
            count,
        )?,
        labels: parse_labels(
            labels,
            &idx::gunzip(labels, idx::labels_len(count) + 1)?,
            count,
        )?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn not_found_names_each_missing_file_and_a_folder_in_a_files_place() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(TRAIN_IMAGES), b"").unwrap();
        std::fs::write(dir.path().join(TRAIN_LABELS), b"").unwrap();
        std::fs::create_dir(dir.path().join(TEST_IMAGES)).unwrap();
        let msg = find_data_dir(Some(dir.path())).unwrap_err().to_string();
        assert!(msg.contains(&format!("{TEST_LABELS} is missing")), "{msg}");
        assert!(
            msg.contains(&format!("{TEST_IMAGES} is a folder, not a file")),
            "{msg}"
        );
        assert!(!msg.contains(&format!("{TRAIN_IMAGES} is")), "{msg}");
        let file = dir.path().join(TRAIN_IMAGES);
        let msg = find_data_dir(Some(&file)).unwrap_err().to_string();
        assert!(msg.contains("is not a folder"), "{msg}");
        let msg = find_data_dir(Some(&dir.path().join("nope")))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("nope does not exist"), "{msg}");
    }

    #[test]
    fn head_keeps_images_and_labels_together() {
        let split = Split {
            images: (0..3 * PIXELS)
                .map(|i| u8::try_from(i / PIXELS).unwrap())
                .collect(),
            labels: vec![4, 5, 6],
        };
        let head = split.head(2);
        assert_eq!(head.labels, vec![4, 5]);
        assert_eq!(head.image(1), &[1u8; PIXELS]);
        assert_eq!(split.head(10), split);
    }

    /// `n` images whose pixels all equal their index, labelled 7, 8, 9, ...
    fn numbered(n: u8) -> Split {
        Split {
            images: (0..n).flat_map(|i| [i; PIXELS]).collect(),
            labels: (0..n).map(|i| 7 + i).collect(),
        }
    }

    #[test]
    fn select_picks_images_and_labels_in_the_given_order() {
        let split = numbered(3);
        let picked = split.select(&[2, 0, 2]);
        assert_eq!(picked.labels, vec![9, 7, 9]);
        assert_eq!(picked.image(0), &[2u8; PIXELS]);
        assert_eq!(picked.image(1), &[0u8; PIXELS]);
        assert_eq!(picked.image(2), &[2u8; PIXELS]);
        assert!(split.select(&[]).is_empty());
        assert_eq!(split.select(&[0, 1, 2]), split);
    }

    #[test]
    fn concat_appends_the_second_split() {
        let a = numbered(2);
        let b = numbered(3).select(&[2]);
        let both = a.concat(&b);
        assert_eq!(both.labels, vec![7, 8, 9]);
        assert_eq!(both.image(2), &[2u8; PIXELS]);
        assert_eq!(both.select(&[0, 1]), a);
    }
}
