//! The ops: one module per op, each owning its definition in the file format (`XDef`), its
//! validation at load (`prepare`, once) and its run (`invoke`), and registered in the two
//! enums below, [`OpDef`] (the file) and [`QOp`] (validated, ready to run).
//!
//! Adding an op: a module here with its `Def`, its validated `Q` type, `prepare` and `invoke`;
//! a variant at the end of [`OpDef`], [`QOp`] and [`OpKind`]; a cargo feature for it (in
//! `default`, and in [`OpKind::feature`]); the arms the compiler then asks for in this file
//! (every `match` over ops is exhaustive). The kernel itself lives in [`crate::kernels`] and its
//! naive oracle in [`crate::reference`].
//!
//! # Which ops are built
//!
//! Each op but flatten has a cargo feature (`conv2d`, `dense`, `max-pool2d`, `avg-pool2d`,
//! `add`, `global-avg-pool`, `leaky-relu`; all in `default`). With one off, its [`QOp`] variant,
//! its `Q` type and its validation are compiled out, so nothing reaches its kernel and the
//! linker drops it: firmware builds only the ops its model uses. [`OpDef`] keeps every variant
//! (it is the file format), and loading a model with an op that is not built fails with
//! [`Error::OpNotBuilt`], which names the feature.

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::format::{QParams, TensorId};
use crate::spec::TensorShape;

mod common;
pub(crate) use common::valid_qparams;
pub mod add;
pub mod avg_pool2d;
pub mod conv2d;
pub mod dense;
pub mod flatten;
pub mod global_avg_pool;
pub mod leaky_relu;
pub mod max_pool2d;

pub use add::AddDef;
#[cfg(feature = "add")]
pub use add::QAdd;
pub use avg_pool2d::AvgPool2dDef;
#[cfg(feature = "avg-pool2d")]
pub use avg_pool2d::QAvgPool2d;
pub use conv2d::Conv2dDef;
#[cfg(feature = "conv2d")]
pub use conv2d::QConv2d;
pub use dense::DenseDef;
#[cfg(feature = "dense")]
pub use dense::QDense;
pub use flatten::{FlattenDef, QFlatten};
pub use global_avg_pool::GlobalAvgPoolDef;
#[cfg(feature = "global-avg-pool")]
pub use global_avg_pool::QGlobalAvgPool;
pub use leaky_relu::LeakyReluDef;
#[cfg(feature = "leaky-relu")]
pub use leaky_relu::QLeakyRelu;
pub use max_pool2d::MaxPool2dDef;
#[cfg(feature = "max-pool2d")]
pub use max_pool2d::QMaxPool2d;

/// One op of a model file. The variant order is part of the file format: new ops go at the end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OpDef<B> {
    /// 2-D convolution ([`conv2d`]).
    Conv2d(Conv2dDef<B>),
    /// Fully connected layer over a flat input ([`dense`]).
    Dense(DenseDef<B>),
    /// Max pooling ([`max_pool2d`]).
    MaxPool2d(MaxPool2dDef),
    /// Average pooling ([`avg_pool2d`]).
    AvgPool2d(AvgPool2dDef),
    /// Flatten an image to a vector, channel-major; moves no data ([`flatten`]).
    Flatten(FlattenDef),
    /// Element-wise addition of two tensors, the residual connection ([`add`]).
    Add(AddDef),
    /// The mean of each channel of an image ([`global_avg_pool`]).
    GlobalAvgPool(GlobalAvgPoolDef),
    /// LeakyReLU ([`leaky_relu`]).
    LeakyRelu(LeakyReluDef),
}

/// What an op computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum OpKind {
    /// 2-D convolution.
    Conv2d,
    /// Fully connected layer.
    Dense,
    /// Max pooling.
    MaxPool2d,
    /// Average pooling.
    AvgPool2d,
    /// Flatten.
    Flatten,
    /// Element-wise addition.
    Add,
    /// Global average pooling.
    GlobalAvgPool,
    /// LeakyReLU.
    LeakyRelu,
}

impl OpKind {
    /// Every op, in the file format's order.
    pub const ALL: [Self; 8] = [
        Self::Conv2d,
        Self::Dense,
        Self::MaxPool2d,
        Self::AvgPool2d,
        Self::Flatten,
        Self::Add,
        Self::GlobalAvgPool,
        Self::LeakyRelu,
    ];

