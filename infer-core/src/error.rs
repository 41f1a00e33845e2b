//! The one error type of this crate.
//!
//! Every error comes from validation: [`crate::Model::from_bytes`] reports what is wrong with a
//! model file and where, and [`crate::Model::predict`] only reports a caller's buffer that is too
//! small or an input of the wrong size. Once a model is loaded, inference cannot fail otherwise.

use core::fmt;

use crate::ops::OpKind;

/// Which per-layer byte array of a model file an [`Error::BufferLength`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Buffer {
    /// The `i8` weights.
    Weights,
    /// The `f32` per-channel weight scales.
    WeightScales,
    /// The `i32` per-channel biases.
    Bias,
    /// The `i32` per-channel requantisation multipliers.
    Multipliers,
    /// The `i8` per-channel requantisation shifts.
    Shifts,
}

impl Buffer {
    /// The buffer's name as in [`crate::format::ChannelQuant`] and the layer definitions.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Weights => "weights",
            Self::WeightScales => "weight_scales",
            Self::Bias => "bias",
            Self::Multipliers => "multipliers",
            Self::Shifts => "shifts",
        }
    }
}

/// Which dimension of an op is zero in an [`Error::ZeroDimension`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Dimension {
    /// A window's height or width (conv `kernel_h`/`kernel_w`, pooling `kernel`).
    Kernel,
    /// A window's stride.
    Stride,
    /// A convolution's output channels (`out_ch`).
    OutChannels,
    /// A convolution's channel groups (`groups`).
    Groups,
    /// A dense layer's output features (`out_dim`).
    OutFeatures,
}

impl Dimension {
    /// The dimension's field name in the op definitions.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Kernel => "kernel",
            Self::Stride => "stride",
            Self::OutChannels => "out_ch",
            Self::Groups => "groups",
            Self::OutFeatures => "out_dim",
        }
    }
}

/// Which size of an op overflows in an [`Error::TooLarge`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Extent {
    /// The output tensor's element count (it must fit in `u32`, the format's flat length, and
    /// in `usize`), or one of its sides (`u16`).
    Output,
    /// The weight count, `out_ch * in_ch / groups * kernel_h * kernel_w` or
    /// `out_dim * in_dim`.
    Weights,
    /// A working size of the op's kernel: a filter's taps, the padded input the im2col
    /// strategy widens, the rows the row strategies interleave, or the work buffer that makes
    /// the kernel fastest.
    Working,
}

impl Extent {
    /// What the size counts, for messages.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Output => "output tensor",
            Self::Weights => "weight count",
            Self::Working => "kernel working size",
        }
    }
}

