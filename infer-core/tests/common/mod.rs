//! Test helpers: build model files from owned, deterministic parameters, and run a model the
//! slow, obvious way as a reference for `Model::predict`.

#![allow(dead_code)] // not every test binary uses every helper

use infer_core::format::{
    Activation, ChannelQuant, Conv2dDef, DenseDef, Header, LayerDef, MAX_LAYERS, ModelDef,
    Pool2dDef, QParams, Shape,
};
use infer_core::quant::channel_multiplier;

/// A tiny deterministic generator (64-bit LCG, high bits out) so test models are reproducible
/// without a `rand` dependency.
#[derive(Debug, Clone)]
pub struct Lcg(u64);

impl Lcg {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u32(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        u32::try_from(self.0 >> 32).unwrap()
    }

    /// Uniform in `[lo, hi]`.
    pub fn range(&mut self, lo: i32, hi: i32) -> i32 {
        let span = u32::try_from(i64::from(hi) - i64::from(lo) + 1).unwrap();
        lo + i32::try_from(self.next_u32() % span).unwrap()
    }

    /// A weight in `[-127, 127]`, as the file's byte.
    pub fn weight(&mut self) -> u8 {
        i8::try_from(self.range(-127, 127)).unwrap().to_le_bytes()[0]
    }

    pub fn pixels(&mut self, n: usize) -> Vec<u8> {
        (0..n)
            .map(|_| u8::try_from(self.range(0, 255)).unwrap())
            .collect()
    }
}

/// Per-channel quantisation arrays, as file bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnedQuant {
    pub weight_scales: Vec<u8>,
    pub bias: Vec<u8>,
    pub multipliers: Vec<u8>,
    pub shifts: Vec<u8>,
}

impl OwnedQuant {
    /// Random weight scales in `[0.005, 0.05]` and biases in `[-2000, 2000]` for `channels`
    /// channels, with the multipliers the loader expects for `input_scale -> output_scale`.
    pub fn random(channels: usize, input_scale: f32, output_scale: f32, rng: &mut Lcg) -> Self {
        let mut q = Self {
            weight_scales: Vec::new(),
            bias: Vec::new(),
            multipliers: Vec::new(),
            shifts: Vec::new(),
        };
        for _ in 0..channels {
            let ws = 0.005 + 0.045 * f32::from(u16::try_from(rng.range(0, 1000)).unwrap()) / 1000.0;
            let (m, s) = channel_multiplier(input_scale, ws, output_scale).unwrap();
            q.weight_scales.extend_from_slice(&ws.to_le_bytes());
            q.bias
                .extend_from_slice(&rng.range(-2000, 2000).to_le_bytes());
            q.multipliers.extend_from_slice(&m.to_le_bytes());
            q.shifts.push(i8::try_from(s).unwrap().to_le_bytes()[0]);
        }
        q
    }

    fn view(&self) -> ChannelQuant<'_> {
        ChannelQuant {
            weight_scales: &self.weight_scales,
            bias: &self.bias,
            multipliers: &self.multipliers,
            shifts: &self.shifts,
        }
    }

    pub fn bias(&self, c: usize) -> i32 {
        i32::from_le_bytes(self.bias[4 * c..4 * c + 4].try_into().unwrap())
    }

    pub fn multiplier(&self, c: usize) -> i32 {
        i32::from_le_bytes(self.multipliers[4 * c..4 * c + 4].try_into().unwrap())
    }

    pub fn shift(&self, c: usize) -> i32 {
        i32::from(i8::from_le_bytes([self.shifts[c]]))
    }
}

/// One layer with owned parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum OwnedLayer {
    Conv {
        in_ch: u16,
        out_ch: u16,
        kernel_h: u8,
        kernel_w: u8,
        stride: u8,
        padding: u8,
        weights: Vec<u8>,
        quant: OwnedQuant,
        output: QParams,
        activation: Activation,
    },
    Dense {
        in_dim: u32,
        out_dim: u32,
        weights: Vec<u8>,
        quant: OwnedQuant,
        output: QParams,
        activation: Activation,
    },
    MaxPool(Pool2dDef),
    AvgPool(Pool2dDef),
    Flatten,
}

