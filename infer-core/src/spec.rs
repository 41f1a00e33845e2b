//! The geometry vocabulary shared by the trainer and infer-core: tensor shapes, the geometry of
//! each op, and the one output-shape rule of each op.
//!
//! The trainer's shape inference, parameter counts and float layers use these very types, so the
//! float network and the int8 model cannot disagree on a shape. Every rule returns `None` for a
//! geometry it cannot take (a zero kernel or stride, a window larger than the padded input, a
//! size that overflows), never a wrong shape.

use serde::{Deserialize, Serialize};

/// Shape of one image or activation tensor (batch size 1), NCHW without the N.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Shape {
    /// Channels.
    pub channels: u16,
    /// Rows.
    pub height: u16,
    /// Columns.
    pub width: u16,
}

impl Shape {
    /// Number of elements, `channels * height * width`.
    pub const fn len(self) -> usize {
        self.channels as usize * self.height as usize * self.width as usize
    }

    /// Whether the shape holds no element.
    pub const fn is_empty(self) -> bool {
        self.len() == 0
    }

    /// Number of elements, or `None` if it overflows `usize` (possible on 16-bit targets).
    pub fn checked_len(self) -> Option<usize> {
        usize::from(self.channels)
            .checked_mul(usize::from(self.height))?
            .checked_mul(usize::from(self.width))
    }
}

/// Shape of an activation tensor between ops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TensorShape {
    /// An image `[channels, height, width]` (NCHW without the N).
    Image(Shape),
    /// A flat vector of this many features.
    Flat(u32),
}

impl TensorShape {
    /// Number of elements (saturating at `usize::MAX`; the shapes of a loaded model always
    /// fit).
    pub fn len(self) -> usize {
        match self {
            Self::Image(s) => s.checked_len().unwrap_or(usize::MAX),
            Self::Flat(n) => usize::try_from(n).unwrap_or(usize::MAX),
        }
    }

    /// Whether the tensor holds no element (never the case in a loaded model).
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }

    /// The image shape, if this is an image.
    pub fn image(self) -> Option<Shape> {
        match self {
            Self::Image(s) => Some(s),
            Self::Flat(_) => None,
        }
    }

    /// The number of features, if this is a flat vector.
    pub fn flat(self) -> Option<u32> {
        match self {
            Self::Image(_) => None,
            Self::Flat(n) => Some(n),
        }
    }

    /// The shape after flattening (channel-major): `Flat(c * h * w)` for an image, itself for a
    /// flat vector; `None` if the count exceeds `u32::MAX`.
    pub fn flattened(self) -> Option<Self> {
        match self {
            Self::Image(s) => Some(Self::Flat(u32::try_from(s.checked_len()?).ok()?)),
            Self::Flat(n) => Some(Self::Flat(n)),
        }
    }
}

/// Zero padding on each side of an image, in rows or columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Padding {
    /// Rows above.
    pub top: u8,
    /// Rows below.
    pub bottom: u8,
    /// Columns on the left.
    pub left: u8,
    /// Columns on the right.
    pub right: u8,
}

impl Padding {
    /// The same padding `p` on every side.
    pub const fn uniform(p: u8) -> Self {
        Self {
            top: p,
            bottom: p,
            left: p,
            right: p,
        }
    }

    /// TensorFlow's `SAME` padding for a stride-1 window of `kernel_h x kernel_w`: the output
    /// keeps the input's size; an odd total puts the extra row or column at the bottom or right.
    pub const fn same(kernel_h: u8, kernel_w: u8) -> Self {
        let (h, w) = (kernel_h.saturating_sub(1), kernel_w.saturating_sub(1));
        Self {
            top: h / 2,
            bottom: h - h / 2,
            left: w / 2,
            right: w - w / 2,
        }
    }

    /// `Some(p)` if every side is padded by the same `p`.
    pub const fn as_uniform(self) -> Option<u8> {
        if self.top == self.bottom && self.top == self.left && self.top == self.right {
            Some(self.top)
        } else {
            None
        }
    }
}

/// The output length of a window sliding over `input` values padded by `pad_before` and
/// `pad_after`: `(input + pad_before + pad_after - kernel) / stride + 1`; `None` if the kernel or
/// stride is zero, the window does not fit, or a value overflows. Every output size in the
/// project (infer-core's ops and kernels, the trainer's layers and candle ops) comes from here.
///
/// ```
/// use infer_core::spec::window_len;
///
/// assert_eq!(window_len(28, 1, 1, 3, 2), Some(14));
/// assert_eq!(window_len(4, 0, 0, 5, 1), None);
/// ```
pub fn window_len(
    input: usize,
    pad_before: usize,
    pad_after: usize,
    kernel: usize,
    stride: usize,
) -> Option<usize> {
    if kernel == 0 || stride == 0 {
        return None;
    }
    let padded = input.checked_add(pad_before)?.checked_add(pad_after)?;
    Some(padded.checked_sub(kernel)? / stride + 1)
}

