//! The layers a network is described with: one type per file, each owning its shape rule
//! (through [`infer_core::spec`]), its parameters, its candle forward pass and its lowering to
//! int8 ops; registered in [`Layer`], the serialisable description an [`crate::arch::Arch`]
//! lists.
//!
//! Adding a layer: a file here with its type and an implementation of [`LayerOps`]; a variant
//! of [`Layer`] and its arm in [`Layer::ops`] (the only `match` over layers). If it needs a
//! new int8 op, that op is added to infer-core first (`infer-core/src/ops/`).

use candle_core::{Tensor, Var};
use infer_core::spec::TensorShape;
use serde::{Deserialize, Serialize};

use crate::lower::{LowerError, Lowerer};
use crate::net::{Forward, NetError, Params};

pub mod avg_pool2d;
pub mod batch_norm;
pub mod conv2d;
pub mod dense;
pub mod dropout;
pub mod flatten;
pub mod global_avg_pool;
pub mod leaky_relu;
pub mod max_pool2d;
pub mod pad_replicate;
pub mod recurrent;
pub mod relu;
pub mod residual;

pub use avg_pool2d::AvgPool2d;
pub use batch_norm::BatchNorm;
pub use conv2d::Conv2d;
pub use dense::Dense;
pub use dropout::Dropout;
pub use flatten::Flatten;
pub use global_avg_pool::GlobalAvgPool;
pub use leaky_relu::LeakyRelu;
pub use max_pool2d::MaxPool2d;
pub use pad_replicate::PadReplicate;
pub use recurrent::{Cell, Recurrent};
pub use relu::Relu;
pub use residual::Residual;

/// How a parameter starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// Uniform in `[-bound, bound)`, drawn from the network's seeded generator (PyTorch's
    /// default for conv and linear layers, `bound = 1 / sqrt(fan_in)`).
    Uniform(f32),
    /// Every element this value.
    Fill(f32),
    /// As [`Init::Uniform`] (every element drawn), then elements `start..start + len` set to
    /// `value` (an LSTM's forget-gate bias).
    UniformPatched {
        /// Half-width of the uniform range.
        bound: f32,
        /// First patched element.
        start: usize,
        /// Patched elements.
        len: usize,
        /// Their value.
        value: f32,
    },
}

/// One tensor of a layer: its name under the layer's path, shape, start, and whether the
/// optimiser trains it (running statistics are updated by the forward pass instead).
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    /// Name under the layer's path, e.g. `weight` (or `body.0.weight` for a nested layer's).
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Initial values.
    pub init: Init,
    /// Whether the optimiser updates it.
    pub trainable: bool,
}

impl ParamSpec {
    /// A trainable tensor, uniform in `±1/sqrt(fan_in)`.
    pub fn uniform(name: &str, shape: Vec<usize>, fan_in: usize) -> Self {
        Self {
            name: name.to_string(),
            shape,
            init: Init::Uniform(1.0 / (fan_in.max(1) as f32).sqrt()),
            trainable: true,
        }
    }
}

/// What every layer type provides.
pub trait LayerOps {
    /// The output shape for `input`, or `None` if the layer cannot take it.
    fn output(&self, input: TensorShape) -> Option<TensorShape>;

    /// The layer's tensors, nested layers' included, in the order they are initialised (none
    /// by default).
    fn params(&self, _input: TensorShape) -> Vec<ParamSpec> {
        Vec::new()
    }

    /// Multiply-accumulates of one image through the layer (none by default: only
    /// convolutions and dense layers count).
    fn macs(&self, _input: TensorShape) -> u64 {
        0
    }

    /// The float forward pass of one batch.
    fn forward(
        &self,
        x: &Tensor,
        params: &Params<'_>,
        cx: &mut Forward<'_, '_>,
    ) -> Result<Tensor, NetError>;

    /// The pooling this layer is, for the fused conv-ReLU-pool training op (none by default).
    fn pooling(&self) -> Option<crate::ops::Pooling> {
        None
    }

    /// Whether the layer has an int8 lowering (every layer but the recurrent ones).
    fn deployable(&self) -> bool {
        true
    }

    /// Appends the layer's int8 lowering to `lw` (see [`Lowerer`]: conv and dense open an op,
    /// BatchNorm folds into it, activations fuse, dropout vanishes).
    fn lower(&self, lw: &mut Lowerer<'_>, params: &Params<'_>) -> Result<(), LowerError>;
}

/// One layer of a network, including training-only ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Layer {
    /// 2-D convolution.
    Conv2d(Conv2d),
    /// Fully connected layer over a flat input.
    Dense(Dense),
    /// Rectified linear unit.
    Relu(Relu),
    /// Max pooling.
    MaxPool2d(MaxPool2d),
    /// Average pooling.
    AvgPool2d(AvgPool2d),
    /// Flatten an image to a vector, channel-major.
    Flatten(Flatten),
    /// Inverted dropout (training only).
    Dropout(Dropout),
    /// Batch normalisation (folded into the conv or dense layer before it at export).
    BatchNorm(BatchNorm),
    /// LeakyReLU (an int8 op of its own).
    LeakyRelu(LeakyRelu),
    /// Global average pooling.
    GlobalAvgPool(GlobalAvgPool),
    /// A residual block, `body(x) + shortcut(x)` (an int8 Add).
    Residual(Residual),
    /// Zero padding and channel replication of the grey input image (no int8 op: folded into
    /// the conv or dense layer after it).
    PadReplicate(PadReplicate),
    /// An Elman RNN or LSTM over the image rows (no int8 lowering).
    Recurrent(Recurrent),
}

impl Layer {
    /// The layer's implementation.
    pub fn ops(&self) -> &dyn LayerOps {
        match self {
            Self::Conv2d(l) => l,
            Self::Dense(l) => l,
            Self::Relu(l) => l,
            Self::MaxPool2d(l) => l,
            Self::AvgPool2d(l) => l,
            Self::Flatten(l) => l,
            Self::Dropout(l) => l,
            Self::BatchNorm(l) => l,
            Self::LeakyRelu(l) => l,
            Self::GlobalAvgPool(l) => l,
            Self::Residual(l) => l,
            Self::PadReplicate(l) => l,
            Self::Recurrent(l) => l,
        }
    }

    /// See [`LayerOps::output`].
    pub fn output(&self, input: TensorShape) -> Option<TensorShape> {
        self.ops().output(input)
    }

    /// See [`LayerOps::params`].
    pub fn params(&self, input: TensorShape) -> Vec<ParamSpec> {
        self.ops().params(input)
    }

    /// See [`LayerOps::deployable`].
    pub fn deployable(&self) -> bool {
        self.ops().deployable()
    }

    /// See [`LayerOps::macs`].
    pub fn macs(&self, input: TensorShape) -> u64 {
        self.ops().macs(input)
    }

    /// Number of trainable parameters for `input`.
    pub fn param_count(&self, input: TensorShape) -> usize {
        self.params(input)
            .iter()
            .filter(|p| p.trainable)
            .map(|p| p.shape.iter().product::<usize>())
            .sum()
    }
}

/// The value of one variable as a flat `f32` vector.
pub(crate) fn values(var: &Var) -> Result<Vec<f32>, candle_core::Error> {
    var.as_tensor().flatten_all()?.to_vec1()
}
