//! [`Model`]: a validated, zero-copy view of a model file, and inference over it.
//!
//! [`Model::from_bytes`] checks everything once (header, checksum, encoding, shapes, buffer
//! lengths, quantisation parameters, requantisation multipliers) and precomputes each layer's
//! shapes, clamp range and the scratch plan. After that [`Model::predict`] can only fail on the
//! caller's buffers, and never panics.
//!
//! # Shapes
//!
//! Activations flow as [`TensorShape`]s: the model input is an image `[c, h, w]`; conv and
//! pooling layers take and give images; [`LayerDef::Flatten`] turns an image into a flat vector
//! (channel-major, moving no data); dense layers take and give flat vectors. A dense layer
//! directly after an image is rejected ([`Error::ExpectedFlat`]) even if the image is `[c, 1,
//! 1]`: the exporter writes the `Flatten` explicitly. The last layer must give a flat vector of
//! 1 to [`MAX_CLASSES`] logits.
//!
//! # Scratch plan
//!
//! Inference needs one caller-provided `&mut [i8]` of [`Model::scratch_len`] bytes. The input
//! image is written at the start of it (`q = pixel - 128`); each layer then reads its input from
//! one end of the scratch and writes its output at the other end, so the tensors ping-pong
//! between the start and the end. `scratch_len` is therefore the largest
//! `input_len + output_len` over the layers (and at least the input length); `Flatten` moves
//! nothing and needs nothing.
//!
//! The bytes between a layer's input and output (the scratch the largest layer needs but this
//! one does not) are lent to its kernel as working space: [`conv2d_i8`] unrolls patches there
//! (and [`dense_i8`] may widen its input there) when they fit, which makes those layers faster
//! but never changes `scratch_len` or the results.
//!
//! A convolution directly followed by 2x2 max pooling with stride 2 runs as one kernel,
//! [`conv2d_max_pool2d_i8`] (bit-exact with the two in turn), from the convolution's input
//! straight into the pooling's output. `scratch_len` is still computed layer by layer, and it
//! covers the fused step (its output is smaller than the convolution's).

use core::fmt;

use crate::error::{Buffer, Error};
use crate::format::{
    Activation, CRC, ChannelQuant, Conv2dDef, DenseDef, HEADER_LEN, LayerDef, MAGIC, MAX_LAYERS,
    ModelDef, Pool2dDef, QParams, Shape, VERSION,
};
use crate::kernels::{
    Conv2dParams, Pool2dParams, QRequant, avg_pool2d_i8, conv2d_i8, conv2d_max_pool2d_i8, dense_i8,
    le_i32, max_pool2d_i8,
};
use crate::quant::channel_multiplier;

/// Most classes (output logits) a model may have.
pub const MAX_CLASSES: usize = 16;

/// The input shape [`Model::predict`] takes: one 28x28 grey image (Fashion-MNIST).
pub const IMAGE_SHAPE: Shape = Shape {
    channels: 1,
    height: 28,
    width: 28,
};

/// Number of pixels of a Fashion-MNIST image.
pub const IMAGE_LEN: usize = 28 * 28;

/// Shape of an activation tensor between layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TensorShape {
    /// An image `[channels, height, width]` (NCHW without the N).
    Image(Shape),
    /// A flat vector of this many features.
    Flat(u32),
}

impl TensorShape {
    /// Number of elements (saturating at `usize::MAX`; the shapes of a loaded [`Model`] always
    /// fit).
    pub fn len(self) -> usize {
        match self {
            Self::Image(s) => s.checked_len().unwrap_or(usize::MAX),
            Self::Flat(n) => usize::try_from(n).unwrap_or(usize::MAX),
        }
    }

    /// Whether the tensor holds no element (never the case in a loaded [`Model`]).
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }
}

/// What a layer computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum LayerKind {
    /// 2-D convolution ([`conv2d_i8`]).
    Conv2d,
    /// Fully connected layer ([`dense_i8`]).
    Dense,
    /// Max pooling ([`max_pool2d_i8`]).
    MaxPool2d,
    /// Average pooling ([`avg_pool2d_i8`]).
    AvgPool2d,
    /// Flatten (moves no data).
    Flatten,
}

/// A validated layer with typed views of its parameters.
#[derive(Clone, Copy, PartialEq)]
enum Op<'a> {
    Conv2d {
        input: Shape,
        params: Conv2dParams,
        weights: &'a [i8],
        requant: QRequant<'a>,
    },
    Dense {
        weights: &'a [i8],
        requant: QRequant<'a>,
    },
    MaxPool2d {
        input: Shape,
        params: Pool2dParams,
    },
    AvgPool2d {
        input: Shape,
        params: Pool2dParams,
    },
    Flatten,
}