/// [`window_len`] for the model format's field types.
fn window_output(input: u16, pad_before: u8, pad_after: u8, kernel: u8, stride: u8) -> Option<u16> {
    let out = window_len(
        usize::from(input),
        usize::from(pad_before),
        usize::from(pad_after),
        usize::from(kernel),
        usize::from(stride),
    )?;
    u16::try_from(out).ok()
}

/// Geometry of a 2-D convolution (dilation 1). With `groups > 1` the channels split into
/// `groups` equal groups, each output channel seeing only the input channels of its group
/// (`groups == in_ch == out_ch` is a depthwise convolution).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Conv2dGeometry {
    /// Input channels.
    pub in_ch: u16,
    /// Output channels (filters).
    pub out_ch: u16,
    /// Kernel height.
    pub kernel_h: u8,
    /// Kernel width.
    pub kernel_w: u8,
    /// Stride in both directions.
    pub stride: u8,
    /// Zero padding per side.
    pub padding: Padding,
    /// Channel groups: `in_ch` and `out_ch` are multiples of it (1: a plain convolution).
    pub groups: u16,
}

impl Conv2dGeometry {
    /// Input channels each output channel sees, `in_ch / groups`.
    pub fn group_in_ch(&self) -> u16 {
        self.in_ch / self.groups.max(1)
    }

    /// The output shape for `input`: `[out_ch, out_h, out_w]` with
    /// `out = (in + pad_before + pad_after - kernel) / stride + 1` per axis.
    ///
    /// `None` if the input is not an image of `in_ch` channels, `out_ch` is zero, `groups` is
    /// zero or does not divide both channel counts, or the window does not fit.
    ///
    /// ```
    /// use infer_core::spec::{Conv2dGeometry, Padding, Shape, TensorShape};
    ///
    /// let conv = Conv2dGeometry {
    ///     in_ch: 1, out_ch: 6, kernel_h: 5, kernel_w: 5, stride: 1, padding: Padding::uniform(0),
    ///     groups: 1,
    /// };
    /// let input = TensorShape::Image(Shape { channels: 1, height: 28, width: 28 });
    /// let out = Shape { channels: 6, height: 24, width: 24 };
    /// assert_eq!(conv.output(input), Some(TensorShape::Image(out)));
    /// ```
    pub fn output(&self, input: TensorShape) -> Option<TensorShape> {
        let input = input.image().filter(|s| s.channels == self.in_ch)?;
        let g = self.groups;
        if self.out_ch == 0 || g == 0 || self.in_ch % g != 0 || self.out_ch % g != 0 {
            return None;
        }
        let p = self.padding;
        Some(TensorShape::Image(Shape {
            channels: self.out_ch,
            height: window_output(input.height, p.top, p.bottom, self.kernel_h, self.stride)?,
            width: window_output(input.width, p.left, p.right, self.kernel_w, self.stride)?,
        }))
    }

    /// Number of weights, `out_ch * (in_ch / groups) * kernel_h * kernel_w` (saturating at
    /// `usize::MAX`; [`Conv2dGeometry::checked_weight_count`] tells an overflow apart).
    pub fn weight_count(&self) -> usize {
        self.checked_weight_count().unwrap_or(usize::MAX)
    }

    /// Number of weights, or `None` if it overflows `usize` (possible on 32-bit targets:
    /// 16 x 16384 x 128 x 128 is 2^32).
    pub fn checked_weight_count(&self) -> Option<usize> {
        usize::from(self.out_ch).checked_mul(self.checked_taps()?)
    }

    /// Multiply-accumulates per output element, `(in_ch / groups) * kernel_h * kernel_w`
    /// (padded taps included; saturating at `usize::MAX`).
    pub fn taps(&self) -> usize {
        self.checked_taps().unwrap_or(usize::MAX)
    }

    /// [`Conv2dGeometry::taps`], or `None` if it overflows `usize` (on 16-bit targets).
    fn checked_taps(&self) -> Option<usize> {
        usize::from(self.group_in_ch())
            .checked_mul(usize::from(self.kernel_h))?
            .checked_mul(usize::from(self.kernel_w))
    }
}

/// Geometry of a fully connected layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DenseGeometry {
    /// Input features.
    pub in_dim: u32,
    /// Output features.
    pub out_dim: u32,
}

impl DenseGeometry {
    /// `Flat(out_dim)` for a flat input of `in_dim` features; `None` otherwise (an image must
    /// be flattened first) or if `out_dim` is zero.
    pub fn output(&self, input: TensorShape) -> Option<TensorShape> {
        (input.flat()? == self.in_dim && self.out_dim > 0)
            .then_some(TensorShape::Flat(self.out_dim))
    }

    /// Number of weights, `out_dim * in_dim`.
    pub fn weight_count(&self) -> usize {
        usize::try_from(u64::from(self.out_dim) * u64::from(self.in_dim)).unwrap_or(usize::MAX)
    }
}

