//! [`Model`]: a validated, zero-copy view of a model file, and inference over it.
//!
//! [`Model::from_bytes`] checks everything once (header, checksum, encoding, every op's inputs,
//! shapes, buffer lengths, quantisation parameters and requantisation multipliers) and plans
//! the scratch memory. After that [`Model::predict`] can only fail on the caller's buffers, and
//! never panics.
//!
//! # Scratch plan
//!
//! Inference needs one caller-provided `&mut [i8]` of [`Model::scratch_len`] bytes. Every tensor
//! that holds data (the input image, `q = pixel - 128`, and each op's output) gets a block of it
//! for as long as it is needed: from the op that writes it to the last op that reads it. Blocks
//! alive at the same time never overlap; the layout is planned once at load (`plan.rs`:
//! greedy, largest first, each block at the lowest offset that fits, as TensorFlow Lite
//! Micro's planner), so `scratch_len` is exact and the same everywhere. It is at least the
//! busiest step's bytes, and for the reference models' chains exactly that. A `Flatten` moves
//! nothing: its output is its input's block. A residual block's input stays alive until its
//! `Add`.
//!
//! The bytes no live tensor uses during an op are lent to its kernel as working space: the
//! largest such run. [`conv2d_i8`](crate::kernels::conv2d_i8) unrolls patches there (and
//! [`dense_i8`](crate::kernels::dense_i8) may widen its input there) when they fit, which makes
//! those ops faster but never changes `scratch_len` or the results.
//!
//! A convolution whose output only feeds a 2x2, stride-2 max pooling runs as one kernel (when
//! both the `conv2d` and `max-pool2d` features are on),
//! [`conv2d_max_pool2d_i8`](crate::kernels::conv2d_max_pool2d_i8) (bit-exact with the two in
//! turn), from the convolution's input straight into the pooling's output; the convolution's
//! output is never stored. The plan reserves, during that step, the bytes by which the
//! convolution's output exceeds the pooling's, as working space for the kernel.

use crate::error::Error;
use crate::format::{CRC, HEADER_LEN, MAGIC, ModelDef, OpDef, QParams, Shape, TensorId, VERSION};
use crate::ops::{Context, OpKind, QOp, TensorInfo};
use crate::plan::{Buffer, Buffers};
#[cfg(all(feature = "conv2d", feature = "max-pool2d"))]
use crate::spec::Pool2dGeometry;
use crate::spec::TensorShape;

/// Most classes (output logits) a model may have.
pub const MAX_CLASSES: usize = 16;

/// Ops a [`Model`] holds unless its type says otherwise: enough for the sequential reference
/// models (LeNet-5 has 8) while keeping a loaded model small on a microcontroller's stack. A
/// ResNet-34 (about 55 ops) loads as `Model::<64>`.
pub const DEFAULT_MAX_OPS: usize = 16;

/// The input shape [`Model::predict`] takes: one 28x28 grey image (Fashion-MNIST).
pub const IMAGE_SHAPE: Shape = Shape {
    channels: 1,
    height: 28,
    width: 28,
};

/// Number of pixels of a Fashion-MNIST image.
pub const IMAGE_LEN: usize = 28 * 28;

/// How a step runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
enum Run {
    /// Its kernel, from its inputs into its output.
    Kernel,
    /// A convolution with the max pooling after it, into the pooling's output.
    WithMaxPool,
    /// Nothing: an alias (flatten), or a pooling fused into the convolution before it.
    Skip,
}

/// One op of a loaded [`Model`]: the validated op, its output, and where its tensors live in
/// the scratch buffer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelOp<'a> {
    op: QOp<'a>,
    output: TensorInfo,
    run: Run,
    inputs: [usize; 2],
    output_at: usize,
    work: (usize, usize),
    lifetime: (usize, usize),
}

impl<'a> ModelOp<'a> {
    /// A validated op before the plan places its tensors.
    fn unplanned(op: QOp<'a>, output: TensorInfo) -> Self {
        Self {
            op,
            output,
            run: Run::Kernel,
            inputs: [0; 2],
            output_at: 0,
            work: (0, 0),
            lifetime: (0, 0),
        }
    }