    /// The cargo feature of infer-core that builds the op (`None`: always built).
    pub const fn feature(self) -> Option<&'static str> {
        match self {
            Self::Conv2d => Some("conv2d"),
            Self::Dense => Some("dense"),
            Self::MaxPool2d => Some("max-pool2d"),
            Self::AvgPool2d => Some("avg-pool2d"),
            Self::Flatten => None,
            Self::Add => Some("add"),
            Self::GlobalAvgPool => Some("global-avg-pool"),
            Self::LeakyRelu => Some("leaky-relu"),
        }
    }

    /// Whether this build of infer-core runs the op (its feature is on).
    pub const fn is_built(self) -> bool {
        match self {
            Self::Conv2d => cfg!(feature = "conv2d"),
            Self::Dense => cfg!(feature = "dense"),
            Self::MaxPool2d => cfg!(feature = "max-pool2d"),
            Self::AvgPool2d => cfg!(feature = "avg-pool2d"),
            Self::Flatten => true,
            Self::Add => cfg!(feature = "add"),
            Self::GlobalAvgPool => cfg!(feature = "global-avg-pool"),
            Self::LeakyRelu => cfg!(feature = "leaky-relu"),
        }
    }

    /// The op's name as the file format's enum spells it.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Conv2d => "Conv2d",
            Self::Dense => "Dense",
            Self::MaxPool2d => "MaxPool2d",
            Self::AvgPool2d => "AvgPool2d",
            Self::Flatten => "Flatten",
            Self::Add => "Add",
            Self::GlobalAvgPool => "GlobalAvgPool",
            Self::LeakyRelu => "LeakyRelu",
        }
    }
}

/// Shape and quantisation of a tensor of the graph.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TensorInfo {
    /// Shape.
    pub shape: TensorShape,
    /// Quantisation.
    pub qparams: QParams,
}

/// What `prepare` sees: the op's index and the tensors made before it.
pub(crate) struct Context<'t> {
    /// Index of the op being prepared.
    pub op: usize,
    /// The model input (tensor 0).
    pub input: TensorInfo,
    /// The outputs of ops `0..op` (tensors `1..=op`).
    pub outputs: &'t [TensorInfo],
}

impl Context<'_> {
    /// The tensor `id`, which must be made before this op.
    pub fn tensor(&self, id: TensorId) -> Result<TensorInfo, Error> {
        let bad = Error::BadTensorRef {
            op: self.op,
            tensor: id,
        };
        match usize::from(id) {
            0 => Ok(self.input),
            i if i <= self.op => self.outputs.get(i - 1).copied().ok_or(bad),
            _ => Err(bad),
        }
    }

    /// The error for a size of this op that overflows (see [`Error::TooLarge`]).
    pub fn too_large(&self, what: crate::error::Extent) -> Error {
        Error::TooLarge { op: self.op, what }
    }

    /// The error for an op of a kind this build leaves out (its feature is off).
    #[cfg_attr(
        all(
            feature = "conv2d",
            feature = "dense",
            feature = "max-pool2d",
            feature = "avg-pool2d",
            feature = "add",
            feature = "global-avg-pool",
            feature = "leaky-relu"
        ),
        allow(dead_code)
    )]
    pub fn not_built(&self, kind: OpKind) -> Error {
        Error::OpNotBuilt { op: self.op, kind }
    }
}

/// The input tensors of one op (one or two).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Inputs {
    ids: [TensorId; 2],
    len: u8,
}

impl Inputs {
    /// One input.
    pub const fn one(id: TensorId) -> Self {
        Self {
            ids: [id, id],
            len: 1,
        }
    }

    /// Two inputs.
    pub const fn two(a: TensorId, b: TensorId) -> Self {
        Self {
            ids: [a, b],
            len: 2,
        }
    }

    /// The ids in order.
    pub fn ids(&self) -> &[TensorId] {
        self.ids.get(..usize::from(self.len)).unwrap_or(&self.ids)
    }
}