impl OwnedLayer {
    fn view(&self) -> LayerDef<'_> {
        match self {
            Self::Conv {
                in_ch,
                out_ch,
                kernel_h,
                kernel_w,
                stride,
                padding,
                weights,
                quant,
                output,
                activation,
            } => LayerDef::Conv2d(Conv2dDef {
                in_ch: *in_ch,
                out_ch: *out_ch,
                kernel_h: *kernel_h,
                kernel_w: *kernel_w,
                stride: *stride,
                padding: *padding,
                weights,
                quant: quant.view(),
                output: *output,
                activation: *activation,
            }),
            Self::Dense {
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
            Self::MaxPool(p) => LayerDef::MaxPool2d(*p),
            Self::AvgPool(p) => LayerDef::AvgPool2d(*p),
            Self::Flatten => LayerDef::Flatten,
        }
    }

    pub fn quant_mut(&mut self) -> &mut OwnedQuant {
        match self {
            Self::Conv { quant, .. } | Self::Dense { quant, .. } => quant,
            _ => panic!("layer has no quantisation"),
        }
    }
}

/// A whole model with owned parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnedModel {
    pub id: String,
    pub input_shape: Shape,
    pub input: QParams,
    pub layers: Vec<OwnedLayer>,
}

impl OwnedModel {
    /// The format view, borrowing the parameters. Panics past `MAX_LAYERS` layers.
    pub fn def(&self) -> ModelDef<'_> {
        let mut layers = heapless::Vec::new();
        for l in &self.layers {
            layers.push(l.view()).expect("at most MAX_LAYERS layers");
        }
        assert!(layers.len() <= MAX_LAYERS);
        ModelDef {
            id: &self.id,
            input_shape: self.input_shape,
            input: self.input,
            layers,
        }
    }

    /// The postcard payload.
    pub fn payload(&self) -> Vec<u8> {
        postcard::to_allocvec(&self.def()).unwrap()
    }

    /// The complete `.fmq` file.
    pub fn to_bytes(&self) -> Vec<u8> {
        file(&self.payload())
    }
}

impl OwnedQuant {
    fn from_view(q: &ChannelQuant<'_>) -> Self {
        Self {
            weight_scales: q.weight_scales.to_vec(),
            bias: q.bias.to_vec(),
            multipliers: q.multipliers.to_vec(),
            shifts: q.shifts.to_vec(),
        }
    }
}

impl OwnedModel {
    /// An owned copy of a decoded definition.
    pub fn from_def(def: &ModelDef<'_>) -> Self {
        let layers = def
            .layers
            .iter()
            .map(|l| match *l {
                LayerDef::Conv2d(ref c) => OwnedLayer::Conv {
                    in_ch: c.in_ch,
                    out_ch: c.out_ch,
                    kernel_h: c.kernel_h,
                    kernel_w: c.kernel_w,
                    stride: c.stride,
                    padding: c.padding,
                    weights: c.weights.to_vec(),
                    quant: OwnedQuant::from_view(&c.quant),
                    output: c.output,
                    activation: c.activation,
                },
                LayerDef::Dense(ref d) => OwnedLayer::Dense {
                    in_dim: d.in_dim,
                    out_dim: d.out_dim,
                    weights: d.weights.to_vec(),
                    quant: OwnedQuant::from_view(&d.quant),
                    output: d.output,
                    activation: d.activation,
                },
                LayerDef::MaxPool2d(p) => OwnedLayer::MaxPool(p),
                LayerDef::AvgPool2d(p) => OwnedLayer::AvgPool(p),
                LayerDef::Flatten => OwnedLayer::Flatten,
            })
            .collect();
        Self {
            id: def.id.into(),
            input_shape: def.input_shape,
            input: def.input,
            layers,
        }
    }
}