    /// The validated op: its kind, parameters and quantisation.
    pub fn op(&self) -> &QOp<'a> {
        &self.op
    }

    /// What the op computes.
    pub fn kind(&self) -> OpKind {
        self.op.kind()
    }

    /// Shape and quantisation of the op's output tensor.
    pub fn output(&self) -> TensorInfo {
        self.output
    }

    /// Where the output tensor lives in the scratch buffer: `Some(offset)`, or `None` if it
    /// is never stored (a convolution fused with the max pooling after it).
    pub fn output_offset(&self) -> Option<usize> {
        match self.run {
            Run::WithMaxPool => None,
            Run::Kernel | Run::Skip => Some(self.output_at),
        }
    }

    /// The steps during which the output tensor's block is alive, `(first, last)`.
    pub fn output_lifetime(&self) -> (usize, usize) {
        self.lifetime
    }

    /// Whether the op runs a kernel of its own (not a flatten, nor a pooling fused into the
    /// convolution before it).
    pub fn runs(&self) -> bool {
        self.run != Run::Skip
    }

    /// Bytes of working space its kernel gets: `(offset, len)`.
    pub fn work(&self) -> (usize, usize) {
        self.work
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

/// A validated, zero-copy view of a model file, ready to run. `MAX_OPS` is the most ops it
/// can hold ([`DEFAULT_MAX_OPS`] unless named).
///
/// ```
/// # fn demo(model_bytes: &[u8], pixels: &[u8; 784]) -> Result<(), infer_core::Error> {
/// use infer_core::Model;
///
/// let model: Model = Model::from_bytes(model_bytes)?;
/// let mut scratch = [0_i8; 8192];
/// let prediction = model.predict(pixels, &mut scratch)?;
/// let score = model.output_qparams().dequantize(prediction.logits[prediction.class]);
/// # let _ = score;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Model<'a, const MAX_OPS: usize = DEFAULT_MAX_OPS> {
    id: &'a str,
    input_shape: Shape,
    input_qparams: QParams,
    ops: heapless::Vec<ModelOp<'a>, MAX_OPS>,
    input_at: usize,
    input_len: usize,
    output: TensorInfo,
    output_at: usize,
    output_len: usize,
    scratch_len: usize,
}

/// Decodes the fields before the op list, and the op count; returns them with the bytes of the
/// ops.
fn decode_prefix(payload: &[u8]) -> Result<(ModelDef<&str, u64>, &[u8]), Error> {
    postcard::take_from_bytes::<ModelDef<&str, u64>>(payload).map_err(|_| Error::Decode)
}

/// Decodes one op from the front of `bytes`; returns it with the bytes after it.
fn decode_op(bytes: &[u8]) -> Result<(OpDef<&[u8]>, &[u8]), Error> {
    postcard::take_from_bytes::<OpDef<&[u8]>>(bytes).map_err(|_| Error::Decode)
}

/// Whether `next` is a 2x2, stride-2 max pooling of `conv`'s output `tensor`.
#[cfg(all(feature = "conv2d", feature = "max-pool2d"))]
fn fuses(conv: &QOp<'_>, next: Option<&QOp<'_>>, tensor: TensorId) -> bool {
    let pool = Pool2dGeometry {
        kernel: 2,
        stride: 2,
    };
    matches!(conv, QOp::Conv2d(_))
        && matches!(next, Some(QOp::MaxPool2d(p)) if p.input == tensor && p.geometry == pool)
}

/// Nothing fuses unless both convolution and max pooling are built.
#[cfg(not(all(feature = "conv2d", feature = "max-pool2d")))]
fn fuses(_: &QOp<'_>, _: Option<&QOp<'_>>, _: TensorId) -> bool {
    false
}

/// Runs a step the plan fused ([`Run::WithMaxPool`]): a convolution and the max pooling after
/// it, into the pooling's output.
#[cfg(all(feature = "conv2d", feature = "max-pool2d"))]
fn invoke_fused(op: &QOp<'_>, input: &[i8], output: &mut [i8], work: &mut [i8]) {
    if let QOp::Conv2d(conv) = op {
        conv.invoke_with_max_pool(input, output, work);
    }
}

