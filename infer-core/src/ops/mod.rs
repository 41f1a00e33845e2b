//! The ops: one module per op, each owning its definition in the file format (`XDef`), its
//! validation at load (`prepare`, once) and its run (`invoke`), and registered in the two
//! enums below, [`OpDef`] (the file) and [`QOp`] (validated, ready to run).
//!
//! Adding an op: a module here with its `Def`, its validated `Q` type, `prepare` and `invoke`;
//! a variant at the end of [`OpDef`], [`QOp`] and [`OpKind`]; the arms the compiler then asks
//! for in this file (every `match` over ops is exhaustive). The kernel itself lives in
//! [`crate::kernels`] and its naive oracle in [`crate::reference`].

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

pub use add::{AddDef, QAdd};
pub use avg_pool2d::{AvgPool2dDef, QAvgPool2d};
pub use conv2d::{Conv2dDef, QConv2d};
pub use dense::{DenseDef, QDense};
pub use flatten::{FlattenDef, QFlatten};
pub use global_avg_pool::{GlobalAvgPoolDef, QGlobalAvgPool};
pub use leaky_relu::{LeakyReluDef, QLeakyRelu};
pub use max_pool2d::{MaxPool2dDef, QMaxPool2d};

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

    /// The error for parameters this op cannot take.
    pub fn unsupported(&self) -> Error {
        Error::UnsupportedOp { op: self.op }
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
/// per-channel scales and requantisation, quantisation of every tensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum QOp<'a> {
    /// 2-D convolution.
    Conv2d(QConv2d<'a>),
    /// Fully connected layer.
    Dense(QDense<'a>),
    /// Max pooling.
    MaxPool2d(QMaxPool2d),
    /// Average pooling.
    AvgPool2d(QAvgPool2d),
    /// Flatten.
    Flatten(QFlatten),
    /// Element-wise addition.
    Add(QAdd),
    /// Global average pooling.
    GlobalAvgPool(QGlobalAvgPool),
    /// LeakyReLU.
    LeakyRelu(QLeakyRelu),
}

impl<'a> OpDef<&'a [u8]> {
    /// Validates the op against the tensors before it ([`Context`]) and returns it with the
    /// shape and quantisation of its output.
    pub(crate) fn prepare(&self, cx: &Context<'_>) -> Result<(QOp<'a>, TensorInfo), Error> {
        Ok(match self {
            Self::Conv2d(d) => conv2d::prepare(d, cx).map(|(q, t)| (QOp::Conv2d(q), t))?,
            Self::Dense(d) => dense::prepare(d, cx).map(|(q, t)| (QOp::Dense(q), t))?,
            Self::MaxPool2d(d) => {
                max_pool2d::prepare(d, cx).map(|(q, t)| (QOp::MaxPool2d(q), t))?
            }
            Self::AvgPool2d(d) => {
                avg_pool2d::prepare(d, cx).map(|(q, t)| (QOp::AvgPool2d(q), t))?
            }
            Self::Flatten(d) => flatten::prepare(d, cx).map(|(q, t)| (QOp::Flatten(q), t))?,
            Self::Add(d) => add::prepare(d, cx).map(|(q, t)| (QOp::Add(q), t))?,
            Self::GlobalAvgPool(d) => {
                global_avg_pool::prepare(d, cx).map(|(q, t)| (QOp::GlobalAvgPool(q), t))?
            }
            Self::LeakyRelu(d) => {
                leaky_relu::prepare(d, cx).map(|(q, t)| (QOp::LeakyRelu(q), t))?
            }
        })
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

    /// The tensors the op reads.
    pub fn inputs(&self) -> Inputs {
        match self {
            Self::Conv2d(q) => Inputs::one(q.input),
            Self::Dense(q) => Inputs::one(q.input),
            Self::MaxPool2d(q) => Inputs::one(q.input),
            Self::AvgPool2d(q) => Inputs::one(q.input),
            Self::Flatten(q) => Inputs::one(q.input),
            Self::Add(q) => Inputs::two(q.inputs[0], q.inputs[1]),
            Self::GlobalAvgPool(q) => Inputs::one(q.input),
            Self::LeakyRelu(q) => Inputs::one(q.input),
        }
    }

    /// Whether the op's output is its input under another shape (no data moves, no memory).
    pub fn is_alias(&self) -> bool {
        match self {
            Self::Flatten(_) => true,
            Self::Conv2d(_)
            | Self::Dense(_)
            | Self::MaxPool2d(_)
            | Self::AvgPool2d(_)
            | Self::Add(_)
            | Self::GlobalAvgPool(_)
            | Self::LeakyRelu(_) => false,
        }
    }

    /// Multiply-accumulates per inference.
    pub fn macs(&self) -> u64 {
        match self {
            Self::Conv2d(q) => q.macs(),
            Self::Dense(q) => q.macs(),
            Self::MaxPool2d(_)
            | Self::AvgPool2d(_)
            | Self::Flatten(_)
            | Self::Add(_)
            | Self::GlobalAvgPool(_)
            | Self::LeakyRelu(_) => 0,
        }
    }

    /// Bytes of parameters the kernels read (weights, biases, multipliers, shifts).
    pub fn param_bytes(&self) -> usize {
        match self {
            Self::Conv2d(q) => q.param_bytes(),
            Self::Dense(q) => q.param_bytes(),
            Self::MaxPool2d(_)
            | Self::AvgPool2d(_)
            | Self::Flatten(_)
            | Self::Add(_)
            | Self::GlobalAvgPool(_)
            | Self::LeakyRelu(_) => 0,
        }
    }

    /// Runs the op: `inputs` in the order of [`QOp::inputs`], `output` of the output's length,
    /// `work` idle scratch the kernel may use (its length only changes speed).
    pub(crate) fn invoke(&self, inputs: [&[i8]; 2], output: &mut [i8], work: &mut [i8]) {
        let [x, y] = inputs;
        match self {
            Self::Conv2d(q) => q.invoke(x, output, work),
            Self::Dense(q) => q.invoke(x, output, work),
            Self::MaxPool2d(q) => q.invoke(x, output),
            Self::AvgPool2d(q) => q.invoke(x, output),
            Self::Flatten(_) => {}
            Self::Add(q) => q.invoke(x, y, output),
            Self::GlobalAvgPool(q) => q.invoke(x, output),
            Self::LeakyRelu(q) => q.invoke(x, output),
        }
    }
}