/// Geometry of a 2-D pooling window (no padding: TensorFlow's `VALID`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Pool2dGeometry {
    /// Window height and width.
    pub kernel: u8,
    /// Stride in both directions.
    pub stride: u8,
}

impl Pool2dGeometry {
    /// The output shape for an image input: same channels, `(in - kernel) / stride + 1` per
    /// axis (trailing rows and columns that do not fill a window are dropped).
    ///
    /// ```
    /// use infer_core::spec::{Pool2dGeometry, Shape, TensorShape};
    ///
    /// let pool = Pool2dGeometry { kernel: 2, stride: 2 };
    /// let input = TensorShape::Image(Shape { channels: 6, height: 5, width: 4 });
    /// let out = Shape { channels: 6, height: 2, width: 2 };
    /// assert_eq!(pool.output(input), Some(TensorShape::Image(out)));
    /// ```
    pub fn output(&self, input: TensorShape) -> Option<TensorShape> {
        let input = input.image()?;
        Some(TensorShape::Image(Shape {
            channels: input.channels,
            height: window_output(input.height, 0, 0, self.kernel, self.stride)?,
            width: window_output(input.width, 0, 0, self.kernel, self.stride)?,
        }))
    }
}

/// The output shape of global average pooling: `Flat(channels)` for an image.
pub fn global_avg_pool_output(input: TensorShape) -> Option<TensorShape> {
    let input = input.image().filter(|s| !s.is_empty())?;
    Some(TensorShape::Flat(u32::from(input.channels)))
}

/// The output shape of an element-wise addition: the inputs' shape, which must agree.
pub fn add_output(a: TensorShape, b: TensorShape) -> Option<TensorShape> {
    (a == b).then_some(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(channels: u16, height: u16, width: u16) -> TensorShape {
        TensorShape::Image(Shape {
            channels,
            height,
            width,
        })
    }

    #[test]
    fn conv_output_per_side_padding_and_stride() {
        let conv = |kernel_h, kernel_w, stride, padding| Conv2dGeometry {
            in_ch: 3,
            out_ch: 8,
            kernel_h,
            kernel_w,
            stride,
            padding,
            groups: 1,
        };
        // (28 + 1 + 2 - 4) / 1 + 1 = 28: SAME for an even kernel.
        let same4 = conv(4, 4, 1, Padding::same(4, 4));
        assert_eq!(
            same4.padding,
            Padding {
                top: 1,
                bottom: 2,
                left: 1,
                right: 2
            }
        );
        assert_eq!(same4.output(image(3, 28, 28)), Some(image(8, 28, 28)));
        // (7 + 2 - 3) / 2 + 1 = 4
        assert_eq!(
            conv(3, 3, 2, Padding::uniform(1)).output(image(3, 7, 7)),
            Some(image(8, 4, 4))
        );
        // Rectangular kernel, asymmetric padding: rows (5 + 0 + 1 - 2) + 1 = 5, cols (5 - 3) + 1.
        let p = Padding {
            top: 0,
            bottom: 1,
            left: 0,
            right: 0,
        };
        assert_eq!(
            conv(2, 3, 1, p).output(image(3, 5, 5)),
            Some(image(8, 5, 3))
        );
        // Wrong channels, too large a kernel, zero stride, a flat input.
        assert_eq!(
            conv(3, 3, 1, Padding::default()).output(image(2, 5, 5)),
            None
        );
        assert_eq!(
            conv(6, 6, 1, Padding::default()).output(image(3, 5, 5)),
            None
        );
        assert_eq!(
            conv(3, 3, 0, Padding::default()).output(image(3, 5, 5)),
            None
        );
        assert_eq!(
            conv(1, 1, 1, Padding::default()).output(TensorShape::Flat(3)),
            None
        );
    }

    #[test]
    fn pool_dense_gap_add_outputs() {
        let pool = Pool2dGeometry {
            kernel: 3,
            stride: 2,
        };
        assert_eq!(pool.output(image(4, 7, 8)), Some(image(4, 3, 3)));
        assert_eq!(pool.output(image(4, 2, 8)), None);
        let dense = DenseGeometry {
            in_dim: 12,
            out_dim: 10,
        };
        assert_eq!(
            dense.output(TensorShape::Flat(12)),
            Some(TensorShape::Flat(10))
        );
        assert_eq!(dense.output(image(12, 1, 1)), None);
        assert_eq!(dense.weight_count(), 120);
        assert_eq!(
            global_avg_pool_output(image(16, 7, 7)),
            Some(TensorShape::Flat(16))
        );
        assert_eq!(global_avg_pool_output(TensorShape::Flat(3)), None);
        assert_eq!(
            add_output(image(2, 3, 3), image(2, 3, 3)),
            Some(image(2, 3, 3))
        );
        assert_eq!(add_output(image(2, 3, 3), image(2, 3, 4)), None);
        assert_eq!(image(2, 3, 4).flattened(), Some(TensorShape::Flat(24)));
    }
}