/// One validated layer of a [`Model`]: what it computes, its shapes and quantisation.
#[derive(Clone, Copy, PartialEq)]
pub struct QLayer<'a> {
    op: Op<'a>,
    input_shape: TensorShape,
    output_shape: TensorShape,
    input_qparams: QParams,
    output_qparams: QParams,
}

impl QLayer<'_> {
    /// What the layer computes.
    pub fn kind(&self) -> LayerKind {
        match self.op {
            Op::Conv2d { .. } => LayerKind::Conv2d,
            Op::Dense { .. } => LayerKind::Dense,
            Op::MaxPool2d { .. } => LayerKind::MaxPool2d,
            Op::AvgPool2d { .. } => LayerKind::AvgPool2d,
            Op::Flatten => LayerKind::Flatten,
        }
    }

    /// Shape of the layer's input.
    pub fn input_shape(&self) -> TensorShape {
        self.input_shape
    }

    /// Shape of the layer's output.
    pub fn output_shape(&self) -> TensorShape {
        self.output_shape
    }

    /// Quantisation of the layer's input.
    pub fn input_qparams(&self) -> QParams {
        self.input_qparams
    }

    /// Quantisation of the layer's output (the input's for pooling and flatten).
    pub fn output_qparams(&self) -> QParams {
        self.output_qparams
    }

    /// The output clamp `[act_min, act_max]`: the fused activation's range for conv and dense
    /// layers, `[-128, 127]` otherwise.
    pub fn activation_range(&self) -> (i8, i8) {
        match self.op {
            Op::Conv2d { requant, .. } | Op::Dense { requant, .. } => {
                (requant.act_min, requant.act_max)
            }
            _ => (i8::MIN, i8::MAX),
        }
    }

    /// Multiply-accumulates per inference: `out_len * in_ch * kernel_h * kernel_w` for a conv
    /// layer (padded taps included), `in_dim * out_dim` for a dense layer, 0 otherwise.
    pub fn macs(&self) -> u64 {
        let out_len = u64::try_from(self.output_shape.len()).unwrap_or(u64::MAX);
        let in_len = u64::try_from(self.input_shape.len()).unwrap_or(u64::MAX);
        match self.op {
            Op::Conv2d { input, params, .. } => {
                let taps = u64::from(input.channels)
                    .saturating_mul(u64::try_from(params.kernel_h).unwrap_or(u64::MAX))
                    .saturating_mul(u64::try_from(params.kernel_w).unwrap_or(u64::MAX));
                out_len.saturating_mul(taps)
            }
            Op::Dense { .. } => out_len.saturating_mul(in_len),
            _ => 0,
        }
    }

    /// Bytes of parameters the kernels read: weights, biases, multipliers and shifts (the `f32`
    /// weight scales are only read by validation).
    pub fn param_bytes(&self) -> usize {
        match self.op {
            Op::Conv2d {
                weights, requant, ..
            }
            | Op::Dense { weights, requant } => {
                weights.len()
                    + requant.bias.len()
                    + requant.multipliers.len()
                    + requant.shifts.len()
            }
            _ => 0,
        }
    }

    /// Runs the layer from `input` into `output`, whose lengths the model's plan guarantees;
    /// `work` is the rest of the scratch buffer, which the kernel may use.
    fn run(&self, input: &[i8], output: &mut [i8], work: &mut [i8]) {
        let zero_point = self.input_qparams.zero_point;
        match self.op {
            Op::Conv2d {
                input: shape,
                params,
                weights,
                requant,
            } => conv2d_i8(
                input, shape, zero_point, weights, &params, &requant, output, work,
            ),
            Op::Dense { weights, requant } => {
                dense_i8(input, zero_point, weights, &requant, output, work)
            }
            Op::MaxPool2d {
                input: shape,
                params,
            } => max_pool2d_i8(input, shape, &params, output),
            Op::AvgPool2d {
                input: shape,
                params,
            } => avg_pool2d_i8(input, shape, &params, output),
            Op::Flatten => {}
        }
    }

    /// Whether this layer and `next` run as one kernel: a convolution followed by 2x2 max
    /// pooling with stride 2 ([`conv2d_max_pool2d_i8`], bit-exact with the two in turn).
    fn fuses_with(&self, next: Option<&Self>) -> bool {
        let pool = Pool2dParams {
            kernel: 2,
            stride: 2,
        };
        matches!(self.op, Op::Conv2d { .. })
            && next.is_some_and(|n| matches!(n.op, Op::MaxPool2d { params, .. } if params == pool))
    }

    /// Runs this convolution and the 2x2 max pooling after it ([`QLayer::fuses_with`]) from
    /// `input` into `output` (the pooling's output).
    fn run_fused(&self, input: &[i8], output: &mut [i8], work: &mut [i8]) {
        if let Op::Conv2d {
            input: shape,
            params,
            weights,
            requant,
        } = self.op
        {
            let zero_point = self.input_qparams.zero_point;
            conv2d_max_pool2d_i8(
                input, shape, zero_point, weights, &params, &requant, output, work,
            );
        }
    }
}

