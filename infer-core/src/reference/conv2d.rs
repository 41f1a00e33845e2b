//! Reference 2-D convolution.

use super::requant;
use crate::format::Shape;
use crate::kernels::{Conv2dParams, QRequant};

/// 2-D convolution, int8, per-output-channel requantisation: one output at a time, every
/// kernel tap in turn, padded taps skipped. See [`crate::kernels::conv2d_i8`] for the equation,
/// shapes and rounding; this takes the same arguments less the `work` buffer.
///
/// The output size is [`Conv2dParams::output_size`]'s; the number of output channels is
/// `requant`'s ([`QRequant::channels`]). Nothing is written if the kernel
/// or stride is zero or the window does not fit; outputs or inputs beyond the slices are left
/// alone or read as the input zero point.
#[allow(clippy::too_many_arguments)] // the kernel's arguments
pub fn conv2d_i8(
    input: &[i8],
    input_shape: Shape,
    input_zero_point: i32,
    weights: &[i8],
    params: &Conv2dParams,
    requant: &QRequant<'_>,
    output: &mut [i8],
) {
    let in_ch = usize::from(input_shape.channels);
    let (h, w) = (
        usize::from(input_shape.height),
        usize::from(input_shape.width),
    );
    let Conv2dParams {
        kernel_h: kh,
        kernel_w: kw,
        stride,
        padding,
    } = *params;
    let Some((out_h, out_w)) = params.output_size(h, w) else {
        return;
    };
    let (top, left) = (usize::from(padding.top), usize::from(padding.left));
    for o in 0..requant.channels() {
        for y in 0..out_h {
            for x in 0..out_w {
                let mut acc = requant::bias(requant, o);
                for i in 0..in_ch {
                    for ky in 0..kh {
                        for kx in 0..kw {
                            // The tap's input position: padded coordinates minus the padding.
                            let (Some(iy), Some(ix)) = (
                                (y * stride + ky).checked_sub(top),
                                (x * stride + kx).checked_sub(left),
                            ) else {
                                continue; // above or left of the input
                            };
                            if iy >= h || ix >= w {
                                continue; // below or right of the input
                            }
                            let weight = weights.get(((o * in_ch + i) * kh + ky) * kw + kx);
                            let value = input.get((i * h + iy) * w + ix);
                            let (Some(&weight), Some(&value)) = (weight, value) else {
                                continue;
                            };
                            let centred = i32::from(value) - input_zero_point;
                            acc = acc.wrapping_add(i32::from(weight).wrapping_mul(centred));
                        }
                    }
                }
                if let Some(out) = output.get_mut((o * out_h + y) * out_w + x) {
                    *out = requant::output(requant, o, acc);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_padding_and_stride() {
        // As the kernel's doc example: one 2x2 channel, a 2x2 kernel of ones, padding 1,
        // multiplier 1.0 (2^30 with shift 1): each output sums the inputs under the window.
        let one = (1_i32 << 30).to_le_bytes();
        let requant = QRequant {
            bias: &[0; 4],
            multipliers: &one,
            shifts: &[1],
            output_zero_point: 0,
            act_min: -128,
            act_max: 127,
        };
        let shape = Shape {
            channels: 1,
            height: 2,
            width: 2,
        };
        let params = Conv2dParams {
            kernel_h: 2,
            kernel_w: 2,
            stride: 1,
            padding: crate::spec::Padding::uniform(1),
        };
        let mut out = [0_i8; 9];
        conv2d_i8(
            &[1, 2, 3, 4],
            shape,
            0,
            &[1, 1, 1, 1],
            &params,
            &requant,
            &mut out,
        );
        assert_eq!(out, [1, 3, 2, 4, 10, 6, 3, 7, 4]);
        // Stride 2: windows at (0, 0) and (0, 2), (2, 0), (2, 2) of the padded input; with
        // input zero point 1 every tap contributes x - 1.
        let params = Conv2dParams {
            stride: 2,
            ..params
        };
        let mut out = [0_i8; 4];
        conv2d_i8(
            &[1, 2, 3, 4],
            shape,
            1,
            &[1, 1, 1, 1],
            &params,
            &requant,
            &mut out,
        );
        assert_eq!(out, [0, 1, 2, 3]);
    }
}