/// A validated op with typed views of its parameters, ready to run.
///
/// The `Q` types give outside users read access to what was loaded: shapes, weights,
/// per-channel scales and requantisation, quantisation of every tensor. Only the ops this build
/// runs have a variant (see [the module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum QOp<'a> {
    /// 2-D convolution.
    #[cfg(feature = "conv2d")]
    Conv2d(QConv2d<'a>),
    /// Fully connected layer.
    #[cfg(feature = "dense")]
    Dense(QDense<'a>),
    /// Max pooling.
    #[cfg(feature = "max-pool2d")]
    MaxPool2d(QMaxPool2d),
    /// Average pooling.
    #[cfg(feature = "avg-pool2d")]
    AvgPool2d(QAvgPool2d),
    /// Flatten.
    Flatten(QFlatten),
    /// Element-wise addition.
    #[cfg(feature = "add")]
    Add(QAdd),
    /// Global average pooling.
    #[cfg(feature = "global-avg-pool")]
    GlobalAvgPool(QGlobalAvgPool),
    /// LeakyReLU.
    #[cfg(feature = "leaky-relu")]
    LeakyRelu(QLeakyRelu),
    /// Never made: holds the lifetime when no op that borrows from the file (conv2d, dense) is
    /// built.
    #[cfg(not(any(feature = "conv2d", feature = "dense")))]
    #[doc(hidden)]
    Unbuilt(core::convert::Infallible, core::marker::PhantomData<&'a ()>),
}

impl<'a> OpDef<&'a [u8]> {
    /// Validates the op against the tensors before it ([`Context`]) and returns it with the
    /// shape and quantisation of its output.
    ///
    /// # Errors
    ///
    /// The op's own validation errors, or [`Error::OpNotBuilt`] if its feature is off.
    pub(crate) fn prepare(&self, cx: &Context<'_>) -> Result<(QOp<'a>, TensorInfo), Error> {
        match self {
            #[cfg(feature = "conv2d")]
            Self::Conv2d(d) => conv2d::prepare(d, cx).map(|(q, t)| (QOp::Conv2d(q), t)),
            #[cfg(not(feature = "conv2d"))]
            Self::Conv2d(_) => Err(cx.not_built(OpKind::Conv2d)),
            #[cfg(feature = "dense")]
            Self::Dense(d) => dense::prepare(d, cx).map(|(q, t)| (QOp::Dense(q), t)),
            #[cfg(not(feature = "dense"))]
            Self::Dense(_) => Err(cx.not_built(OpKind::Dense)),
            #[cfg(feature = "max-pool2d")]
            Self::MaxPool2d(d) => max_pool2d::prepare(d, cx).map(|(q, t)| (QOp::MaxPool2d(q), t)),
            #[cfg(not(feature = "max-pool2d"))]
            Self::MaxPool2d(_) => Err(cx.not_built(OpKind::MaxPool2d)),
            #[cfg(feature = "avg-pool2d")]
            Self::AvgPool2d(d) => avg_pool2d::prepare(d, cx).map(|(q, t)| (QOp::AvgPool2d(q), t)),
            #[cfg(not(feature = "avg-pool2d"))]
            Self::AvgPool2d(_) => Err(cx.not_built(OpKind::AvgPool2d)),
            Self::Flatten(d) => flatten::prepare(d, cx).map(|(q, t)| (QOp::Flatten(q), t)),
            #[cfg(feature = "add")]
            Self::Add(d) => add::prepare(d, cx).map(|(q, t)| (QOp::Add(q), t)),
            #[cfg(not(feature = "add"))]
            Self::Add(_) => Err(cx.not_built(OpKind::Add)),
            #[cfg(feature = "global-avg-pool")]
            Self::GlobalAvgPool(d) => {
                global_avg_pool::prepare(d, cx).map(|(q, t)| (QOp::GlobalAvgPool(q), t))
            }
            #[cfg(not(feature = "global-avg-pool"))]
            Self::GlobalAvgPool(_) => Err(cx.not_built(OpKind::GlobalAvgPool)),
            #[cfg(feature = "leaky-relu")]
            Self::LeakyRelu(d) => leaky_relu::prepare(d, cx).map(|(q, t)| (QOp::LeakyRelu(q), t)),
            #[cfg(not(feature = "leaky-relu"))]
            Self::LeakyRelu(_) => Err(cx.not_built(OpKind::LeakyRelu)),
        }
    }
}

impl<B> OpDef<B> {
    /// What the op computes.
    pub fn kind(&self) -> OpKind {
        match self {
            Self::Conv2d(_) => OpKind::Conv2d,
            Self::Dense(_) => OpKind::Dense,
            Self::MaxPool2d(_) => OpKind::MaxPool2d,
            Self::AvgPool2d(_) => OpKind::AvgPool2d,
            Self::Flatten(_) => OpKind::Flatten,
            Self::Add(_) => OpKind::Add,
            Self::GlobalAvgPool(_) => OpKind::GlobalAvgPool,
            Self::LeakyRelu(_) => OpKind::LeakyRelu,
        }
    }
}

impl QOp<'_> {
    /// What the op computes.
    pub fn kind(&self) -> OpKind {
        match self {
            #[cfg(feature = "conv2d")]
            Self::Conv2d(_) => OpKind::Conv2d,
            #[cfg(feature = "dense")]
            Self::Dense(_) => OpKind::Dense,
            #[cfg(feature = "max-pool2d")]
            Self::MaxPool2d(_) => OpKind::MaxPool2d,
            #[cfg(feature = "avg-pool2d")]
            Self::AvgPool2d(_) => OpKind::AvgPool2d,
            Self::Flatten(_) => OpKind::Flatten,
            #[cfg(feature = "add")]
            Self::Add(_) => OpKind::Add,
            #[cfg(feature = "global-avg-pool")]
            Self::GlobalAvgPool(_) => OpKind::GlobalAvgPool,
            #[cfg(feature = "leaky-relu")]
            Self::LeakyRelu(_) => OpKind::LeakyRelu,
            #[cfg(not(any(feature = "conv2d", feature = "dense")))]
            Self::Unbuilt(never, _) => match *never {},
        }
    }

    /// The tensors the op reads.
    pub fn inputs(&self) -> Inputs {
        match self {
            #[cfg(feature = "conv2d")]
            Self::Conv2d(q) => Inputs::one(q.input),
            #[cfg(feature = "dense")]
            Self::Dense(q) => Inputs::one(q.input),
            #[cfg(feature = "max-pool2d")]
            Self::MaxPool2d(q) => Inputs::one(q.input),
            #[cfg(feature = "avg-pool2d")]
            Self::AvgPool2d(q) => Inputs::one(q.input),
            Self::Flatten(q) => Inputs::one(q.input),
            #[cfg(feature = "add")]
            Self::Add(q) => Inputs::two(q.inputs[0], q.inputs[1]),
            #[cfg(feature = "global-avg-pool")]
            Self::GlobalAvgPool(q) => Inputs::one(q.input),
            #[cfg(feature = "leaky-relu")]
            Self::LeakyRelu(q) => Inputs::one(q.input),
            #[cfg(not(any(feature = "conv2d", feature = "dense")))]
            Self::Unbuilt(never, _) => match *never {},
        }
    }

    /// Whether the op's output is its input under another shape (no data moves, no memory).
    pub fn is_alias(&self) -> bool {
        match self {
            Self::Flatten(_) => true,
            #[cfg(feature = "conv2d")]
            Self::Conv2d(_) => false,
            #[cfg(feature = "dense")]
            Self::Dense(_) => false,
            #[cfg(feature = "max-pool2d")]
            Self::MaxPool2d(_) => false,
            #[cfg(feature = "avg-pool2d")]
            Self::AvgPool2d(_) => false,
            #[cfg(feature = "add")]
            Self::Add(_) => false,
            #[cfg(feature = "global-avg-pool")]
            Self::GlobalAvgPool(_) => false,
            #[cfg(feature = "leaky-relu")]
            Self::LeakyRelu(_) => false,
            #[cfg(not(any(feature = "conv2d", feature = "dense")))]
            Self::Unbuilt(never, _) => match *never {},
        }
    }

    /// Multiply-accumulates per inference.
    pub fn macs(&self) -> u64 {
        match self {
            #[cfg(feature = "conv2d")]
            Self::Conv2d(q) => q.macs(),
            #[cfg(feature = "dense")]
            Self::Dense(q) => q.macs(),
            #[cfg(feature = "max-pool2d")]
            Self::MaxPool2d(_) => 0,
            #[cfg(feature = "avg-pool2d")]
            Self::AvgPool2d(_) => 0,
            Self::Flatten(_) => 0,
            #[cfg(feature = "add")]
            Self::Add(_) => 0,
            #[cfg(feature = "global-avg-pool")]
            Self::GlobalAvgPool(_) => 0,
            #[cfg(feature = "leaky-relu")]
            Self::LeakyRelu(_) => 0,
            #[cfg(not(any(feature = "conv2d", feature = "dense")))]
            Self::Unbuilt(never, _) => match *never {},
        }
    }

    /// Bytes of parameters the kernels read (weights, biases, multipliers, shifts).
    pub fn param_bytes(&self) -> usize {
        match self {
            #[cfg(feature = "conv2d")]
            Self::Conv2d(q) => q.param_bytes(),
            #[cfg(feature = "dense")]
            Self::Dense(q) => q.param_bytes(),
            #[cfg(feature = "max-pool2d")]
            Self::MaxPool2d(_) => 0,
            #[cfg(feature = "avg-pool2d")]
            Self::AvgPool2d(_) => 0,
            Self::Flatten(_) => 0,
            #[cfg(feature = "add")]
            Self::Add(_) => 0,
            #[cfg(feature = "global-avg-pool")]
            Self::GlobalAvgPool(_) => 0,
            #[cfg(feature = "leaky-relu")]
            Self::LeakyRelu(_) => 0,
            #[cfg(not(any(feature = "conv2d", feature = "dense")))]
            Self::Unbuilt(never, _) => match *never {},
        }
    }

    /// Runs the op: `inputs` in the order of [`QOp::inputs`], `output` of the output's length,
    /// `work` idle scratch the kernel may use (its length only changes speed).
    #[cfg_attr(
        not(all(feature = "add", any(feature = "conv2d", feature = "dense"))),
        allow(unused_variables)
    )]
    pub(crate) fn invoke(&self, inputs: [&[i8]; 2], output: &mut [i8], work: &mut [i8]) {
        let [x, y] = inputs;
        match self {
            #[cfg(feature = "conv2d")]
            Self::Conv2d(q) => q.invoke(x, output, work),
            #[cfg(feature = "dense")]
            Self::Dense(q) => q.invoke(x, output, work),
            #[cfg(feature = "max-pool2d")]
            Self::MaxPool2d(q) => q.invoke(x, output),
            #[cfg(feature = "avg-pool2d")]
            Self::AvgPool2d(q) => q.invoke(x, output),
            Self::Flatten(_) => {}
            #[cfg(feature = "add")]
            Self::Add(q) => q.invoke(x, y, output),
            #[cfg(feature = "global-avg-pool")]
            Self::GlobalAvgPool(q) => q.invoke(x, output),
            #[cfg(feature = "leaky-relu")]
            Self::LeakyRelu(q) => q.invoke(x, output),
            #[cfg(not(any(feature = "conv2d", feature = "dense")))]
            Self::Unbuilt(never, _) => match *never {},
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{Activation, ChannelQuant};
    use crate::spec::{Conv2dGeometry, DenseGeometry, Padding, Pool2dGeometry, Shape};

    /// One op of each kind over a 1x4x4 input (valid or not: only whether it is built matters).
    fn one_of_each() -> [OpDef<&'static [u8]>; 8] {
        let q = QParams {
            scale: 0.5,
            zero_point: 0,
        };
        let quant = ChannelQuant {
            weight_scales: &[][..],
            bias: &[][..],
            multipliers: &[][..],
            shifts: &[][..],
        };
        let pool = Pool2dGeometry {
            kernel: 2,
            stride: 2,
        };
        [
            OpDef::Conv2d(Conv2dDef {
                input: 0,
                geometry: Conv2dGeometry {
                    in_ch: 1,
                    out_ch: 1,
                    kernel_h: 1,
                    kernel_w: 1,
                    stride: 1,
                    padding: Padding::default(),
                    groups: 1,
                },
                weights: &[],
                quant,
                output: q,
                activation: Activation::None,
            }),
            OpDef::Dense(DenseDef {
                input: 0,
                geometry: DenseGeometry {
                    in_dim: 16,
                    out_dim: 1,
                },
                weights: &[],
                quant,
                output: q,
                activation: Activation::None,
            }),
            OpDef::MaxPool2d(MaxPool2dDef {
                input: 0,
                geometry: pool,
            }),
            OpDef::AvgPool2d(AvgPool2dDef {
                input: 0,
                geometry: pool,
            }),
            OpDef::Flatten(FlattenDef { input: 0 }),
            OpDef::Add(AddDef {
                inputs: [0, 0],
                output: q,
                activation: Activation::None,
            }),
            OpDef::GlobalAvgPool(GlobalAvgPoolDef { input: 0 }),
            OpDef::LeakyRelu(LeakyReluDef {
                input: 0,
                alpha: 0.1,
                output: q,
            }),
        ]
    }

    #[test]
    fn an_op_that_is_not_built_is_refused_by_name() {
        // Run with `--no-default-features` (and single op features) to see the refusals.
        let cx = Context {
            op: 3,
            input: TensorInfo {
                shape: TensorShape::Image(Shape {
                    channels: 1,
                    height: 4,
                    width: 4,
                }),
                qparams: QParams {
                    scale: 0.5,
                    zero_point: 0,
                },
            },
            outputs: &[],
        };
        let defs = one_of_each();
        assert_eq!(defs.each_ref().map(OpDef::kind), OpKind::ALL);
        for def in &defs {
            let kind = def.kind();
            let refused = Err(Error::OpNotBuilt { op: 3, kind });
            let result = def.prepare(&cx).map(|(q, _)| q.kind());
            assert_eq!(kind.is_built(), result != refused, "{kind:?}: {result:?}");
            assert_eq!(kind.feature().is_none(), kind == OpKind::Flatten);
        }
    }
}