impl fmt::Debug for QLayer<'_> {
    /// A summary: parameter bytes are not printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("QLayer");
        s.field("kind", &self.kind())
            .field("input_shape", &self.input_shape)
            .field("output_shape", &self.output_shape)
            .field("output_qparams", &self.output_qparams);
        match self.op {
            Op::Conv2d { params, .. } => {
                s.field("params", &params);
            }
            Op::MaxPool2d { params, .. } | Op::AvgPool2d { params, .. } => {
                s.field("params", &params);
            }
            Op::Dense { .. } | Op::Flatten => {}
        }
        s.field("activation_range", &self.activation_range())
            .field("param_bytes", &self.param_bytes())
            .finish()
    }
}

/// The result of one inference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Prediction<'s> {
    /// Index of the largest logit (the lowest index among ties).
    pub class: usize,
    /// The int8 logits, in the caller's scratch buffer; dequantise with
    /// [`Model::output_qparams`].
    pub logits: &'s [i8],
}

impl Prediction<'_> {
    /// Softmax probability of [`Prediction::class`]: `1 / sum_i exp((l_i - l_class) * scale)`
    /// over the logits dequantised with `output` ([`Model::output_qparams`]; the zero point
    /// cancels).
    ///
    /// A fast approximation for display (micromath's `exp`, a few parts in a thousand). The
    /// trainer clamps logits that can never win the argmax to the bottom of the int8 range, so
    /// small probabilities are not meaningful and the top one is slightly underestimated.
    ///
    /// ```
    /// use infer_core::{Prediction, format::QParams};
    ///
    /// let p = Prediction { class: 1, logits: &[-128, 0, -128] };
    /// let c = p.confidence(QParams { scale: 0.5, zero_point: 0 });
    /// assert!(c > 0.99 && c <= 1.0);
    /// ```
    pub fn confidence(&self, output: QParams) -> f32 {
        #[allow(unused_imports)] // on the host, std's inherent `f32::exp` takes precedence
        use micromath::F32Ext;
        let top = self.logits.get(self.class).map_or(0, |&l| i32::from(l));
        let sum: f32 = self
            .logits
            .iter()
            .map(|&l| ((i32::from(l) - top) as f32 * output.scale).exp())
            .sum();
        if sum > 0.0 { 1.0 / sum } else { 0.0 }
    }
}

/// A validated, zero-copy view of a model file, ready to run.
///
/// ```
/// # fn demo(model_bytes: &[u8], pixels: &[u8; 784]) -> Result<(), infer_core::Error> {
/// use infer_core::Model;
///
/// let model = Model::from_bytes(model_bytes)?;
/// let mut scratch = [0_i8; 8192];
/// let prediction = model.predict(pixels, &mut scratch)?;
/// let score = model.output_qparams().dequantize(prediction.logits[prediction.class]);
/// # let _ = score;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Model<'a> {
    id: &'a str,
    input_shape: Shape,
    input_qparams: QParams,
    output_qparams: QParams,
    layers: heapless::Vec<QLayer<'a>, MAX_LAYERS>,
    input_len: usize,
    output_len: usize,
    scratch_len: usize,
}

/// [`Model`] under construction: the layers validated so far and the running shape,
/// quantisation and scratch length (shared by [`Model::from_bytes`] and [`Model::from_def`]).
struct Plan<'a> {
    shape: TensorShape,
    qparams: QParams,
    input_len: usize,
    scratch_len: usize,
    layers: heapless::Vec<QLayer<'a>, MAX_LAYERS>,
}

