//! Post-training int8 quantisation (../shared/quantization.md): the arch's layer list is lowered
//! to infer-core's op list (ReLU fused as a clamp, dropout dropped), weights are quantised per
//! output channel and symmetrically, activations asymmetrically from ranges observed on
//! calibration images, biases to int32, and requantisation multipliers derived with
//! [`infer_core::quant::channel_multiplier`] from the stored f32 scales.

use candle_core::{Device, Tensor};
use infer_core::format::{
    Activation, ChannelQuant, Conv2dDef, DenseDef, Header, LayerDef, MAX_LAYERS, ModelDef,
    Pool2dDef, QParams, Shape,
};

use crate::arch::{Dims, Layer, PIXEL_ZERO, pixel_scale};
use crate::data::Split;
use crate::net::{Mode, Net, NetError};
use crate::train::images_tensor;

/// Errors while quantising.
#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    /// Running the float network failed.
    #[error(transparent)]
    Net(#[from] NetError),
    /// A candle operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// The layer sequence has no int8 lowering.
    #[error("layer {index} ({layer:?}) has no int8 lowering here: {why}")]
    Unsupported {
        /// Arch layer index.
        index: usize,
        /// The layer.
        layer: Layer,
        /// Why.
        why: &'static str,
    },
    /// A value does not fit the model format.
    #[error("{0} does not fit the model format")]
    TooLarge(&'static str),
    /// A requantisation multiplier cannot be represented.
    #[error("layer {index} channel {channel}: requantisation multiplier out of range")]
    Multiplier {
        /// Lowered layer index.
        index: usize,
        /// Output channel.
        channel: usize,
    },
    /// Serialising the model failed.
    #[error("encoding the model: {0}")]
    Encode(#[from] postcard::Error),
    /// No calibration images were given.
    #[error("calibration needs at least one image")]
    NoCalibrationImages,
}

/// How activation ranges are chosen from calibration statistics.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum RangeMethod {
    /// The observed minimum and maximum.
    MinMax,
}

/// One op of the lowered network, with the arch layers it covers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lowered {
    /// Index of the arch layer that starts this op.
    pub first: usize,
    /// Index of the arch layer whose output is this op's output (a fused ReLU or trailing
    /// dropout included).
    pub last: usize,
    /// What the op is.
    pub op: LoweredOp,
}

/// Lowered op kinds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LoweredOp {
    /// Conv or dense with a fused activation.
    Linear(Activation),
    /// Max pooling.
    MaxPool(Pool2dDef),
    /// Average pooling.
    AvgPool(Pool2dDef),
    /// Flatten.
    Flatten,
}

fn pool(
    index: usize,
    layer: Layer,
    kernel: usize,
    stride: usize,
) -> Result<Pool2dDef, QuantizeError> {
    let k = u8::try_from(kernel);
    let s = u8::try_from(stride);
    match (k, s) {
        (Ok(kernel), Ok(stride)) => Ok(Pool2dDef { kernel, stride }),
        _ => Err(QuantizeError::Unsupported {
            index,
            layer,
            why: "pool window or stride above 255",
        }),
    }
}

/// Lowers the arch's layers to infer-core ops: ReLU directly after a conv or dense layer is
/// fused; dropout vanishes; everything else maps one to one.
pub fn lower(layers: &[Layer]) -> Result<Vec<Lowered>, QuantizeError> {
    let mut out: Vec<Lowered> = Vec::new();
    for (index, &layer) in layers.iter().enumerate() {
        let op = match layer {
            Layer::Conv2d { .. } | Layer::Dense { .. } => LoweredOp::Linear(Activation::None),
            Layer::Relu => match out.last_mut() {
                Some(Lowered {
                    op: LoweredOp::Linear(act @ Activation::None),
                    last,
                    ..
                }) if *last + 1 == index => {
                    *act = Activation::Relu;
                    *last = index;
                    continue;
                }
                _ => {
                    return Err(QuantizeError::Unsupported {
                        index,
                        layer,
                        why: "ReLU must directly follow a conv or dense layer",
                    });
                }
            },
            Layer::Dropout { .. } => {
                if let Some(prev) = out.last_mut() {
                    if prev.last + 1 == index {
                        prev.last = index;
                    }
                }
                continue;
            }
            Layer::MaxPool2d { kernel, stride } => {
                LoweredOp::MaxPool(pool(index, layer, kernel, stride)?)
            }
            Layer::AvgPool2d { kernel, stride } => {
                LoweredOp::AvgPool(pool(index, layer, kernel, stride)?)
            }
            Layer::Flatten => LoweredOp::Flatten,
        };
        out.push(Lowered {
            first: index,
            last: index,
            op,
        });
    }
    Ok(out)
}

