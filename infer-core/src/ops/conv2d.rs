//! 2-D convolution with per-channel int8 weights ([`conv2d_i8`]), optionally fused with the
//! 2x2 max pooling after it ([`conv2d_max_pool2d_i8`]).

use serde::{Deserialize, Serialize};

use crate::format::{Activation, ChannelQuant, QParams, TensorId};
#[cfg(all(feature = "conv2d", feature = "max-pool2d"))]
use crate::kernels::conv2d_max_pool2d_i8;
use crate::spec::Conv2dGeometry;
#[cfg(feature = "conv2d")]
use {
    super::common::{channel_quant, check_len, check_window, le_f32},
    super::{Context, TensorInfo},
    crate::error::{Buffer, Dimension, Error, Extent},
    crate::kernels::{Conv2dParams, QRequant, conv2d_i8, conv2d_work_len},
    crate::spec::{Shape, TensorShape},
};

/// A 2-D convolution in the file: `[out_ch, in_ch, kernel_h, kernel_w]` int8 weights, one scale
/// per output channel, an output quantisation and a fused activation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conv2dDef<B> {
    /// The input tensor (an image of `geometry.in_ch` channels).
    pub input: TensorId,
    /// Channels, kernel, stride, padding.
    pub geometry: Conv2dGeometry,
    /// `i8` weights `[out_ch, in_ch, kernel_h, kernel_w]`.
    pub weights: B,
    /// Per-channel scales, bias and requantisation.
    pub quant: ChannelQuant<B>,
    /// Output quantisation.
    pub output: QParams,
    /// Fused activation.
    pub activation: Activation,
}

/// A validated convolution.
#[cfg(feature = "conv2d")]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QConv2d<'a> {
    pub(crate) input: TensorId,
    input_shape: Shape,
    input_qparams: QParams,
    geometry: Conv2dGeometry,
    pub(crate) params: Conv2dParams,
    weights: &'a [i8],
    weight_scales: &'a [u8],
    requant: QRequant<'a>,
    output_shape: Shape,
}

#[cfg(feature = "conv2d")]
pub(crate) fn prepare<'a>(
    def: &Conv2dDef<&'a [u8]>,
    cx: &Context<'_>,
) -> Result<(QConv2d<'a>, TensorInfo), Error> {
    let op = cx.op;
    let input = cx.tensor(def.input)?;
    let TensorShape::Image(input_shape) = input.shape else {
        return Err(Error::ExpectedImage { op });
    };
    let geometry = def.geometry;
    if geometry.in_ch != input_shape.channels {
        return Err(Error::ShapeMismatch {
            op,
            expected: u32::from(geometry.in_ch),
            got: u32::from(input_shape.channels),
        });
    }
    let zero = |what| Err(Error::ZeroDimension { op, what });
    if geometry.out_ch == 0 {
        return zero(Dimension::OutChannels);
    }
    let groups = geometry.groups;
    if groups == 0 {
        return zero(Dimension::Groups);
    }
    if geometry.in_ch % groups != 0 || geometry.out_ch % groups != 0 {
        return Err(Error::IndivisibleGroups { op, groups });
    }
    let (p, stride) = (geometry.padding, geometry.stride);
    let window = |len, before, after, kernel| check_window(op, len, before, after, kernel, stride);
    window(input_shape.height, p.top, p.bottom, geometry.kernel_h)?;
    window(input_shape.width, p.left, p.right, geometry.kernel_w)?;
    // Every element count of a tensor fits in u32 (the format's flat length) and `usize`.
    let output_shape = geometry
        .output(input.shape)
        .and_then(TensorShape::image)
        .filter(|s| s.checked_len().is_some_and(|n| u32::try_from(n).is_ok()))
        .ok_or(cx.too_large(Extent::Output))?;
    let params = Conv2dParams {
        kernel_h: usize::from(geometry.kernel_h),
        kernel_w: usize::from(geometry.kernel_w),
        stride: usize::from(geometry.stride),
        padding: geometry.padding,
    };
    // What each group's kernel call computes (alone or fused with a max pooling) must fit in
    // this target's `usize`, so that the kernel's arithmetic cannot overflow.
    let group_shape = Shape {
        channels: geometry.group_in_ch(),
        ..input_shape
    };
    if [false, true]
        .iter()
        .any(|&pool| conv2d_work_len(group_shape, &params, pool).is_none())
    {
        return Err(cx.too_large(Extent::Working));
    }
    check_len(
        op,
        Buffer::Weights,
        geometry.checked_weight_count(),
        def.weights.len(),
    )?;
    let requant = channel_quant(
        op,
        usize::from(geometry.out_ch),
        &def.quant,
        input.qparams,
        def.output,
        def.activation,
    )?;
    let q = QConv2d {
        input: def.input,
        input_shape,
        input_qparams: input.qparams,
        geometry,
        params,
        weights: bytemuck::cast_slice(def.weights),
        weight_scales: def.quant.weight_scales,
        requant,
        output_shape,
    };
    let out = TensorInfo {
        shape: TensorShape::Image(output_shape),
        qparams: def.output,
    };
    Ok((q, out))
}