impl<'a> Plan<'a> {
    /// Checks the model-level fields of a model with `layer_count` layers.
    fn start(layer_count: usize, input_shape: Shape, input: QParams) -> Result<Self, Error> {
        if layer_count == 0 {
            return Err(Error::NoLayers);
        }
        let input_len = input_shape
            .checked_len()
            .filter(|&n| n > 0 && u32::try_from(n).is_ok())
            .ok_or(Error::InputShape)?;
        if !valid_qparams(input) {
            return Err(Error::InputQuantParams);
        }
        Ok(Self {
            shape: TensorShape::Image(input_shape),
            qparams: input,
            input_len,
            scratch_len: input_len,
            layers: heapless::Vec::new(),
        })
    }

    /// Validates layer `index` against the current shape and quantisation, and appends it.
    fn push(&mut self, index: usize, layer: &LayerDef<'a>) -> Result<(), Error> {
        let (shape, qparams) = (self.shape, self.qparams);
        let (op, output_shape, output_qparams) = match *layer {
            LayerDef::Conv2d(ref conv) => conv_layer(index, conv, shape, qparams)?,
            LayerDef::Dense(ref dense) => dense_layer(index, dense, shape, qparams)?,
            LayerDef::MaxPool2d(pool) => {
                let (input, params, output) = pool_layer(index, pool, shape)?;
                (Op::MaxPool2d { input, params }, output, qparams)
            }
            LayerDef::AvgPool2d(pool) => {
                let (input, params, output) = pool_layer(index, pool, shape)?;
                (Op::AvgPool2d { input, params }, output, qparams)
            }
            LayerDef::Flatten => {
                // Every shape built here has at most u32::MAX elements.
                let len = u32::try_from(shape.len())
                    .map_err(|_| Error::UnsupportedLayer { layer: index })?;
                (Op::Flatten, TensorShape::Flat(len), qparams)
            }
        };
        if !matches!(op, Op::Flatten) {
            let needed = shape
                .len()
                .checked_add(output_shape.len())
                .ok_or(Error::UnsupportedLayer { layer: index })?;
            self.scratch_len = self.scratch_len.max(needed);
        }
        let layer = QLayer {
            op,
            input_shape: shape,
            output_shape,
            input_qparams: qparams,
            output_qparams,
        };
        self.layers.push(layer).map_err(|_| Error::TooManyLayers)?;
        self.shape = output_shape;
        self.qparams = output_qparams;
        Ok(())
    }

    /// Checks the output and returns the model.
    fn finish(self, id: &'a str, input_shape: Shape, input: QParams) -> Result<Model<'a>, Error> {
        let output_len = match self.shape {
            TensorShape::Flat(_) if (1..=MAX_CLASSES).contains(&self.shape.len()) => {
                self.shape.len()
            }
            _ => {
                return Err(Error::OutputShape {
                    len: self.shape.len(),
                });
            }
        };
        Ok(Model {
            id,
            input_shape,
            input_qparams: input,
            output_qparams: self.qparams,
            layers: self.layers,
            input_len: self.input_len,
            output_len,
            scratch_len: self.scratch_len,
        })
    }
}

impl<'a> Model<'a> {
    /// Validates a model file (header, CRC, postcard payload, then every layer as in
    /// [`Model::from_def`]) and returns a view borrowing from `bytes`.
    ///
    /// Never panics, whatever the bytes.
    ///
    /// # Errors
    ///
    /// [`Error::Truncated`], [`Error::BadMagic`], [`Error::UnsupportedVersion`],
    /// [`Error::Reserved`], [`Error::PayloadLength`], [`Error::Checksum`] for the header;
    /// [`Error::Decode`], [`Error::TrailingBytes`], [`Error::TooManyLayers`] for the payload;
    /// then any error of [`Model::from_def`].
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, Error> {
        let payload = check_header(bytes)?;
        // The payload is a `ModelDef`, decoded layer by layer rather than whole: a `ModelDef`
        // holds `MAX_LAYERS` layer slots, and decoding one through serde moves it several times,
        // which cost a Cortex-M4 over 15 KB of stack. The first pass only decodes, so decoding
        // errors still come before validation errors, as for a whole `ModelDef`.
        let (header, layers) = decode_prefix(payload)?;
        let mut rest = layers;
        for _ in 0..header.count {
            rest = decode_layer(rest)?.1;
        }
        if !rest.is_empty() {
            return Err(Error::TrailingBytes(rest.len()));
        }
        let mut plan = Plan::start(header.count, header.input_shape, header.input)?;
        let mut rest = layers;
        for index in 0..header.count {
            let (layer, next) = decode_layer(rest)?;
            plan.push(index, &layer)?;
            rest = next;
        }
        plan.finish(header.id, header.input_shape, header.input)
    }

