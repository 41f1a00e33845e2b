//! Validation shared by the ops: quantisation parameters, fused activation ranges, per-channel
//! requantisation, buffer lengths.

use crate::format::QParams;
#[cfg(any(feature = "conv2d", feature = "dense"))]
use {
    crate::error::{Buffer, Error},
    crate::format::ChannelQuant,
    crate::kernels::{QRequant, le_i32},
    crate::quant::channel_multiplier,
};
#[cfg(any(feature = "conv2d", feature = "dense", feature = "add"))]
use {crate::format::Activation, crate::kernels::clamp_i8};

/// Validates a pooling window over tensor `input` (max or average): returns the input image's
/// shape and the output tensor, which shares the input's quantisation.
#[cfg(any(feature = "max-pool2d", feature = "avg-pool2d"))]
pub(crate) fn pool_prepare(
    input: crate::format::TensorId,
    geometry: crate::spec::Pool2dGeometry,
    cx: &super::Context<'_>,
) -> Result<(crate::spec::Shape, super::TensorInfo), crate::error::Error> {
    let input = cx.tensor(input)?;
    let crate::spec::TensorShape::Image(input_shape) = input.shape else {
        return Err(crate::error::Error::ExpectedImage { op: cx.op });
    };
    let pool = |len: u16| check_window(cx.op, len, 0, 0, geometry.kernel, geometry.stride);
    pool(input_shape.height)?;
    pool(input_shape.width)?;
    let shape = geometry
        .output(input.shape)
        .ok_or(cx.too_large(crate::error::Extent::Output))?;
    let output = super::TensorInfo {
        shape,
        qparams: input.qparams,
    };
    Ok((input_shape, output))
}

/// Checks a window of `kernel` values with `stride` over `input` values padded by
/// `pad_before` and `pad_after`: neither may be zero ([`Error::ZeroDimension`]) and the window
/// must fit in the padded input ([`Error::WindowTooLarge`]). Then [`crate::spec::window_len`]
/// only fails on a size that overflows.
#[cfg(any(feature = "conv2d", feature = "max-pool2d", feature = "avg-pool2d"))]
pub(crate) fn check_window(
    op: usize,
    input: u16,
    pad_before: u8,
    pad_after: u8,
    kernel: u8,
    stride: u8,
) -> Result<(), crate::error::Error> {
    use crate::error::{Dimension, Error};
    if kernel == 0 {
        return Err(Error::ZeroDimension {
            op,
            what: Dimension::Kernel,
        });
    }
    if stride == 0 {
        return Err(Error::ZeroDimension {
            op,
            what: Dimension::Stride,
        });
    }
    let padded = u32::from(input) + u32::from(pad_before) + u32::from(pad_after);
    if u32::from(kernel) > padded {
        return Err(Error::WindowTooLarge { op });
    }
    Ok(())
}

/// A tensor's quantisation is usable: finite positive scale, zero point in `[-128, 127]`.
pub(crate) fn valid_qparams(q: QParams) -> bool {
    q.scale.is_finite() && q.scale > 0.0 && (-128..=127).contains(&q.zero_point)
}

/// The output clamp of a fused activation (TFLite's `CalculateActivationRangeQuantized`):
/// `quantize(f) = zero_point + round(f / scale)` in `f32`, rounding half away from zero.
#[cfg(any(feature = "conv2d", feature = "dense", feature = "add"))]
pub(crate) fn activation_range(activation: Activation, output: QParams) -> (i8, i8) {
    let quantize = |f: f32| {
        // `as` saturates (and the scale is finite and positive, so there is no NaN).
        #[allow(clippy::cast_possible_truncation)]
        let steps = libm::roundf(f / output.scale) as i32;
        output.zero_point.saturating_add(steps)
    };
    let clamp = |v: i32| clamp_i8(v, i8::MIN, i8::MAX);
    match activation {
        Activation::None => (i8::MIN, i8::MAX),
        Activation::Relu => (clamp(quantize(0.0)), i8::MAX),
        Activation::Relu6 => (clamp(quantize(0.0)), clamp(quantize(6.0))),
    }
}