/// Observed `(min, max)` of every arch layer's output over the calibration images.
pub fn calibrate(
    net: &Net,
    images: &Split,
    batch: usize,
) -> Result<Vec<(f32, f32)>, QuantizeError> {
    if images.is_empty() {
        return Err(QuantizeError::NoCalibrationImages);
    }
    let mut ranges = vec![(f32::INFINITY, f32::NEG_INFINITY); net.arch.layers.len()];
    let all: Vec<usize> = (0..images.len()).collect();
    for idx in all.chunks(batch.max(1)) {
        let x = images_tensor(images, idx, &Device::Cpu)?;
        for (range, out) in ranges.iter_mut().zip(net.forward_trace(&x, Mode::Eval)?) {
            let lo: f32 = out.flatten_all()?.min(0)?.to_scalar()?;
            let hi: f32 = out.flatten_all()?.max(0)?.to_scalar()?;
            *range = (range.0.min(lo), range.1.max(hi));
        }
    }
    Ok(ranges)
}

/// Asymmetric int8 parameters covering `[min, max]` (widened to include 0).
pub fn activation_qparams(min: f32, max: f32) -> QParams {
    let (min, max) = (f64::from(min.min(0.0)), f64::from(max.max(0.0)));
    let scale = if max > min { (max - min) / 255.0 } else { 1.0 };
    let scale = scale as f32;
    let zp = (-128.0 - min / f64::from(scale))
        .round()
        .clamp(-128.0, 127.0);
    QParams {
        scale,
        #[allow(clippy::cast_possible_truncation)] // clamped to [-128, 127] above
        zero_point: zp as i32,
    }
}

/// The int8 input parameters: raw pixels enter as `q = pixel - 128`, which represents
/// `(pixel - PIXEL_ZERO) * pixel_scale()` exactly when the zero point is `PIXEL_ZERO - 128`.
pub fn input_qparams() -> QParams {
    QParams {
        scale: pixel_scale(),
        zero_point: PIXEL_ZERO - 128,
    }
}

/// Per-channel symmetric int8 weights: `(weights as i8 bytes, f32 scales)`, channel-major.
pub fn quantize_weights(weights: &[f32], out_ch: usize) -> (Vec<u8>, Vec<f32>) {
    let per = weights.len() / out_ch.max(1);
    let mut q = Vec::with_capacity(weights.len());
    let mut scales = Vec::with_capacity(out_ch);
    for row in weights.chunks(per.max(1)) {
        let absmax = row.iter().fold(0.0f32, |m, w| m.max(w.abs()));
        let scale = if absmax > 0.0 { absmax / 127.0 } else { 1.0 };
        for &w in row {
            #[allow(clippy::cast_possible_truncation)] // clamped to [-127, 127]
            let v = (w / scale).round().clamp(-127.0, 127.0) as i8;
            q.push(v.to_le_bytes()[0]);
        }
        scales.push(scale);
    }
    (q, scales)
}