    /// Validates an already decoded model definition (what [`Model::from_bytes`] does after
    /// decoding): shapes propagate through every layer, every buffer has the length its layer's
    /// dimensions imply, every scale is finite and positive, every zero point is in
    /// `[-128, 127]`, and every stored requantisation multiplier and shift equals the one
    /// [`crate::quant::channel_multiplier`] derives from the stored scales.
    ///
    /// # Errors
    ///
    /// [`Error::NoLayers`], [`Error::InputShape`], [`Error::InputQuantParams`],
    /// [`Error::ShapeMismatch`], [`Error::ExpectedFlat`], [`Error::ExpectedImage`],
    /// [`Error::BufferLength`], [`Error::BadQuantParams`], [`Error::MultiplierMismatch`],
    /// [`Error::UnsupportedLayer`], [`Error::OutputShape`].
    pub fn from_def(def: &ModelDef<'a>) -> Result<Self, Error> {
        let mut plan = Plan::start(def.layers.len(), def.input_shape, def.input)?;
        for (index, layer) in def.layers.iter().enumerate() {
            plan.push(index, layer)?;
        }
        plan.finish(def.id, def.input_shape, def.input)
    }

    /// The model id, e.g. `s5-cnn`.
    pub fn id(&self) -> &'a str {
        self.id
    }

    /// Shape of the input image.
    pub fn input_shape(&self) -> Shape {
        self.input_shape
    }

    /// Number of input pixels, `channels * height * width`.
    pub fn input_len(&self) -> usize {
        self.input_len
    }

    /// Quantisation of the int8 input; raw pixels map to it as `q = pixel - 128`.
    pub fn input_qparams(&self) -> QParams {
        self.input_qparams
    }

    /// Quantisation of the output logits: `real = (logit - zero_point) * scale`.
    pub fn output_qparams(&self) -> QParams {
        self.output_qparams
    }

    /// Number of classes (output logits), in `1..=MAX_CLASSES`.
    pub fn num_classes(&self) -> usize {
        self.output_len
    }

    /// The validated layers, in order.
    pub fn layers(&self) -> &[QLayer<'a>] {
        &self.layers
    }

    /// Multiply-accumulates per inference (sum of [`QLayer::macs`]).
    pub fn macs(&self) -> u64 {
        self.layers
            .iter()
            .fold(0, |sum: u64, l| sum.saturating_add(l.macs()))
    }

    /// Bytes of parameters the kernels read (sum of [`QLayer::param_bytes`]).
    pub fn param_bytes(&self) -> usize {
        self.layers.iter().map(QLayer::param_bytes).sum()
    }

    /// Exact length of the scratch buffer [`Model::predict`] needs (see the
    /// [module docs](self)).
    pub fn scratch_len(&self) -> usize {
        self.scratch_len
    }

