//! Test and bench helpers: model files built from the crate's own format types
//! ([`OwnedModel`]) with random weights quantised the way the trainer does, and a deterministic
//! generator for parameters and pixels.

#![allow(dead_code)] // not every test binary uses every helper

use infer_core::format::{
    Activation, AvgPool2dDef, ChannelQuant, Conv2dDef, DenseDef, FlattenDef, HEADER_LEN, Header,
    MaxPool2dDef, OpDef, OwnedModel, Padding, QParams, Shape, TensorId,
};
use infer_core::ops::{AddDef, GlobalAvgPoolDef, LeakyReluDef};
use infer_core::quant::channel_multiplier;
use infer_core::spec::{Conv2dGeometry, DenseGeometry, Pool2dGeometry};

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

    /// Uniform in `[lo, hi]` (in steps of `(hi - lo) / 2^16`).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let t = f32::from(u16::try_from(self.next_u32() >> 16).unwrap()) / f32::from(u16::MAX);
        lo + (hi - lo) * t
    }

    pub fn pixels(&mut self, n: usize) -> Vec<u8> {
        (0..n)
            .map(|_| u8::try_from(self.range(0, 255)).unwrap())
            .collect()
    }
}

/// Quantises one output channel as the trainer does: symmetric int8 weights with scale
/// `max |w| / 127`, the bias at scale `input_scale * weight_scale`, and the requantisation
/// multiplier and shift derived from the scales with [`channel_multiplier`]. Appends the
/// weights to `weights` and the channel to `quant`.
#[allow(clippy::cast_possible_truncation)] // rounded and clamped to the int8 or i32 range
pub fn quantize_channel(
    float_weights: &[f32],
    float_bias: f32,
    input: QParams,
    output: QParams,
    weights: &mut Vec<u8>,
    quant: &mut ChannelQuant<Vec<u8>>,
) {
    let max = float_weights.iter().fold(0.0_f32, |m, w| m.max(w.abs()));
    let weight_scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    for &w in float_weights {
        let q = (w / weight_scale).round().clamp(-127.0, 127.0);
        weights.push(i8::try_from(q as i32).unwrap().to_le_bytes()[0]);
    }
    let bias = (float_bias / (input.scale * weight_scale)).round() as i32;
    let (multiplier, shift) = channel_multiplier(input.scale, weight_scale, output.scale)
        .expect("representable multiplier");
    quant.push(weight_scale, bias, multiplier, i8::try_from(shift).unwrap());
}

/// The per-channel quantisation of a conv or dense op.
pub fn quant_mut(op: &mut OpDef<Vec<u8>>) -> &mut ChannelQuant<Vec<u8>> {
    match op {
        OpDef::Conv2d(c) => &mut c.quant,
        OpDef::Dense(d) => &mut d.quant,
        other => panic!("{:?} has no quantisation", other.kind()),
    }
}

/// The postcard payload of `model` (its file without the header).
pub fn payload(model: &OwnedModel) -> Vec<u8> {
    model.to_bytes().unwrap()[HEADER_LEN..].to_vec()
}

/// A `.fmq` file with a correct header for `payload`.
pub fn file(payload: &[u8]) -> Vec<u8> {
    let mut out = Header::for_payload(payload).unwrap().to_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

/// Shape of a tensor while building: an image, or a flat vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dims {
    Image(usize, usize, usize),
    Flat(usize),
}

impl Dims {
    pub fn len(self) -> usize {
        match self {
            Self::Image(c, h, w) => c * h * w,
            Self::Flat(n) => n,
        }
    }

    /// `(channels, height, width)`, a flat vector as `(n, 1, 1)`.
    fn chw(self) -> (usize, usize, usize) {
        match self {
            Self::Image(c, h, w) => (c, h, w),
            Self::Flat(n) => (n, 1, 1),
        }
    }
}

/// `(x + pad_before + pad_after - kernel) / stride + 1`, or 0 if the window does not fit.
/// The output length of a window (infer-core's one rule, `spec::window_len`), 0 if it does
/// not fit (the generators then expect the model to be refused).
fn window(x: usize, (before, after): (u8, u8), kernel: u8, stride: u8) -> usize {
    let (before, after) = (usize::from(before), usize::from(after));
    infer_core::spec::window_len(x, before, after, usize::from(kernel), usize::from(stride))
        .unwrap_or(0)
}

/// Builds a model op by op with deterministic random parameters, tracking every tensor's shape
/// and quantisation so each op gets consistent dimensions and multipliers. The chained methods
/// (`conv`, `dense`, ...) read the last tensor; the `*_from` ones read any tensor and return the
/// new tensor's id.
pub struct Builder {
    model: OwnedModel,
    tensors: Vec<(Dims, QParams)>,
    rng: Lcg,
}