#[cfg(feature = "conv2d")]
impl<'a> QConv2d<'a> {
    /// The input tensor.
    pub fn input(&self) -> TensorId {
        self.input
    }

    /// Shape of the input image.
    pub fn input_shape(&self) -> Shape {
        self.input_shape
    }

    /// Quantisation of the input.
    pub fn input_qparams(&self) -> QParams {
        self.input_qparams
    }

    /// Shape of the output image.
    pub fn output_shape(&self) -> Shape {
        self.output_shape
    }

    /// Channels, kernel, stride and padding.
    pub fn geometry(&self) -> Conv2dGeometry {
        self.geometry
    }

    /// The int8 weights, `[out_ch, in_ch, kernel_h, kernel_w]`.
    pub fn weights(&self) -> &'a [i8] {
        self.weights
    }

    /// The weight scale of each output channel (symmetric, zero point 0).
    pub fn weight_scales(&self) -> impl Iterator<Item = f32> + 'a {
        self.weight_scales.chunks_exact(4).map(le_f32)
    }

    /// Biases, requantisation multipliers and shifts, output zero point and clamp.
    pub fn requant(&self) -> QRequant<'a> {
        self.requant
    }

    /// Multiply-accumulates per inference: output elements times `in_ch * kernel_h * kernel_w`
    /// (padded taps included).
    pub fn macs(&self) -> u64 {
        let out = u64::try_from(self.output_shape.len()).unwrap_or(u64::MAX);
        out.saturating_mul(u64::try_from(self.geometry.taps()).unwrap_or(u64::MAX))
    }

    /// Bytes of parameters the kernel reads.
    pub fn param_bytes(&self) -> usize {
        self.weights.len()
            + self.requant.bias.len()
            + self.requant.multipliers.len()
            + self.requant.shifts.len()
    }

    pub(crate) fn invoke(&self, input: &[i8], output: &mut [i8], work: &mut [i8]) {
        let zero_point = self.input_qparams.zero_point;
        self.for_each_group(input, output, work, |x, shape, w, rq, out, work| {
            conv2d_i8(x, shape, zero_point, w, &self.params, rq, out, work);
        });
    }

    /// Runs the convolution and a 2x2, stride-2 max pooling after it in one kernel, writing the
    /// pooling's output.
    #[cfg(feature = "max-pool2d")]
    pub(crate) fn invoke_with_max_pool(&self, input: &[i8], output: &mut [i8], work: &mut [i8]) {
        let zero_point = self.input_qparams.zero_point;
        self.for_each_group(input, output, work, |x, shape, w, rq, out, work| {
            conv2d_max_pool2d_i8(x, shape, zero_point, w, &self.params, rq, out, work);
        });
    }

    /// Runs `conv` once per channel group: a group is an ordinary convolution over its own
    /// input planes, filters, requantisation and output planes (all contiguous, NCHW), so the
    /// kernels need not know about groups. One group is the whole convolution.
    fn for_each_group(
        &self,
        input: &[i8],
        output: &mut [i8],
        work: &mut [i8],
        mut conv: impl FnMut(&[i8], Shape, &[i8], &QRequant<'_>, &mut [i8], &mut [i8]),
    ) {
        let groups = usize::from(self.geometry.groups.max(1));
        if groups == 1 {
            conv(
                input,
                self.input_shape,
                self.weights,
                &self.requant,
                output,
                work,
            );
            return;
        }
        let shape = Shape {
            channels: self.geometry.group_in_ch(),
            ..self.input_shape
        };
        let out_per_group = usize::from(self.geometry.out_ch) / groups;
        let chunk = |len: usize| (len / groups).max(1);
        let rq = self.requant;
        let parts = input
            .chunks(chunk(input.len()))
            .zip(output.chunks_mut(chunk(output.len())))
            .zip(self.weights.chunks(chunk(self.weights.len())))
            .zip(
                rq.bias
                    .chunks(4 * out_per_group)
                    .zip(rq.multipliers.chunks(4 * out_per_group)),
            )
            .zip(rq.shifts.chunks(out_per_group.max(1)));
        for ((((x, out), w), (bias, multipliers)), shifts) in parts {
            let group = QRequant {
                bias,
                multipliers,
                shifts,
                ..rq
            };
            conv(x, shape, w, &group, out, work);
        }
    }
}