/// The little-endian `f32` in a 4-byte chunk (NaN for any other length, which cannot happen with
/// `chunks_exact(4)`).
#[cfg(any(feature = "conv2d", feature = "dense"))]
pub(crate) fn le_f32(chunk: &[u8]) -> f32 {
    match *chunk {
        [a, b, c, d] => f32::from_le_bytes([a, b, c, d]),
        _ => f32::NAN,
    }
}

/// Checks that a buffer has the `expected` length (`None`: the length overflows `usize`,
/// [`Error::TooLarge`]).
#[cfg(any(feature = "conv2d", feature = "dense"))]
pub(crate) fn check_len(
    op: usize,
    buffer: Buffer,
    expected: Option<usize>,
    got: usize,
) -> Result<(), Error> {
    let expected = expected.ok_or(Error::TooLarge {
        op,
        what: crate::error::Extent::Weights,
    })?;
    if expected == got {
        Ok(())
    } else {
        Err(Error::BufferLength {
            op,
            buffer,
            expected,
            got,
        })
    }
}

/// Validates the per-channel quantisation of a conv or dense op with `channels` outputs
/// (lengths, scales, and every stored multiplier and shift against the one re-derived from the
/// stored scales) and returns its requantisation.
#[cfg(any(feature = "conv2d", feature = "dense"))]
pub(crate) fn channel_quant<'a>(
    op: usize,
    channels: usize,
    quant: &ChannelQuant<&'a [u8]>,
    input: QParams,
    output: QParams,
    activation: Activation,
) -> Result<QRequant<'a>, Error> {
    let four = channels.checked_mul(4);
    check_len(op, Buffer::WeightScales, four, quant.weight_scales.len())?;
    check_len(op, Buffer::Bias, four, quant.bias.len())?;
    check_len(op, Buffer::Multipliers, four, quant.multipliers.len())?;
    check_len(op, Buffer::Shifts, Some(channels), quant.shifts.len())?;
    if !valid_qparams(output) {
        return Err(Error::BadQuantParams { op });
    }
    let shifts: &'a [i8] = bytemuck::cast_slice(quant.shifts);
    let per_channel = quant
        .weight_scales
        .chunks_exact(4)
        .zip(quant.multipliers.chunks_exact(4))
        .zip(shifts);
    for (channel, ((scale, multiplier), &shift)) in per_channel.enumerate() {
        let weight_scale = le_f32(scale);
        if !weight_scale.is_finite() || weight_scale < 0.0 {
            return Err(Error::BadQuantParams { op });
        }
        let expected = channel_multiplier(input.scale, weight_scale, output.scale)
            .ok_or(Error::BadQuantParams { op })?;
        if (le_i32(multiplier), i32::from(shift)) != expected {
            return Err(Error::MultiplierMismatch { op, channel });
        }
    }
    let (act_min, act_max) = activation_range(activation, output);
    Ok(QRequant {
        bias: quant.bias,
        multipliers: quant.multipliers,
        shifts,
        output_zero_point: output.zero_point,
        act_min,
        act_max,
    })
}

#[cfg(all(test, any(feature = "conv2d", feature = "dense", feature = "add")))]
mod tests {
    use super::*;

    #[test]
    fn activation_ranges() {
        let q = QParams {
            scale: 0.05,
            zero_point: -20,
        };
        assert_eq!(activation_range(Activation::None, q), (-128, 127));
        assert_eq!(activation_range(Activation::Relu, q), (-20, 127));
        // 6 / 0.05 = 120 -> -20 + 120 = 100
        assert_eq!(activation_range(Activation::Relu6, q), (-20, 100));
        let q = QParams {
            scale: 0.01,
            zero_point: -128,
        };
        // 6 / 0.01 = 600 -> clamped to 127
        assert_eq!(activation_range(Activation::Relu6, q), (-128, 127));
        let q = QParams {
            scale: 1e-30,
            zero_point: 127,
        };
        assert_eq!(activation_range(Activation::Relu6, q), (127, 127));
    }
}