impl Builder {
    pub fn new(input_shape: Shape, input: QParams, seed: u64) -> Self {
        let dims = Dims::Image(
            usize::from(input_shape.channels),
            usize::from(input_shape.height),
            usize::from(input_shape.width),
        );
        Self {
            model: OwnedModel {
                id: "test-model".into(),
                input_shape,
                input,
                ops: Vec::new(),
            },
            tensors: vec![(dims, input)],
            rng: Lcg::new(seed),
        }
    }

    /// The id of the last tensor made.
    pub fn last(&self) -> TensorId {
        TensorId::try_from(self.tensors.len() - 1).unwrap()
    }

    /// Shape of tensor `id` (as the builder computed it).
    pub fn dims(&self, id: TensorId) -> Dims {
        self.tensors[usize::from(id)].0
    }

    /// Appends an op (reading whatever it names) that makes a tensor of `dims` and `q`.
    pub fn push(&mut self, op: OpDef<Vec<u8>>, dims: Dims, q: QParams) -> TensorId {
        self.model.ops.push(op);
        self.tensors.push((dims, q));
        self.last()
    }

    /// `out_ch` filters of random weights and biases, quantised for `input`'s scale.
    fn channels(
        &mut self,
        out_ch: usize,
        taps: usize,
        input: QParams,
        output: QParams,
    ) -> (Vec<u8>, ChannelQuant<Vec<u8>>) {
        let mut weights = Vec::new();
        let mut quant = ChannelQuant::default();
        for _ in 0..out_ch {
            // Real weights in [-r, r] with r in [0.6, 6] (scales of about 0.005 to 0.05), real
            // biases of up to 2000 input-times-weight steps.
            let r = self.rng.uniform(0.6, 6.0);
            let w: Vec<f32> = (0..taps).map(|_| self.rng.uniform(-r, r)).collect();
            let b = self.rng.uniform(-2000.0, 2000.0) * input.scale * r / 127.0;
            quantize_channel(&w, b, input, output, &mut weights, &mut quant);
        }
        (weights, quant)
    }

    /// Conv with a square kernel reading tensor `input`; `(kernel, stride, padding)`.
    pub fn conv_from(
        &mut self,
        input: TensorId,
        out_ch: u16,
        (kernel, stride, padding): (u8, u8, u8),
        output: QParams,
        activation: Activation,
    ) -> TensorId {
        let padding = Padding::uniform(padding);
        self.conv_padded_from(input, out_ch, (kernel, stride, padding), output, activation)
    }

    /// Conv with a square kernel reading tensor `input`, padding per side.
    pub fn conv_padded_from(
        &mut self,
        input: TensorId,
        out_ch: u16,
        geometry: (u8, u8, Padding),
        output: QParams,
        activation: Activation,
    ) -> TensorId {
        self.conv_grouped_from(input, out_ch, geometry, 1, output, activation)
    }

    /// Conv with a square kernel reading tensor `input`, padding per side, in `groups` channel
    /// groups.
    pub fn conv_grouped_from(
        &mut self,
        input: TensorId,
        out_ch: u16,
        (kernel, stride, padding): (u8, u8, Padding),
        groups: u16,
        output: QParams,
        activation: Activation,
    ) -> TensorId {
        let (dims, q) = self.tensors[usize::from(input)];
        let (c, h, w) = dims.chw();
        let taps = c / usize::from(groups.max(1)) * usize::from(kernel) * usize::from(kernel);
        let (weights, quant) = self.channels(usize::from(out_ch), taps, q, output);
        let out = Dims::Image(
            usize::from(out_ch),
            window(h, (padding.top, padding.bottom), kernel, stride),
            window(w, (padding.left, padding.right), kernel, stride),
        );
        let def = Conv2dDef {
            input,
            geometry: Conv2dGeometry {
                in_ch: u16::try_from(c).unwrap_or(u16::MAX),
                out_ch,
                kernel_h: kernel,
                kernel_w: kernel,
                stride,
                padding,
                groups,
            },
            weights,
            quant,
            output,
            activation,
        };
        self.push(OpDef::Conv2d(def), out, output)
    }

    /// Dense reading tensor `input` (of any shape: an image gives its element count as
    /// `in_dim`).
    pub fn dense_from(
        &mut self,
        input: TensorId,
        out_dim: u32,
        output: QParams,
        activation: Activation,
    ) -> TensorId {
        let (dims, q) = self.tensors[usize::from(input)];
        let in_dim = dims.len();
        let out = usize::try_from(out_dim).unwrap();
        let (weights, quant) = self.channels(out, in_dim, q, output);
        let def = DenseDef {
            input,
            geometry: DenseGeometry {
                in_dim: u32::try_from(in_dim).unwrap(),
                out_dim,
            },
            weights,
            quant,
            output,
            activation,
        };
        self.push(OpDef::Dense(def), Dims::Flat(out), output)
    }