/// A `.fmq` file with a correct header for `payload`.
pub fn file(payload: &[u8]) -> Vec<u8> {
    let mut out = Header::for_payload(payload).unwrap().to_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

/// Builds a model layer by layer with deterministic random parameters, tracking the current
/// shape and quantisation so each layer gets consistent dimensions and multipliers.
pub struct Builder {
    model: OwnedModel,
    q: QParams,
    /// `(channels, height, width)`, or `(len, 1, 1)` once flat.
    shape: (usize, usize, usize),
    rng: Lcg,
}

impl Builder {
    pub fn new(input_shape: Shape, input: QParams, seed: u64) -> Self {
        Self {
            model: OwnedModel {
                id: "test-model".into(),
                input_shape,
                input,
                layers: Vec::new(),
            },
            q: input,
            shape: (
                usize::from(input_shape.channels),
                usize::from(input_shape.height),
                usize::from(input_shape.width),
            ),
            rng: Lcg::new(seed),
        }
    }

    /// Conv with a square kernel; `geometry = (kernel, stride, padding)`.
    pub fn conv(
        mut self,
        out_ch: u16,
        (kernel, stride, padding): (u8, u8, u8),
        output: QParams,
        activation: Activation,
    ) -> Self {
        let (c, h, w) = self.shape;
        let in_ch = u16::try_from(c).unwrap_or(u16::MAX);
        let n = usize::from(out_ch) * c * usize::from(kernel) * usize::from(kernel);
        let weights = (0..n).map(|_| self.rng.weight()).collect();
        let quant = OwnedQuant::random(
            usize::from(out_ch),
            self.q.scale,
            output.scale,
            &mut self.rng,
        );
        let dim = |x: usize| {
            let padded = x + 2 * usize::from(padding);
            match padded.checked_sub(usize::from(kernel)) {
                Some(d) if stride > 0 => d / usize::from(stride) + 1,
                _ => 0,
            }
        };
        self.shape = (usize::from(out_ch), dim(h), dim(w));
        self.q = output;
        self.model.layers.push(OwnedLayer::Conv {
            in_ch,
            out_ch,
            kernel_h: kernel,
            kernel_w: kernel,
            stride,
            padding,
            weights,
            quant,
            output,
            activation,
        });
        self
    }

    pub fn dense(mut self, out_dim: u32, output: QParams, activation: Activation) -> Self {
        let (c, h, w) = self.shape;
        let in_dim = u32::try_from(c * h * w).unwrap();
        let n = usize::try_from(in_dim * out_dim).unwrap();
        let weights = (0..n).map(|_| self.rng.weight()).collect();
        let channels = usize::try_from(out_dim).unwrap();
        let quant = OwnedQuant::random(channels, self.q.scale, output.scale, &mut self.rng);
        self.shape = (channels, 1, 1);
        self.q = output;
        self.model.layers.push(OwnedLayer::Dense {
            in_dim,
            out_dim,
            weights,
            quant,
            output,
            activation,
        });
        self
    }

    fn pool_shape(&mut self, kernel: u8, stride: u8) {
        let (c, h, w) = self.shape;
        let dim = |x: usize| match x.checked_sub(usize::from(kernel)) {
            Some(d) if stride > 0 => d / usize::from(stride) + 1,
            _ => 0,
        };
        self.shape = (c, dim(h), dim(w));
    }

    pub fn max_pool(mut self, kernel: u8, stride: u8) -> Self {
        self.pool_shape(kernel, stride);
        self.model
            .layers
            .push(OwnedLayer::MaxPool(Pool2dDef { kernel, stride }));
        self
    }

    pub fn avg_pool(mut self, kernel: u8, stride: u8) -> Self {
        self.pool_shape(kernel, stride);
        self.model
            .layers
            .push(OwnedLayer::AvgPool(Pool2dDef { kernel, stride }));
        self
    }

    pub fn flatten(mut self) -> Self {
        let (c, h, w) = self.shape;
        self.shape = (c * h * w, 1, 1);
        self.model.layers.push(OwnedLayer::Flatten);
        self
    }

    pub fn build(self) -> OwnedModel {
        self.model
    }
}

pub const MNIST_SHAPE: Shape = Shape {
    channels: 1,
    height: 28,
    width: 28,
};

/// The pixel normalisation folded into the input: pixel / 255 with `q = pixel - 128`.
pub const PIXEL_Q: QParams = QParams {
    scale: 1.0 / 255.0,
    zero_point: -128,
};

pub fn q(scale: f32, zero_point: i32) -> QParams {
    QParams { scale, zero_point }
}

/// 1x28x28 -> conv 3x3 pad 1 (4, ReLU) -> maxpool 2 -> conv 3x3 stride 2 (6, ReLU6) -> avgpool 2
/// -> flatten (54) -> dense (10).
pub fn standard_model() -> OwnedModel {
    Builder::new(MNIST_SHAPE, PIXEL_Q, 7)
        .conv(4, (3, 1, 1), q(0.02, -100), Activation::Relu)
        .max_pool(2, 2)
        .conv(6, (3, 2, 0), q(0.05, -128), Activation::Relu6)
        .avg_pool(2, 2)
        .flatten()
        .dense(10, q(0.1, 3), Activation::None)
        .build()
}

/// A small non-MNIST model: 2x5x5 -> conv 2x2 pad 2 (3) -> flatten (3*8*8 = 192) -> dense (4).
pub fn tiny_model() -> OwnedModel {
    let input = Shape {
        channels: 2,
        height: 5,
        width: 5,
    };
    Builder::new(input, q(0.01, 5), 11)
        .conv(3, (2, 1, 2), q(0.03, 0), Activation::None)
        .flatten()
        .dense(4, q(0.07, -7), Activation::Relu)
        .build()
}

/// The shapes of `s5-cnn` with random parameters: 1x28x28 -> conv 3x3 pad 1 (32, ReLU) ->
/// maxpool 2 -> conv 3x3 pad 1 (64, ReLU) -> maxpool 2 -> flatten (3136) -> dense 128 (ReLU) ->
/// dense 10. For benches and whole-model tests until (and besides) the trained file.
pub fn cnn_model() -> OwnedModel {
    Builder::new(MNIST_SHAPE, PIXEL_Q, 23)
        .conv(32, (3, 1, 1), q(0.05, -128), Activation::Relu)
        .max_pool(2, 2)
        .conv(64, (3, 1, 1), q(0.3, -128), Activation::Relu)
        .max_pool(2, 2)
        .flatten()
        .dense(128, q(0.5, -128), Activation::Relu)
        .dense(10, q(0.5, 4), Activation::None)
        .build()
}

/// The shapes of `s3-lenet-base` with random parameters: 1x28x28 -> conv 5x5 (6, ReLU) ->
/// avgpool 2 -> conv 5x5 (16, ReLU) -> avgpool 2 -> flatten (256) -> dense 120 (ReLU) ->
/// dense 84 (ReLU) -> dense 10.
pub fn lenet_model() -> OwnedModel {
    Builder::new(MNIST_SHAPE, PIXEL_Q, 29)
        .conv(6, (5, 1, 0), q(0.05, -128), Activation::Relu)
        .avg_pool(2, 2)
        .conv(16, (5, 1, 0), q(0.2, -128), Activation::Relu)
        .avg_pool(2, 2)
        .flatten()
        .dense(120, q(0.3, -128), Activation::Relu)
        .dense(84, q(0.3, -128), Activation::Relu)
        .dense(10, q(0.3, 2), Activation::None)
        .build()
}

// ----------------------------------------------------------------------------------------------
// Reference implementation: plain loops over the owned model, written from the spec.

/// `round(a * b / 2^31)` with gemmlowp's nudge and truncating division, in i128.
fn ref_srdhm(a: i32, b: i32) -> i32 {
    if a == i32::MIN && b == i32::MIN {
        return i32::MAX;
    }
    let ab = i128::from(a) * i128::from(b);
    let nudge = if ab >= 0 {
        1_i128 << 30
    } else {
        1 - (1_i128 << 30)
    };
    i32::try_from((ab + nudge) / (1_i128 << 31)).unwrap()
}

/// `x / 2^e` rounded half away from zero.
fn ref_rdbpot(x: i32, e: i32) -> i32 {
    let d = 1_i64 << e;
    let (mag, rem) = (i64::from(x).abs() / d, i64::from(x).abs() % d);
    let mag = if 2 * rem >= d && e > 0 { mag + 1 } else { mag };
    i32::try_from(if x < 0 { -mag } else { mag }).unwrap()
}

#[allow(clippy::cast_possible_truncation)] // wrapping to i32 is the spec
fn ref_requant(acc: i64, multiplier: i32, shift: i32) -> i32 {
    // The i32 accumulator wraps (two's complement): the exact sum modulo 2^32.
    let acc = acc as i32;
    let left = u32::try_from(shift.max(0)).unwrap();
    ref_rdbpot(
        ref_srdhm(acc.wrapping_shl(left), multiplier),
        (-shift).max(0),
    )
}

#[allow(clippy::cast_possible_truncation)] // f32 -> i32 of a rounded, small value
fn ref_act_range(activation: Activation, out: QParams) -> (i32, i32) {
    let quantize = |f: f32| out.zero_point + (f / out.scale).round() as i32;
    match activation {
        Activation::None => (-128, 127),
        Activation::Relu => (quantize(0.0).max(-128), 127),
        Activation::Relu6 => (quantize(0.0).max(-128), quantize(6.0).min(127)),
    }
}

fn ref_output(acc: i64, quant: &OwnedQuant, c: usize, out: QParams, act: Activation) -> i32 {
    let (lo, hi) = ref_act_range(act, out);
    (ref_requant(acc, quant.multiplier(c), quant.shift(c)) + out.zero_point).clamp(lo, hi)
}

fn weight(weights: &[u8], i: usize) -> i64 {
    i64::from(i8::from_le_bytes([weights[i]]))
}

/// Runs `model` on raw pixels the obvious way and returns the int8 logits.
pub fn reference_forward(model: &OwnedModel, pixels: &[u8]) -> Vec<i8> {
    let s = model.input_shape;
    let (mut c, mut h, mut w) = (
        usize::from(s.channels),
        usize::from(s.height),
        usize::from(s.width),
    );
    assert_eq!(pixels.len(), c * h * w);
    // Activations as i32 values in [-128, 127].
    let mut x: Vec<i32> = pixels.iter().map(|&p| i32::from(p) - 128).collect();
    let mut zp = model.input.zero_point;
    for layer in &model.layers {
        match layer {
            OwnedLayer::Conv {
                out_ch,
                kernel_h,
                kernel_w,
                stride,
                padding,
                weights,
                quant,
                output,
                activation,
                ..
            } => {
                let (kh, kw, st, p) = (
                    usize::from(*kernel_h),
                    usize::from(*kernel_w),
                    usize::from(*stride),
                    usize::from(*padding),
                );
                let oc = usize::from(*out_ch);
                let (oh, ow) = ((h + 2 * p - kh) / st + 1, (w + 2 * p - kw) / st + 1);
                let mut y = vec![0; oc * oh * ow];
                for o in 0..oc {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let mut acc = i64::from(quant.bias(o));
                            for i in 0..c {
                                for ky in 0..kh {
                                    for kx in 0..kw {
                                        let (py, px) = (oy * st + ky, ox * st + kx);
                                        if py < p || px < p || py - p >= h || px - p >= w {
                                            continue; // padding: skipped
                                        }
                                        let v = x[(i * h + py - p) * w + px - p];
                                        let wi = ((o * c + i) * kh + ky) * kw + kx;
                                        acc += weight(weights, wi) * i64::from(v - zp);
                                    }
                                }
                            }
                            y[(o * oh + oy) * ow + ox] =
                                ref_output(acc, quant, o, *output, *activation);
                        }
                    }
                }
                (c, h, w) = (oc, oh, ow);
                x = y;
                zp = output.zero_point;
            }
            OwnedLayer::Dense {
                out_dim,
                weights,
                quant,
                output,
                activation,
                ..
            } => {
                let n = x.len();
                let od = usize::try_from(*out_dim).unwrap();
                x = (0..od)
                    .map(|o| {
                        let acc = (0..n).fold(i64::from(quant.bias(o)), |acc, i| {
                            acc + weight(weights, o * n + i) * i64::from(x[i] - zp)
                        });
                        ref_output(acc, quant, o, *output, *activation)
                    })
                    .collect();
                (c, h, w) = (od, 1, 1);
                zp = output.zero_point;
            }
            OwnedLayer::MaxPool(pool) | OwnedLayer::AvgPool(pool) => {
                let avg = matches!(layer, OwnedLayer::AvgPool(_));
                let (k, st) = (usize::from(pool.kernel), usize::from(pool.stride));
                let (oh, ow) = ((h - k) / st + 1, (w - k) / st + 1);
                let mut y = Vec::new();
                for ch in 0..c {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let window: Vec<i32> = (0..k * k)
                                .map(|t| x[(ch * h + oy * st + t / k) * w + ox * st + t % k])
                                .collect();
                            y.push(if avg {
                                let sum: i32 = window.iter().sum();
                                let n = i32::try_from(window.len()).unwrap();
                                // Round half away from zero: |sum| / n rounded, with the sign.
                                let mag = (2 * sum.abs() + n) / (2 * n);
                                if sum < 0 { -mag } else { mag }
                            } else {
                                *window.iter().max().unwrap()
                            });
                        }
                    }
                }
                (h, w) = (oh, ow);
                x = y;
            }
            OwnedLayer::Flatten => {
                (c, h, w) = (c * h * w, 1, 1);
            }
        }
    }
    x.into_iter().map(|v| i8::try_from(v).unwrap()).collect()
}

/// Index of the largest logit, the lowest among ties.
pub fn reference_argmax(logits: &[i8]) -> usize {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best
}