    /// Classifies one 28x28 grey image of raw `u8` pixels (row-major).
    ///
    /// `scratch` must hold at least [`Model::scratch_len`] bytes; the returned logits live in
    /// it.
    ///
    /// # Errors
    ///
    /// [`Error::InputShape`] if the model's input is not 1x28x28, [`Error::ScratchTooSmall`] if
    /// `scratch` is too short.
    pub fn predict<'s>(
        &self,
        pixels: &[u8; IMAGE_LEN],
        scratch: &'s mut [i8],
    ) -> Result<Prediction<'s>, Error> {
        if self.input_shape != IMAGE_SHAPE {
            return Err(Error::InputShape);
        }
        self.predict_raw(pixels, scratch)
    }

    /// Classifies one input of any shape: `pixels` are raw `u8` values in the model's input
    /// layout (`[channels, height, width]`, row-major).
    ///
    /// # Errors
    ///
    /// [`Error::InputLength`] if `pixels.len()` is not [`Model::input_len`],
    /// [`Error::ScratchTooSmall`] if `scratch` is shorter than [`Model::scratch_len`].
    pub fn predict_raw<'s>(
        &self,
        pixels: &[u8],
        scratch: &'s mut [i8],
    ) -> Result<Prediction<'s>, Error> {
        if pixels.len() != self.input_len {
            return Err(Error::InputLength {
                expected: self.input_len,
                got: pixels.len(),
            });
        }
        let needed = self.scratch_len;
        let scratch = scratch
            .get_mut(..needed)
            .ok_or(Error::ScratchTooSmall { needed })?;

        // q = pixel - 128: flipping the top bit maps 0..=255 onto -128..=127.
        for (q, &p) in scratch.iter_mut().zip(pixels) {
            *q = i8::from_ne_bytes([p ^ 0x80]);
        }

        // The current tensor is `len` elements at the start (or end) of the scratch.
        let mut at_start = true;
        let mut len = self.input_len;
        let mut layers = self.layers.iter().peekable();
        while let Some(layer) = layers.next() {
            if matches!(layer.op, Op::Flatten) {
                continue;
            }
            // A convolution followed by 2x2 max pooling runs as one kernel, straight into the
            // pooling's output (smaller than the convolution's, so the plan still holds).
            let next = layers.peek().copied();
            let fused = layer.fuses_with(next);
            let out_len = match next {
                Some(next) if fused => next.output_shape.len(),
                _ => layer.output_shape.len(),
            };
            // The plan guarantees len + out_len <= needed, so the two regions are disjoint; the
            // bytes between them are the kernel's to use.
            let (input, output, work) = if at_start {
                let (front, back) = scratch.split_at_mut(needed.saturating_sub(out_len));
                let (input, work) = front.split_at_mut(len.min(front.len()));
                (&*input, back, work)
            } else {
                let (front, back) = scratch.split_at_mut(out_len.min(needed));
                let (work, input) = back.split_at_mut(back.len().saturating_sub(len));
                (&*input, front, work)
            };
            if fused {
                layer.run_fused(input, output, work);
                layers.next();
            } else {
                layer.run(input, output, work);
            }
            at_start = !at_start;
            len = out_len;
        }

        let scratch: &'s [i8] = scratch;
        let logits = if at_start {
            scratch.get(..len)
        } else {
            scratch.get(needed.saturating_sub(len)..)
        }
        .unwrap_or_default();
        Ok(Prediction {
            class: argmax(logits),
            logits,
        })
    }
}

/// Index of the largest value, the lowest among ties (0 for an empty slice).
fn argmax(values: &[i8]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if values.get(best).is_some_and(|&b| v > b) {
            best = i;
        }
    }
    best
}

/// Checks the 16-byte header and returns the payload.
fn check_header(bytes: &[u8]) -> Result<&[u8], Error> {
    let (header, payload) = bytes
        .split_first_chunk::<HEADER_LEN>()
        .ok_or(Error::Truncated)?;
    let [
        m0,
        m1,
        m2,
        m3,
        v0,
        v1,
        r0,
        r1,
        l0,
        l1,
        l2,
        l3,
        c0,
        c1,
        c2,
        c3,
    ] = *header;
    if [m0, m1, m2, m3] != MAGIC {
        return Err(Error::BadMagic);
    }
    let version = u16::from_le_bytes([v0, v1]);
    if version != VERSION {
        return Err(Error::UnsupportedVersion(version));
    }
    if [r0, r1] != [0, 0] {
        return Err(Error::Reserved);
    }
    let stated = u32::from_le_bytes([l0, l1, l2, l3]);
    let expected = usize::try_from(stated).unwrap_or(usize::MAX);
    if expected != payload.len() {
        return Err(Error::PayloadLength {
            expected,
            got: payload.len(),
        });
    }
    let expected = u32::from_le_bytes([c0, c1, c2, c3]);
    let got = CRC.checksum(payload);
    if expected != got {
        return Err(Error::Checksum { expected, got });
    }
    Ok(payload)
}

/// The little-endian `f32` in a 4-byte chunk (NaN for any other length, which cannot happen with
/// `chunks_exact(4)`).
fn le_f32(chunk: &[u8]) -> f32 {
    match *chunk {
        [a, b, c, d] => f32::from_le_bytes([a, b, c, d]),
        _ => f32::NAN,
    }
}

/// The fields of a `ModelDef` payload before its layers.
struct PayloadHeader<'a> {
    id: &'a str,
    input_shape: Shape,
    input: QParams,
    /// Number of layers that follow (at most [`MAX_LAYERS`]).
    count: usize,
}

/// Decodes the fields before the layer list (postcard writes a struct as its fields in order,
/// and the list as a varint length, read here like a `u64`, then its elements); returns them
/// with the bytes of the layers.
fn decode_prefix(payload: &[u8]) -> Result<(PayloadHeader<'_>, &[u8]), Error> {
    type Prefix<'p> = (&'p str, Shape, QParams, u64);
    let ((id, input_shape, input, count), rest) =
        postcard::take_from_bytes::<Prefix<'_>>(payload).map_err(|_| Error::Decode)?;
    let count = usize::try_from(count)
        .ok()
        .filter(|&n| n <= MAX_LAYERS)
        .ok_or(Error::TooManyLayers)?;
    let header = PayloadHeader {
        id,
        input_shape,
        input,
        count,
    };
    Ok((header, rest))
}