/// Declares [`Error`] and, from the same list of variants, [`Error::NAMES`] and
/// [`Error::name`]: a variant cannot be added without its name joining the list, which the
/// integration test `tests/errors.rs` checks against the errors its crafted files produce.
macro_rules! error_enum {
    (
        $(#[$meta:meta])*
        pub enum $enum:ident {
            $(
                $(#[$variant_meta:meta])*
                $variant:ident
                $({ $($(#[$field_meta:meta])* $field:ident : $field_ty:ty),* $(,)? })?
                $(( $tuple_ty:ty ))?
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        pub enum $enum {
            $(
                $(#[$variant_meta])*
                $variant $({ $($(#[$field_meta])* $field : $field_ty),* })? $(( $tuple_ty ))?
            ),*
        }

        impl $enum {
            /// The name of every variant, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$(stringify!($variant)),*];

            /// The variant's name, as in [`Error::NAMES`] (for logs and tests; [`fmt::Display`]
            /// gives the message).
            pub const fn name(&self) -> &'static str {
                match self {
                    $(Self::$variant { .. } => stringify!($variant)),*
                }
            }
        }
    };
}

error_enum! {
/// Everything that can go wrong loading a model or running it.
///
/// `op` fields are 0-based indices into the model's op list ([`crate::format::ModelDef::ops`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error {
    /// The file is shorter than the 16-byte header.
    Truncated,
    /// The file does not start with [`crate::format::MAGIC`].
    BadMagic,
    /// The file is format version 1 (a chain of layers), which this reader no longer takes:
    /// re-export the model with the current trainer.
    FormatV1,
    /// The header's format version is not [`crate::format::VERSION`].
    UnsupportedVersion(u16),
    /// The header's reserved bytes are not zero.
    Reserved,
    /// The payload length in the header disagrees with the bytes after the header.
    PayloadLength {
        /// Length stated in the header.
        expected: usize,
        /// Bytes actually present after the header.
        got: usize,
    },
    /// The payload's CRC-32 disagrees with the header.
    Checksum {
        /// CRC-32 stated in the header.
        expected: u32,
        /// CRC-32 of the payload.
        got: u32,
    },
    /// The payload is not a valid postcard encoding of a [`crate::format::ModelDef`].
    Decode,
    /// The payload decodes but is followed by this many unused bytes.
    TrailingBytes(usize),
    /// The model id is not 1 to [`crate::format::MAX_ID_LEN`] characters of `a-z`, `A-Z`,
    /// `0-9`, `-`, `_` and `.` ([`crate::format::valid_id`]): an id is printed on terminals
    /// and used in file names, so it may not carry control characters or path separators.
    BadId {
        /// The id's length in bytes.
        len: usize,
    },
    /// The model has more ops than the [`crate::Model`] type holds (its `MAX_OPS`).
    TooManyOps {
        /// The most ops the model type holds.
        capacity: usize,
    },
    /// The model has no op.
    NoOps,
    /// The model's input shape is unusable (empty or too large), or is not the shape a caller
    /// needs ([`crate::Model::predict`] needs 1x28x28).
    InputShape,
    /// The model's input quantisation is invalid (scale not finite and positive, or zero point
    /// outside `[-128, 127]`).
    InputQuantParams,
    /// An op names an input tensor that is not made before it.
    BadTensorRef {
        /// Op index.
        op: usize,
        /// The tensor id it names.
        tensor: u16,
    },
    /// An op's input has the wrong number of channels or features.
    ShapeMismatch {
        /// Op index.
        op: usize,
        /// Channels (conv) or features (dense) the layer takes.
        expected: u32,
        /// Channels or features its input has.
        got: u32,
    },
    /// A dense layer's input is a `[c, h, w]` image: put a `Flatten` before it.
    ExpectedFlat {
        /// Op index.
        op: usize,
    },
    /// A conv or pooling layer's input is flat (it comes after a `Flatten` or a dense layer).
    ExpectedImage {
        /// Op index.
        op: usize,
    },
    /// A layer's byte array has the wrong length.
    BufferLength {
        /// Op index.
        op: usize,
        /// Which array.
        buffer: Buffer,
        /// Length in bytes the layer's dimensions imply.
        expected: usize,
        /// Length in the file.
        got: usize,
    },
    /// A layer's output quantisation or weight scales are invalid (scale not finite and
    /// positive, weight scale negative or not finite, zero point outside `[-128, 127]`), or they
    /// imply a requantisation multiplier too large to represent.
    BadQuantParams {
        /// Op index.
        op: usize,
    },
    /// A stored requantisation multiplier or shift differs from the one re-derived from the
    /// stored scales with [`crate::quant::quantize_multiplier`].
    MultiplierMismatch {
        /// Op index.
        op: usize,
        /// Output channel.
        channel: usize,
    },
    /// An op has a zero window, stride, channel, group or feature count.
    ZeroDimension {
        /// Op index.
        op: usize,
        /// Which dimension is zero.
        what: Dimension,
    },
    /// A convolution's `groups` does not divide both its input and its output channels.
    IndivisibleGroups {
        /// Op index.
        op: usize,
        /// The op's `groups`.
        groups: u16,
    },
    /// A convolution or pooling window is taller or wider than its input with its padding.
    WindowTooLarge {
        /// Op index.
        op: usize,
    },
    /// The two inputs of an element-wise op (`Add`) have different shapes.
    InputShapesDiffer {
        /// Op index.
        op: usize,
    },
    /// A size of an op overflows what this target can count (`usize`, 32 bits on a
    /// microcontroller) or what the format stores (`u32` element counts, `u16` sides): the op
    /// could not run here without its kernel's arithmetic overflowing.
    TooLarge {
        /// Op index.
        op: usize,
        /// Which size.
        what: Extent,
    },
    /// The tensors alive at the same time need more scratch bytes than `usize` counts on this
    /// target.
    ScratchOverflow,
    /// An op is of a kind this build of infer-core leaves out: its cargo feature
    /// ([`OpKind::feature`]) is off.
    OpNotBuilt {
        /// Op index.
        op: usize,
        /// What the op computes.
        kind: OpKind,
    },
    /// The model's output is not a flat vector of 1 to [`crate::MAX_CLASSES`] class logits.
    OutputShape {
        /// Number of output elements.
        len: usize,
    },
    /// The caller's scratch buffer is smaller than [`crate::Model::scratch_len`].
    ScratchTooSmall {
        /// Bytes the model needs.
        needed: usize,
    },
    /// The input passed to [`crate::Model::predict_raw`] has the wrong length.
    InputLength {
        /// The model's input length.
        expected: usize,
        /// The length passed.
        got: usize,
    },
}
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Truncated => f.write_str("model file shorter than its 16-byte header"),
            Self::BadMagic => f.write_str("not a model file (bad magic, expected \"FMQ8\")"),
            Self::FormatV1 => f.write_str(
                "model file is format v1 (a layer chain), which this infer-core no longer reads: \
                 re-export it with the current trainer (`trainer export`)",
            ),
            Self::UnsupportedVersion(v) => write!(
                f,
                "unsupported model format version {v} (this reader supports {})",
                crate::format::VERSION
            ),
            Self::Reserved => f.write_str("model header's reserved bytes are not zero"),
            Self::PayloadLength { expected, got } => write!(
                f,
                "model header states a {expected}-byte payload but {got} bytes follow it"
            ),
            Self::Checksum { expected, got } => write!(
                f,
                "model payload CRC-32 is {got:#010x}, header states {expected:#010x}"
            ),
            Self::Decode => f.write_str("model payload is not a valid postcard ModelDef"),
            Self::TrailingBytes(n) => write!(f, "model payload has {n} trailing bytes"),
            Self::BadId { len } => write!(
                f,
                "model id ({len} bytes) is not 1 to {} characters of a-z, A-Z, 0-9, '-', '_' \
                 and '.'",
                crate::format::MAX_ID_LEN
            ),
            Self::TooManyOps { capacity } => write!(
                f,
                "model has more ops than the {capacity} this Model type holds \
                 (load it as Model::<N> with a larger N)"
            ),
            Self::NoOps => f.write_str("model has no ops"),
            Self::InputShape => f.write_str("model input shape is empty, too large or unexpected"),
            Self::InputQuantParams => f.write_str(
                "model input quantisation invalid (scale must be finite and > 0, \
                 zero point in [-128, 127])",
            ),
            Self::BadTensorRef { op, tensor } => write!(
                f,
                "op {op} reads tensor {tensor}, which is not made before it"
            ),
            Self::ShapeMismatch { op, expected, got } => write!(
                f,
                "op {op} takes {expected} input channels/features but gets {got}"
            ),
            Self::ExpectedFlat { op } => write!(
                f,
                "op {op} (dense) needs a flat input: add a Flatten before it"
            ),
            Self::ExpectedImage { op } => write!(
                f,
                "op {op} (conv/pool) needs a [c, h, w] input but gets a flat one"
            ),
            Self::BufferLength {
                op,
                buffer,
                expected,
                got,
            } => write!(
                f,
                "op {op}: {} is {got} bytes, expected {expected}",
                buffer.name()
            ),
            Self::BadQuantParams { op } => write!(
                f,
                "op {op}: invalid quantisation parameters (scale, zero point or \
                 multiplier out of range)"
            ),
            Self::MultiplierMismatch { op, channel } => write!(
                f,
                "op {op} channel {channel}: stored multiplier/shift differ from the ones \
                 derived from the stored scales"
            ),
            Self::ZeroDimension { op, what } => {
                write!(f, "op {op}: {} is zero", what.name())
            }
            Self::IndivisibleGroups { op, groups } => write!(
                f,
                "op {op}: groups ({groups}) does not divide the input and output channels"
            ),
            Self::WindowTooLarge { op } => {
                write!(f, "op {op}: window larger than its input with padding")
            }
            Self::InputShapesDiffer { op } => {
                write!(f, "op {op}: its two inputs have different shapes")
            }
            Self::TooLarge { op, what } => write!(
                f,
                "op {op}: {} too large for this target ({}-bit usize) or the format",
                what.name(),
                usize::BITS
            ),
            Self::ScratchOverflow => write!(
                f,
                "model needs more scratch bytes than a {}-bit usize counts",
                usize::BITS
            ),
            Self::OpNotBuilt { op, kind } => write!(
                f,
                "op {op} is a {}, which this build of infer-core leaves out: enable \
                 infer-core's cargo feature `{}`",
                kind.name(),
                kind.feature().unwrap_or(kind.name())
            ),
            Self::OutputShape { len } => write!(
                f,
                "model output must be a flat vector of 1 to {} logits, got {len} elements",
                crate::MAX_CLASSES
            ),
            Self::ScratchTooSmall { needed } => {
                write!(
                    f,
                    "scratch buffer too small: the model needs {needed} bytes"
                )
            }
            Self::InputLength { expected, got } => {
                write!(f, "input has {got} elements, the model takes {expected}")
            }
        }
    }
}

impl core::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_says_what_and_where() {
        let e = Error::BufferLength {
            op: 3,
            buffer: Buffer::Multipliers,
            expected: 40,
            got: 36,
        };
        assert_eq!(e.to_string(), "op 3: multipliers is 36 bytes, expected 40");
        assert_eq!(
            Error::ShapeMismatch {
                op: 5,
                expected: 50,
                got: 54
            }
            .to_string(),
            "op 5 takes 50 input channels/features but gets 54"
        );
        assert_eq!(
            Error::Checksum {
                expected: 0xdead_beef,
                got: 1
            }
            .to_string(),
            "model payload CRC-32 is 0x00000001, header states 0xdeadbeef"
        );
        assert_eq!(
            Error::ScratchTooSmall { needed: 3920 }.to_string(),
            "scratch buffer too small: the model needs 3920 bytes"
        );
        assert_eq!(
            Error::OpNotBuilt {
                op: 2,
                kind: OpKind::MaxPool2d
            }
            .to_string(),
            "op 2 is a MaxPool2d, which this build of infer-core leaves out: enable infer-core's \
             cargo feature `max-pool2d`"
        );
        assert_eq!(
            Error::ZeroDimension {
                op: 1,
                what: Dimension::Stride
            }
            .to_string(),
            "op 1: stride is zero"
        );
        assert_eq!(
            Error::TooLarge {
                op: 4,
                what: Extent::Weights
            }
            .to_string(),
            format!(
                "op 4: weight count too large for this target ({}-bit usize) or the format",
                usize::BITS
            )
        );
        assert!(
            Error::UnsupportedVersion(9)
                .to_string()
                .contains("version 9")
        );
    }

    #[test]
    fn names_follow_the_variants() {
        assert_eq!(Error::NAMES.first(), Some(&"Truncated"));
        assert_eq!(Error::WindowTooLarge { op: 0 }.name(), "WindowTooLarge");
        assert_eq!(Error::UnsupportedVersion(3).name(), "UnsupportedVersion");
        let mut names = Error::NAMES.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Error::NAMES.len());
    }

    #[test]
    fn error_is_small() {
        // Returned by value from every fallible call on the device.
        assert!(core::mem::size_of::<Error>() <= 4 * core::mem::size_of::<usize>());
    }
}