/// Int32 bias at scale `input_scale * weight_scale`, rounded half away from zero, saturated.
pub fn quantize_bias(bias: f32, input_scale: f32, weight_scale: f32) -> i32 {
    let v = (f64::from(bias) / (f64::from(input_scale) * f64::from(weight_scale))).round();
    #[allow(clippy::cast_possible_truncation)] // clamped to the i32 range
    let v = v.clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32;
    v
}

/// Owned per-channel quantisation data; borrowed as [`ChannelQuant`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OwnedChannelQuant {
    /// LE f32 scales.
    pub weight_scales: Vec<u8>,
    /// LE i32 biases.
    pub bias: Vec<u8>,
    /// LE i32 multipliers.
    pub multipliers: Vec<u8>,
    /// i8 shifts.
    pub shifts: Vec<u8>,
}

impl OwnedChannelQuant {
    fn view(&self) -> ChannelQuant<'_> {
        ChannelQuant {
            weight_scales: &self.weight_scales,
            bias: &self.bias,
            multipliers: &self.multipliers,
            shifts: &self.shifts,
        }
    }
}

/// An owned quantised layer; borrowed as [`LayerDef`].
#[derive(Debug, Clone, PartialEq)]
pub enum QLayer {
    /// Convolution.
    Conv2d {
        /// Geometry (its slices are unused; see `weights` and `quant`).
        in_ch: u16,
        /// Output channels.
        out_ch: u16,
        /// Kernel side.
        kernel: u8,
        /// Stride.
        stride: u8,
        /// Padding.
        padding: u8,
        /// i8 weights as bytes.
        weights: Vec<u8>,
        /// Per-channel data.
        quant: OwnedChannelQuant,
        /// Output parameters.
        output: QParams,
        /// Fused activation.
        activation: Activation,
    },
    /// Dense.
    Dense {
        /// Input features.
        in_dim: u32,
        /// Output features.
        out_dim: u32,
        /// i8 weights as bytes.
        weights: Vec<u8>,
        /// Per-channel data.
        quant: OwnedChannelQuant,
        /// Output parameters.
        output: QParams,
        /// Fused activation.
        activation: Activation,
    },
    /// Max pooling.
    MaxPool2d(Pool2dDef),
    /// Average pooling.
    AvgPool2d(Pool2dDef),
    /// Flatten.
    Flatten,
}

/// A whole owned quantised model.
#[derive(Debug, Clone, PartialEq)]
pub struct QModel {
    /// Model id.
    pub id: String,
    /// Input shape.
    pub input_shape: Shape,
    /// Input quantisation.
    pub input: QParams,
    /// Layers.
    pub layers: Vec<QLayer>,
}

impl QModel {
    /// The borrowed format view the file is written from.
    pub fn def(&self) -> Result<ModelDef<'_>, QuantizeError> {
        let mut layers = heapless::Vec::<LayerDef<'_>, MAX_LAYERS>::new();
        for l in &self.layers {
            let def = match l {
                QLayer::Conv2d {
                    in_ch,
                    out_ch,
                    kernel,
                    stride,
                    padding,
                    weights,
                    quant,
                    output,
                    activation,
                } => LayerDef::Conv2d(Conv2dDef {
                    in_ch: *in_ch,
                    out_ch: *out_ch,
                    kernel_h: *kernel,
                    kernel_w: *kernel,
                    stride: *stride,
                    padding: *padding,
                    weights,
                    quant: quant.view(),
                    output: *output,
                    activation: *activation,
                }),
                QLayer::Dense {
                    in_dim,
                    out_dim,
                    weights,
                    quant,
                    output,
                    activation,
                } => LayerDef::Dense(DenseDef {
                    in_dim: *in_dim,
                    out_dim: *out_dim,
                    weights,
                    quant: quant.view(),
                    output: *output,
                    activation: *activation,
                }),
                QLayer::MaxPool2d(p) => LayerDef::MaxPool2d(*p),
                QLayer::AvgPool2d(p) => LayerDef::AvgPool2d(*p),
                QLayer::Flatten => LayerDef::Flatten,
            };
            layers
                .push(def)
                .map_err(|_| QuantizeError::TooLarge("layer count"))?;
        }
        Ok(ModelDef {
            id: &self.id,
            input_shape: self.input_shape,
            input: self.input,
            layers,
        })
    }

    /// The complete `.fmq` file: header, then the postcard payload.
    pub fn to_bytes(&self) -> Result<Vec<u8>, QuantizeError> {
        let payload = postcard::to_allocvec(&self.def()?)?;
        let header = Header::for_payload(&payload).ok_or(QuantizeError::TooLarge("payload"))?;
        let mut out = header.to_bytes().to_vec();
        out.extend_from_slice(&payload);
        Ok(out)
    }
}