    fn pool_dims(&self, input: TensorId, kernel: u8, stride: u8) -> (Dims, QParams) {
        let (dims, q) = self.tensors[usize::from(input)];
        let (c, h, w) = dims.chw();
        let out = Dims::Image(
            c,
            window(h, (0, 0), kernel, stride),
            window(w, (0, 0), kernel, stride),
        );
        (out, q)
    }

    pub fn max_pool_from(&mut self, input: TensorId, kernel: u8, stride: u8) -> TensorId {
        let (out, q) = self.pool_dims(input, kernel, stride);
        let geometry = Pool2dGeometry { kernel, stride };
        self.push(OpDef::MaxPool2d(MaxPool2dDef { input, geometry }), out, q)
    }

    pub fn avg_pool_from(&mut self, input: TensorId, kernel: u8, stride: u8) -> TensorId {
        let (out, q) = self.pool_dims(input, kernel, stride);
        let geometry = Pool2dGeometry { kernel, stride };
        self.push(OpDef::AvgPool2d(AvgPool2dDef { input, geometry }), out, q)
    }

    pub fn flatten_from(&mut self, input: TensorId) -> TensorId {
        let (dims, q) = self.tensors[usize::from(input)];
        self.push(
            OpDef::Flatten(FlattenDef { input }),
            Dims::Flat(dims.len()),
            q,
        )
    }

    /// `a + b` (the builder takes `a`'s shape).
    pub fn add_from(
        &mut self,
        a: TensorId,
        b: TensorId,
        output: QParams,
        activation: Activation,
    ) -> TensorId {
        let (dims, _) = self.tensors[usize::from(a)];
        let def = AddDef {
            inputs: [a, b],
            output,
            activation,
        };
        self.push(OpDef::Add(def), dims, output)
    }

    pub fn global_avg_pool_from(&mut self, input: TensorId) -> TensorId {
        let (dims, q) = self.tensors[usize::from(input)];
        let def = GlobalAvgPoolDef { input };
        self.push(OpDef::GlobalAvgPool(def), Dims::Flat(dims.chw().0), q)
    }

    pub fn leaky_relu_from(&mut self, input: TensorId, alpha: f32, output: QParams) -> TensorId {
        let (dims, _) = self.tensors[usize::from(input)];
        let def = LeakyReluDef {
            input,
            alpha,
            output,
        };
        self.push(OpDef::LeakyRelu(def), dims, output)
    }

    pub fn conv(
        mut self,
        out_ch: u16,
        geometry: (u8, u8, u8),
        output: QParams,
        activation: Activation,
    ) -> Self {
        self.conv_from(self.last(), out_ch, geometry, output, activation);
        self
    }

    pub fn dense(mut self, out_dim: u32, output: QParams, activation: Activation) -> Self {
        self.dense_from(self.last(), out_dim, output, activation);
        self
    }

    pub fn max_pool(mut self, kernel: u8, stride: u8) -> Self {
        self.max_pool_from(self.last(), kernel, stride);
        self
    }

    pub fn avg_pool(mut self, kernel: u8, stride: u8) -> Self {
        self.avg_pool_from(self.last(), kernel, stride);
        self
    }

    pub fn flatten(mut self) -> Self {
        self.flatten_from(self.last());
        self
    }

    /// The shape of every tensor so far, by id.
    pub fn all_dims(&self) -> Vec<Dims> {
        self.tensors.iter().map(|&(d, _)| d).collect()
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

/// A residual block: 2x8x8 input -> conv 3x3 pad 1 (t1, 4x8x8, ReLU) -> conv 3x3 pad 1 (t2) ->
/// conv 3x3 pad 1 (t3) -> add(t1, t3) (t4, ReLU) -> LeakyReLU (t5) -> global average pooling
/// (t6, 4) -> dense 10 (t7). t1 stays alive across the block.
pub fn residual_model() -> OwnedModel {
    let shape = Shape {
        channels: 2,
        height: 8,
        width: 8,
    };
    let mut b = Builder::new(shape, q(0.02, -10), 41);
    let t1 = b.conv_from(0, 4, (3, 1, 1), q(0.05, -128), Activation::Relu);
    let t2 = b.conv_from(t1, 4, (3, 1, 1), q(0.08, -20), Activation::Relu);
    let t3 = b.conv_from(t2, 4, (3, 1, 1), q(0.1, 3), Activation::None);
    let t4 = b.add_from(t1, t3, q(0.12, -60), Activation::Relu);
    let t5 = b.leaky_relu_from(t4, 0.1, q(0.1, -40));
    let t6 = b.global_avg_pool_from(t5);
    b.dense_from(t6, 10, q(0.05, 0), Activation::None);
    b.build()
}