/// Decodes one layer from the front of `bytes`; returns it with the bytes after it.
fn decode_layer(bytes: &[u8]) -> Result<(LayerDef<'_>, &[u8]), Error> {
    postcard::take_from_bytes::<LayerDef<'_>>(bytes).map_err(|_| Error::Decode)
}

/// A tensor's quantisation is usable: finite positive scale, zero point in `[-128, 127]`.
fn valid_qparams(q: QParams) -> bool {
    q.scale.is_finite() && q.scale > 0.0 && (-128..=127).contains(&q.zero_point)
}

/// The output clamp of a fused activation (TFLite's `CalculateActivationRangeQuantized`):
/// `quantize(f) = zero_point + round(f / scale)` in `f32`, rounding half away from zero.
fn activation_range(activation: Activation, output: QParams) -> (i8, i8) {
    let quantize = |f: f32| {
        // `as` saturates (and the scale is finite and positive, so there is no NaN).
        #[allow(clippy::cast_possible_truncation)]
        let steps = libm::roundf(f / output.scale) as i32;
        output.zero_point.saturating_add(steps)
    };
    let clamp = |v: i32| crate::kernels::clamp_i8(v, i8::MIN, i8::MAX);
    match activation {
        Activation::None => (i8::MIN, i8::MAX),
        Activation::Relu => (clamp(quantize(0.0)), i8::MAX),
        Activation::Relu6 => (clamp(quantize(0.0)), clamp(quantize(6.0))),
    }
}

/// An image shape with at most `u32::MAX` elements.
fn image(shape: Shape, layer: usize) -> Result<TensorShape, Error> {
    shape
        .checked_len()
        .filter(|&n| u32::try_from(n).is_ok())
        .map(|_| TensorShape::Image(shape))
        .ok_or(Error::UnsupportedLayer { layer })
}

/// `Some(len)` if a buffer has the `expected` length (`None` = overflowed).
fn check_len(
    layer: usize,
    buffer: Buffer,
    expected: Option<usize>,
    got: usize,
) -> Result<(), Error> {
    let expected = expected.ok_or(Error::UnsupportedLayer { layer })?;
    if expected == got {
        Ok(())
    } else {
        Err(Error::BufferLength {
            layer,
            buffer,
            expected,
            got,
        })
    }
}

/// Validates the per-channel quantisation of a conv or dense layer with `channels` outputs and
/// returns its requantisation.
fn channel_quant<'a>(
    layer: usize,
    channels: usize,
    quant: &ChannelQuant<'a>,
    input: QParams,
    output: QParams,
    activation: Activation,
) -> Result<QRequant<'a>, Error> {
    let four = channels.checked_mul(4);
    check_len(layer, Buffer::WeightScales, four, quant.weight_scales.len())?;
    check_len(layer, Buffer::Bias, four, quant.bias.len())?;
    check_len(layer, Buffer::Multipliers, four, quant.multipliers.len())?;
    check_len(layer, Buffer::Shifts, Some(channels), quant.shifts.len())?;
    if !valid_qparams(output) {
        return Err(Error::BadQuantParams { layer });
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
            return Err(Error::BadQuantParams { layer });
        }
        let expected = channel_multiplier(input.scale, weight_scale, output.scale)
            .ok_or(Error::BadQuantParams { layer })?;
        if (le_i32(multiplier), i32::from(shift)) != expected {
            return Err(Error::MultiplierMismatch { layer, channel });
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

fn conv_layer<'a>(
    layer: usize,
    conv: &Conv2dDef<'a>,
    input: TensorShape,
    input_q: QParams,
) -> Result<(Op<'a>, TensorShape, QParams), Error> {
    let TensorShape::Image(input) = input else {
        return Err(Error::ExpectedImage { layer });
    };
    if conv.in_ch != input.channels {
        return Err(Error::ShapeMismatch {
            layer,
            expected: u32::from(conv.in_ch),
            got: u32::from(input.channels),
        });
    }
    let unsupported = Error::UnsupportedLayer { layer };
    if conv.out_ch == 0 {
        return Err(unsupported);
    }
    let params = Conv2dParams {
        kernel_h: usize::from(conv.kernel_h),
        kernel_w: usize::from(conv.kernel_w),
        stride: usize::from(conv.stride),
        padding: usize::from(conv.padding),
    };
    let (out_h, out_w) = params
        .output_size(usize::from(input.height), usize::from(input.width))
        .ok_or(unsupported)?;
    let output = Shape {
        channels: conv.out_ch,
        height: u16::try_from(out_h).map_err(|_| unsupported)?,
        width: u16::try_from(out_w).map_err(|_| unsupported)?,
    };
    let output_shape = image(output, layer)?;
    let out_ch = usize::from(conv.out_ch);
    let weights_len = out_ch
        .checked_mul(usize::from(conv.in_ch))
        .and_then(|n| n.checked_mul(params.kernel_h * params.kernel_w));
    check_len(layer, Buffer::Weights, weights_len, conv.weights.len())?;
    let requant = channel_quant(
        layer,
        out_ch,
        &conv.quant,
        input_q,
        conv.output,
        conv.activation,
    )?;
    let op = Op::Conv2d {
        input,
        params,
        weights: bytemuck::cast_slice(conv.weights),
        requant,
    };
    Ok((op, output_shape, conv.output))
}