/// Nothing fuses unless both convolution and max pooling are built.
#[cfg(not(all(feature = "conv2d", feature = "max-pool2d")))]
fn invoke_fused(_: &QOp<'_>, _: &[i8], _: &mut [i8], _: &mut [i8]) {}

impl<'a, const MAX_OPS: usize> Model<'a, MAX_OPS> {
    /// Validates a model file and returns a view borrowing from `bytes`: the header, the CRC,
    /// the postcard payload, then every op in turn against the tensors before it (inputs made
    /// earlier in the list, shapes, buffer lengths, scales and zero points, every stored
    /// requantisation multiplier and shift against the one re-derived from the stored scales);
    /// then the output (1 to [`MAX_CLASSES`] logits) and the scratch plan.
    ///
    /// Never panics, whatever the bytes.
    ///
    /// # Errors
    ///
    /// Header: [`Error::Truncated`], [`Error::BadMagic`], [`Error::FormatV1`],
    /// [`Error::UnsupportedVersion`], [`Error::Reserved`], [`Error::PayloadLength`],
    /// [`Error::Checksum`]. Payload: [`Error::Decode`], [`Error::TrailingBytes`],
    /// [`Error::NoOps`], [`Error::TooManyOps`], [`Error::BadId`]. Ops: [`Error::InputShape`],
    /// [`Error::InputQuantParams`], [`Error::BadTensorRef`], [`Error::ShapeMismatch`],
    /// [`Error::ExpectedFlat`], [`Error::ExpectedImage`], [`Error::BufferLength`],
    /// [`Error::BadQuantParams`], [`Error::MultiplierMismatch`], [`Error::ZeroDimension`],
    /// [`Error::IndivisibleGroups`], [`Error::WindowTooLarge`], [`Error::InputShapesDiffer`],
    /// [`Error::TooLarge`], [`Error::OpNotBuilt`], [`Error::OutputShape`]. Plan:
    /// [`Error::ScratchOverflow`].
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, Error> {
        let payload = check_header(bytes)?;
        let (def, ops_bytes) = decode_prefix(payload)?;
        // The ops are decoded one at a time rather than as a list (a list would hold every op
        // on the stack at once). The first pass only decodes, so that decoding errors come
        // before validation errors.
        let count = usize::try_from(def.ops).map_err(|_| Error::Decode)?;
        if count > MAX_OPS {
            return Err(Error::TooManyOps { capacity: MAX_OPS });
        }
        let mut rest = ops_bytes;
        for _ in 0..count {
            rest = decode_op(rest)?.1;
        }
        if !rest.is_empty() {
            return Err(Error::TrailingBytes(rest.len()));
        }
        if count == 0 {
            return Err(Error::NoOps);
        }
        if !crate::format::valid_id(def.id) {
            return Err(Error::BadId { len: def.id.len() });
        }
        let input_len = def
            .input_shape
            .checked_len()
            .filter(|&n| n > 0 && u32::try_from(n).is_ok())
            .ok_or(Error::InputShape)?;
        if !crate::ops::valid_qparams(def.input) {
            return Err(Error::InputQuantParams);
        }
        let input = TensorInfo {
            shape: TensorShape::Image(def.input_shape),
            qparams: def.input,
        };

        let full = Error::TooManyOps { capacity: MAX_OPS };
        let mut outputs: heapless::Vec<TensorInfo, MAX_OPS> = heapless::Vec::new();
        let mut ops: heapless::Vec<ModelOp<'a>, MAX_OPS> = heapless::Vec::new();
        let mut rest = ops_bytes;
        for op in 0..count {
            let (def, next) = decode_op(rest)?;
            rest = next;
            let cx = Context {
                op,
                input,
                outputs: &outputs,
            };
            let (q, out) = def.prepare(&cx)?;
            outputs.push(out).map_err(|_| full)?;
            ops.push(ModelOp::unplanned(q, out)).map_err(|_| full)?;
        }
        let output = *outputs.last().ok_or(Error::NoOps)?;
        let output_len = match output.shape {
            TensorShape::Flat(_) if (1..=MAX_CLASSES).contains(&output.shape.len()) => {
                output.shape.len()
            }
            TensorShape::Flat(_) | TensorShape::Image(_) => {
                return Err(Error::OutputShape {
                    len: output.shape.len(),
                });
            }
        };
        let mut model = Model {
            id: def.id,
            input_shape: def.input_shape,
            input_qparams: def.input,
            ops,
            input_at: 0,
            input_len,
            output,
            output_at: 0,
            output_len,
            scratch_len: 0,
        };
        model.plan()?;
        Ok(model)
    }

    /// Lays out the tensors in the scratch buffer ([`crate::plan`]) and records each step's
    /// memory in its op. Its working arrays hold `MAX_OPS` entries, so the stack it takes
    /// follows the model type's capacity.
    fn plan(&mut self) -> Result<(), Error> {
        let n = self.ops.len();
        let too_many = Error::TooManyOps { capacity: MAX_OPS };
        // How each step runs (`ops[i].run`, `Run::Kernel` so far).
        for i in 0..n {
            let own = TensorId::try_from(i + 1).map_err(|_| too_many)?;
            let ops = &self.ops;
            let Some(step) = ops.get(i) else { break };
            let used_elsewhere = ops
                .iter()
                .enumerate()
                .any(|(j, other)| j != i + 1 && other.op.inputs().ids().contains(&own));
            let fused = step.run == Run::Kernel
                && !step.op.is_alias()
                && !used_elsewhere
                && i + 1 < n
                && fuses(&step.op, ops.get(i + 1).map(|o| &o.op), own);
            let alias = step.op.is_alias();
            if alias {
                if let Some(step) = self.ops.get_mut(i) {
                    step.run = Run::Skip;
                }
            } else if fused {
                if let Some(step) = self.ops.get_mut(i) {
                    step.run = Run::WithMaxPool;
                }
                if let Some(next) = self.ops.get_mut(i + 1) {
                    next.run = Run::Skip;
                }
            }
        }
        let run = |ops: &[ModelOp<'a>], i: usize| ops.get(i).map(|o| o.run);
        // The buffer of every tensor: `root(t)` is the tensor whose block holds `t` (an alias
        // shares its input's; `roots[t - 1]`, tensor 0 is its own), and `buffers` the block of
        // each root tensor.
        let mut roots = [0_usize; MAX_OPS];
        let root = |roots: &[usize; MAX_OPS], t: usize| {
            t.checked_sub(1)
                .map_or(0, |i| roots.get(i).copied().unwrap_or(0))
        };
        let mut buffers: Buffers<MAX_OPS> = Buffers::new();
        if let Some(b) = buffers.get_mut(0) {
            *b = Buffer {
                size: self.input_len,
                first: 0,
                last: 0,
                offset: 0,
            };
        }
        for (i, step) in self.ops.iter().enumerate() {
            let t = i + 1;
            let r = if step.op.is_alias() {
                step.op
                    .inputs()
                    .ids()
                    .first()
                    .map_or(0, |&id| root(&roots, usize::from(id)))
            } else {
                t
            };
            if let Some(slot) = roots.get_mut(i) {
                *slot = r;
            }
            let fused_pool = i > 0 && run(&self.ops, i - 1) == Some(Run::WithMaxPool);
            let size = step.output.shape.len();
            let block = match step.run {
                // The convolution's output is never stored: its block is the working space the
                // fused kernel gets, the bytes by which it exceeds the pooling's output.
                Run::WithMaxPool => {
                    let pooled = self.ops.get(i + 1).map_or(0, |o| o.output.shape.len());
                    Some(Buffer {
                        size: size.saturating_sub(pooled),
                        first: i,
                        last: i,
                        offset: 0,
                    })
                }
                // A fused pooling's output is written by the convolution's step.
                Run::Skip if fused_pool => Some(Buffer {
                    size,
                    first: i - 1,
                    last: i - 1,
                    offset: 0,
                }),
                Run::Skip => None,
                Run::Kernel => Some(Buffer {
                    size,
                    first: i,
                    last: i,
                    offset: 0,
                }),
            };
            if let (Some(block), Some(slot)) = (block, buffers.get_mut(t)) {
                *slot = block;
            }
        }
        // Every read extends its tensor's block to the step that runs it (a fused pooling's
        // read is the convolution's output, which is never stored).
        for (i, step) in self.ops.iter().enumerate() {
            if step.run == Run::Skip {
                continue;
            }
            for &id in step.op.inputs().ids() {
                if let Some(b) = buffers.get_mut(root(&roots, usize::from(id))) {
                    b.last = b.last.max(i);
                }
            }
        }
        // The model's output stays alive to the end.
        let out_root = root(&roots, n);
        if let Some(b) = buffers.get_mut(out_root) {
            b.last = n;
        }
        let scratch_len = buffers
            .place()
            .ok_or(Error::ScratchOverflow)?
            .max(self.input_len);

        let at = |id: TensorId| {
            buffers
                .get(root(&roots, usize::from(id)))
                .map_or(0, |b| b.offset)
        };
        for (i, step) in self.ops.iter_mut().enumerate() {
            let mut inputs = [0; 2];
            for (slot, &id) in inputs.iter_mut().zip(step.op.inputs().ids()) {
                *slot = at(id);
            }
            let own = TensorId::try_from(i + 1).unwrap_or(TensorId::MAX);
            let (output_at, lifetime) = match step.run {
                Run::WithMaxPool => {
                    let pooled = TensorId::try_from(i + 2).unwrap_or(TensorId::MAX);
                    let b = buffers.get(i + 2).copied().unwrap_or_default();
                    (at(pooled), (b.first, b.last))
                }
                Run::Kernel | Run::Skip => {
                    let b = buffers
                        .get(root(&roots, i + 1))
                        .copied()
                        .unwrap_or_default();
                    (at(own), (b.first, b.last))
                }
            };
            let work = match step.run {
                Run::Skip => (0, 0),
                Run::Kernel | Run::WithMaxPool => buffers.largest_gap(
                    i,
                    scratch_len,
                    Some(i + 1).filter(|_| step.run == Run::WithMaxPool),
                ),
            };
            step.inputs = inputs;
            step.output_at = output_at;
            step.work = work;
            step.lifetime = lifetime;
        }
        self.output_at = buffers.get(out_root).map_or(0, |b| b.offset);
        self.input_at = buffers.get(0).map_or(0, |b| b.offset);
        self.scratch_len = scratch_len;
        Ok(())
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

    /// Where the input image lives in the scratch buffer.
    pub fn input_offset(&self) -> usize {
        self.input_at
    }

    /// Quantisation of the output logits: `real = (logit - zero_point) * scale`.
    pub fn output_qparams(&self) -> QParams {
        self.output.qparams
    }

    /// Number of classes (output logits), in `1..=MAX_CLASSES`.
    pub fn num_classes(&self) -> usize {
        self.output_len
    }

    /// The validated ops in order; op `i` makes tensor `i + 1` (tensor 0 is the input).
    pub fn ops(&self) -> &[ModelOp<'a>] {
        &self.ops
    }

    /// Multiply-accumulates per inference (sum of [`QOp::macs`]).
    pub fn macs(&self) -> u64 {
        self.ops
            .iter()
            .fold(0, |sum: u64, o| sum.saturating_add(o.op.macs()))
    }

    /// Bytes of parameters the kernels read (sum of [`QOp::param_bytes`]).
    pub fn param_bytes(&self) -> usize {
        self.ops.iter().map(|o| o.op.param_bytes()).sum()
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
        let input = scratch
            .get_mut(self.input_at..)
            .unwrap_or_default()
            .iter_mut();
        for (q, &p) in input.zip(pixels) {
            *q = i8::from_ne_bytes([p ^ 0x80]);
        }

        for (i, step) in self.ops.iter().enumerate() {
            if step.run == Run::Skip {
                continue;
            }
            let out_len = match step.run {
                Run::WithMaxPool => self.ops.get(i + 1).map_or(0, |n| n.output.shape.len()),
                Run::Kernel | Run::Skip => step.output.shape.len(),
            };
            let (output, work, rest) = carve(scratch, (step.output_at, out_len), step.work);
            let ids = step.op.inputs();
            let mut inputs: [&[i8]; 2] = [&[], &[]];
            for ((slot, &at), &id) in inputs.iter_mut().zip(&step.inputs).zip(ids.ids()) {
                *slot = rest.get(at, self.tensor_len(id));
            }
            match step.run {
                Run::WithMaxPool => invoke_fused(&step.op, inputs[0], output, work),
                Run::Kernel | Run::Skip => step.op.invoke(inputs, output, work),
            }
        }

        let scratch: &'s [i8] = scratch;
        let logits = scratch
            .get(self.output_at..self.output_at.saturating_add(self.output_len))
            .unwrap_or_default();
        Ok(Prediction {
            class: argmax(logits),
            logits,
        })
    }

    /// Elements of tensor `id`.
    fn tensor_len(&self, id: TensorId) -> usize {
        match usize::from(id) {
            0 => self.input_len,
            t => self.ops.get(t - 1).map_or(0, |o| o.output.shape.len()),
        }
    }
}

/// The read-only parts of the scratch buffer around the two mutable regions of a step, each
/// with the offset it starts at.
struct Rest<'s> {
    parts: [(usize, &'s [i8]); 3],
}

impl Rest<'_> {
    /// The `len` bytes at `offset`, from whichever part holds them (the plan guarantees one
    /// does).
    fn get(&self, offset: usize, len: usize) -> &[i8] {
        self.parts
            .iter()
            .find_map(|&(start, part)| {
                let from = offset.checked_sub(start)?;
                part.get(from..from.checked_add(len)?)
            })
            .unwrap_or_default()
    }
}

/// Splits `scratch` into the output region, the work region (disjoint, as the plan makes them)
/// and the read-only rest.
fn carve(
    scratch: &mut [i8],
    output: (usize, usize),
    work: (usize, usize),
) -> (&mut [i8], &mut [i8], Rest<'_>) {
    let output_first = output.0 <= work.0;
    let (first, second) = if output_first {
        (output, work)
    } else {
        (work, output)
    };
    let (a, tail) = split(scratch, first.0);
    let (m1, tail) = split(tail, first.1);
    let (b, tail) = split(
        tail,
        second.0.saturating_sub(first.0.saturating_add(first.1)),
    );
    let (m2, c) = split(tail, second.1);
    let b_at = first.0.saturating_add(first.1);
    let c_at = b_at.saturating_add(b.len()).saturating_add(m2.len());
    let rest = Rest {
        parts: [(0, a), (b_at, b), (c_at, c)],
    };
    if output_first {
        (m1, m2, rest)
    } else {
        (m2, m1, rest)
    }
}

/// `split_at_mut` that clamps `mid` to the length instead of panicking.
fn split(s: &mut [i8], mid: usize) -> (&mut [i8], &mut [i8]) {
    let mid = mid.min(s.len());
    s.split_at_mut(mid)
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
pub(crate) fn check_header(bytes: &[u8]) -> Result<&[u8], Error> {
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
    if version == 1 {
        return Err(Error::FormatV1);
    }
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
    fn carve_gives_disjoint_regions_and_the_rest() {
        let mut s: [i8; 10] = core::array::from_fn(|i| i8::try_from(i).unwrap());
        let (out, work, rest) = carve(&mut s, (6, 2), (1, 3));
        assert_eq!((&*out, &*work), (&[6_i8, 7][..], &[1_i8, 2, 3][..]));
        assert_eq!(rest.get(4, 2), &[4, 5]);
        assert_eq!(rest.get(8, 2), &[8, 9]);
        assert_eq!(rest.get(0, 1), &[0]);
        let (out, work, rest) = carve(&mut s, (0, 4), (4, 0));
        assert_eq!((out.len(), work.len()), (4, 0));
        assert_eq!(rest.get(4, 6), &[4, 5, 6, 7, 8, 9]);
    }

    #[test]
    fn header_checks_in_order() {
        assert_eq!(check_header(&[]), Err(Error::Truncated));
        assert_eq!(check_header(&[0; 15]), Err(Error::Truncated));
        assert_eq!(check_header(&[0; 16]), Err(Error::BadMagic));
        let mut h = crate::format::Header::for_payload(&[]).unwrap().to_bytes();
        assert_eq!(check_header(&h), Ok(&[][..]));
        h[4] = 1;
        assert_eq!(check_header(&h), Err(Error::FormatV1));
        h[4] = 3;
        assert_eq!(check_header(&h), Err(Error::UnsupportedVersion(3)));
        h[4] = 2;
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