fn shape_of(d: Dims) -> Result<Shape, QuantizeError> {
    let (c, h, w) = match d {
        Dims::Image { c, h, w } => (c, h, w),
        Dims::Flat(n) => (n, 1, 1),
    };
    let f = |v: usize| u16::try_from(v).map_err(|_| QuantizeError::TooLarge("dimension"));
    Ok(Shape {
        channels: f(c)?,
        height: f(h)?,
        width: f(w)?,
    })
}

fn to_vec(t: &Tensor) -> Result<Vec<f32>, QuantizeError> {
    Ok(t.flatten_all()?.to_vec1()?)
}

/// Quantises `net`, with activation ranges from [`calibrate`].
pub fn quantize(net: &Net, ranges: &[(f32, f32)]) -> Result<QModel, QuantizeError> {
    let input = input_qparams();
    let mut cur = input;
    let mut layers = Vec::new();
    for lowered in lower(&net.arch.layers)? {
        let layer = net.arch.layers[lowered.first];
        let q = match (lowered.op, layer, &net.params[lowered.first]) {
            (LoweredOp::Linear(activation), _, Some(p)) => {
                let (lo, hi) = ranges[lowered.last];
                let output = activation_qparams(lo, hi);
                let w = to_vec(p.weight.as_tensor())?;
                let b = to_vec(p.bias.as_tensor())?;
                let out_ch = b.len();
                let (weights, scales) = quantize_weights(&w, out_ch);
                let mut quant = OwnedChannelQuant::default();
                for (channel, (&s, &bias)) in scales.iter().zip(&b).enumerate() {
                    let (m, shift) =
                        infer_core::quant::channel_multiplier(cur.scale, s, output.scale).ok_or(
                            QuantizeError::Multiplier {
                                index: layers.len(),
                                channel,
                            },
                        )?;
                    let shift = i8::try_from(shift).map_err(|_| QuantizeError::Multiplier {
                        index: layers.len(),
                        channel,
                    })?;
                    quant.weight_scales.extend(s.to_le_bytes());
                    quant
                        .bias
                        .extend(quantize_bias(bias, cur.scale, s).to_le_bytes());
                    quant.multipliers.extend(m.to_le_bytes());
                    quant.shifts.extend(shift.to_le_bytes());
                }
                cur = output;
                let in_dims = net.inputs[lowered.first];
                match layer {
                    Layer::Conv2d {
                        out_ch,
                        kernel,
                        stride,
                        padding,
                    } => {
                        let u8_of = |v: usize| {
                            u8::try_from(v).map_err(|_| QuantizeError::TooLarge("conv geometry"))
                        };
                        let u16_of = |v: usize| {
                            u16::try_from(v).map_err(|_| QuantizeError::TooLarge("channels"))
                        };
                        QLayer::Conv2d {
                            in_ch: shape_of(in_dims)?.channels,
                            out_ch: u16_of(out_ch)?,
                            kernel: u8_of(kernel)?,
                            stride: u8_of(stride)?,
                            padding: u8_of(padding)?,
                            weights,
                            quant,
                            output,
                            activation,
                        }
                    }
                    _ => {
                        let u32_of = |v: usize| {
                            u32::try_from(v).map_err(|_| QuantizeError::TooLarge("features"))
                        };
                        QLayer::Dense {
                            in_dim: u32_of(in_dims.len())?,
                            out_dim: u32_of(out_ch)?,
                            weights,
                            quant,
                            output,
                            activation,
                        }
                    }
                }
            }
            (LoweredOp::MaxPool(p), ..) => QLayer::MaxPool2d(p),
            (LoweredOp::AvgPool(p), ..) => QLayer::AvgPool2d(p),
            (LoweredOp::Flatten, ..) => QLayer::Flatten,
            (LoweredOp::Linear(_), _, None) => {
                return Err(QuantizeError::Unsupported {
                    index: lowered.first,
                    layer,
                    why: "layer has no parameters",
                });
            }
        };
        layers.push(q);
    }
    Ok(QModel {
        id: net.arch.id.to_string(),
        input_shape: shape_of(net.arch.input)?,
        input,
        layers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch;

    #[test]
    fn lowering_fuses_relu_and_drops_dropout() {
        let l = lower(&arch::s5_cnn().layers).unwrap();
        let ops: Vec<LoweredOp> = l.iter().map(|l| l.op).collect();
        let p = Pool2dDef {
            kernel: 2,
            stride: 2,
        };
        assert_eq!(
            ops,
            vec![
                LoweredOp::Linear(Activation::Relu),
                LoweredOp::MaxPool(p),
                LoweredOp::Linear(Activation::Relu),
                LoweredOp::MaxPool(p),
                LoweredOp::Flatten,
                LoweredOp::Linear(Activation::Relu),
                LoweredOp::Linear(Activation::None),
            ]
        );
        // FC 128 covers dense, ReLU and dropout (arch layers 7..=9).
        assert_eq!((l[5].first, l[5].last), (7, 9));
    }

    #[test]
    fn lone_relu_is_rejected() {
        let err = lower(&[Layer::Flatten, Layer::Relu]).unwrap_err();
        assert!(matches!(err, QuantizeError::Unsupported { index: 1, .. }));
    }

    #[test]
    fn activation_params_cover_the_range() {
        let q = activation_qparams(0.0, 2.55);
        assert_eq!(q.zero_point, -128);
        assert!((q.scale - 0.01).abs() < 1e-7);
        let q = activation_qparams(-1.0, 1.0);
        // zero point: -128 + 1/(2/255) = -0.5 -> rounds away from zero to -1
        assert_eq!(q.zero_point, -1);
        // all-positive range is widened to include 0
        assert_eq!(activation_qparams(1.0, 2.0).zero_point, -128);
    }

    #[test]
    fn weights_quantise_per_channel_with_bounded_error() {
        let w = [0.5f32, -0.25, 0.1, 0.0, 0.02, -0.04];
        let (q, s) = quantize_weights(&w, 2);
        let q: Vec<i8> = q.iter().map(|&b| i8::from_le_bytes([b])).collect();
        assert_eq!(q[0], 127);
        assert_eq!(q[5], -127);
        for (i, (&qv, &wv)) in q.iter().zip(&w).enumerate() {
            let back = f32::from(qv) * s[i / 3];
            assert!((back - wv).abs() <= s[i / 3] / 2.0 + 1e-9, "{i}");
        }
    }

    #[test]
    fn bias_rounds_and_saturates() {
        assert_eq!(quantize_bias(1.0, 0.5, 0.25), 8);
        assert_eq!(quantize_bias(-0.3125, 0.5, 0.25), -3); // -2.5 -> -3 (half away from zero)
        assert_eq!(quantize_bias(1e30, 1e-10, 1e-10), i32::MAX);
    }

    #[test]
    fn input_mapping_is_exact() {
        let q = input_qparams();
        for pixel in [0u8, 73, 128, 255] {
            let int8 = i32::from(pixel) - 128;
            let real = (int8 - q.zero_point) as f32 * q.scale;
            assert!((real - crate::arch::normalise(pixel)).abs() < 1e-6);
        }
    }
}