fn dense_layer<'a>(
    layer: usize,
    dense: &DenseDef<'a>,
    input: TensorShape,
    input_q: QParams,
) -> Result<(Op<'a>, TensorShape, QParams), Error> {
    let TensorShape::Flat(in_dim) = input else {
        return Err(Error::ExpectedFlat { layer });
    };
    if dense.in_dim != in_dim {
        return Err(Error::ShapeMismatch {
            layer,
            expected: dense.in_dim,
            got: in_dim,
        });
    }
    let unsupported = Error::UnsupportedLayer { layer };
    if dense.out_dim == 0 {
        return Err(unsupported);
    }
    let out_dim = usize::try_from(dense.out_dim).map_err(|_| unsupported)?;
    let weights_len = usize::try_from(in_dim)
        .ok()
        .and_then(|n| n.checked_mul(out_dim));
    check_len(layer, Buffer::Weights, weights_len, dense.weights.len())?;
    let requant = channel_quant(
        layer,
        out_dim,
        &dense.quant,
        input_q,
        dense.output,
        dense.activation,
    )?;
    let op = Op::Dense {
        weights: bytemuck::cast_slice(dense.weights),
        requant,
    };
    Ok((op, TensorShape::Flat(dense.out_dim), dense.output))
}

fn pool_layer(
    layer: usize,
    pool: Pool2dDef,
    input: TensorShape,
) -> Result<(Shape, Pool2dParams, TensorShape), Error> {
    let TensorShape::Image(input) = input else {
        return Err(Error::ExpectedImage { layer });
    };
    let unsupported = Error::UnsupportedLayer { layer };
    let params = Pool2dParams {
        kernel: usize::from(pool.kernel),
        stride: usize::from(pool.stride),
    };
    let (out_h, out_w) = params
        .output_size(usize::from(input.height), usize::from(input.width))
        .ok_or(unsupported)?;
    let output = Shape {
        channels: input.channels,
        height: u16::try_from(out_h).map_err(|_| unsupported)?,
        width: u16::try_from(out_w).map_err(|_| unsupported)?,
    };
    Ok((input, params, image(output, layer)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_lowest_index_on_ties() {
        assert_eq!(argmax(&[1, 5, 5, -3]), 1);
        assert_eq!(argmax(&[-128, -128]), 0);
        assert_eq!(argmax(&[0, 0, 1]), 2);
        assert_eq!(argmax(&[]), 0);
    }

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

    #[test]
    fn header_checks_in_order() {
        assert_eq!(check_header(&[]), Err(Error::Truncated));
        assert_eq!(check_header(&[0; 15]), Err(Error::Truncated));
        assert_eq!(check_header(&[0; 16]), Err(Error::BadMagic));
        let mut h = crate::format::Header::for_payload(&[]).unwrap().to_bytes();
        assert_eq!(check_header(&h), Ok(&[][..]));
        h[4] = 2;
        assert_eq!(check_header(&h), Err(Error::UnsupportedVersion(2)));
        h[4] = 1;
        h[7] = 1;
        assert_eq!(check_header(&h), Err(Error::Reserved));
        h[7] = 0;
        h[8] = 1;
        assert_eq!(
            check_header(&h),
            Err(Error::PayloadLength {
                expected: 1,
                got: 0
            })
        );
        h[8] = 0;
        h[12] = 1;
        assert_eq!(
            check_header(&h),
            Err(Error::Checksum {
                expected: 1,
                got: 0
            })
        );
    }
}
