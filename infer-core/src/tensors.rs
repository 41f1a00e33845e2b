//! The tensor table of a loaded [`Model`]: every tensor of the graph with its shape, its
//! quantisation and where the scratch plan keeps it, for tools that describe a model (such as
//! `firmware-sim inspect`). Read-only: nothing here changes how a model runs, and a model's
//! size in memory does not grow for it (everything is derived from [`Model::ops`]).
//!
//! Tensor 0 is the input image; tensor `i + 1` is op `i`'s output. Steps are op indices: step
//! `i` runs op `i`, and step `n` (the op count) stands for the caller reading the logits after
//! the last op.
//!
//! ```
//! # fn demo(model_bytes: &[u8]) -> Result<(), infer_core::Error> {
//! use infer_core::Model;
//!
//! let model: Model = Model::from_bytes(model_bytes)?;
//! for t in model.tensors() {
//!     // Blocks alive at the same step never overlap, and all lie in the scratch buffer.
//!     if let Some(block) = t.block() {
//!         assert!(block.offset + block.bytes <= model.scratch_len());
//!     }
//! }
//! # Ok(()) }
//! ```

use crate::format::TensorId;
use crate::model::Model;
use crate::ops::TensorInfo;

/// Where a tensor's data lives during inference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Storage {
    /// A block of its own in the scratch buffer.
    Block(Block),
    /// The block of another tensor, under another shape (a flatten's output is its input's
    /// bytes): `root` is the tensor that owns the block.
    Alias {
        /// The tensor that owns the block.
        root: TensorId,
        /// That block.
        block: Block,
    },
    /// Never stored: a convolution's output that the 2x2 max pooling after it consumes inside
    /// one fused kernel (see the [`model`](crate::model) docs).
    Fused,
}

/// A placed block of the scratch plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Block {
    /// First byte in the scratch buffer.
    pub offset: usize,
    /// Length in bytes (int8: one byte per element).
    pub bytes: usize,
    /// First step at which it holds data (the step that writes it).
    pub first: usize,
    /// Last step at which it holds data (the last step that reads it; the op count for the
    /// model's output).
    pub last: usize,
}

/// One tensor of a loaded model: shape, quantisation, the op that makes it and its storage.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PlannedTensor {
    /// Its number: 0 for the input, `i + 1` for op `i`'s output.
    pub id: TensorId,
    /// The op that makes it (`None` for the input).
    pub producer: Option<usize>,
    /// Shape and quantisation.
    pub info: TensorInfo,
    /// Where the plan keeps it.
    pub storage: Storage,
}

impl PlannedTensor {
    /// The block its data lives in (its own or, for an alias, its root's); `None` if it is
    /// never stored.
    pub fn block(&self) -> Option<Block> {
        match self.storage {
            Storage::Block(b) | Storage::Alias { block: b, .. } => Some(b),
            Storage::Fused => None,
        }
    }
}

impl<const MAX_OPS: usize> Model<'_, MAX_OPS> {
    /// The tensor whose block holds tensor `id`: itself, or, for a flatten's output, the root
    /// of its input (following chains of flattens).
    fn root(&self, id: TensorId) -> TensorId {
        let mut t = id;
        // Each step moves to a smaller id, so this ends; bounded by the op count anyway.
        for _ in 0..=self.ops().len() {
            let Some(op) = usize::from(t)
                .checked_sub(1)
                .and_then(|i| self.ops().get(i))
            else {
                return t;
            };
            if !op.op().is_alias() {
                return t;
            }
            match op.op().inputs().ids().first() {
                Some(&input) if input < t => t = input,
                _ => return t,
            }
        }
        t
    }

    /// The steps `(first, last)` during which the input image's block holds data: from 0 to
    /// the last step that reads it (through flattens), or to the end if it is the output.
    pub fn input_lifetime(&self) -> (usize, usize) {
        let n = self.ops().len();
        let mut last = 0;
        for (i, step) in self.ops().iter().enumerate() {
            if step.runs() && step.op().inputs().ids().iter().any(|&t| self.root(t) == 0) {
                last = i;
            }
        }
        let output = TensorId::try_from(n).unwrap_or(TensorId::MAX);
        if self.root(output) == 0 {
            last = n;
        }
        (0, last)
    }

    /// Tensor `id` of the graph, or `None` if the model has no such tensor.
    pub fn tensor(&self, id: TensorId) -> Option<PlannedTensor> {
        let Some(i) = usize::from(id).checked_sub(1) else {
            let (first, last) = self.input_lifetime();
            return Some(PlannedTensor {
                id,
                producer: None,
                info: TensorInfo {
                    shape: crate::spec::TensorShape::Image(self.input_shape()),
                    qparams: self.input_qparams(),
                },
                storage: Storage::Block(Block {
                    offset: self.input_offset(),
                    bytes: self.input_len(),
                    first,
                    last,
                }),
            });
        };
        let op = self.ops().get(i)?;
        let info = op.output();
        let (first, last) = op.output_lifetime();
        let storage = match op.output_offset() {
            None => Storage::Fused,
            Some(offset) => {
                let root = self.root(id);
                let bytes = if root == id {
                    info.shape.len()
                } else {
                    // The root is the input or an op's own output: no further recursion.
                    self.tensor(root).map_or(0, |r| r.info.shape.len())
                };
                let block = Block {
                    offset,
                    bytes,
                    first,
                    last,
                };
                if root == id {
                    Storage::Block(block)
                } else {
                    Storage::Alias { root, block }
                }
            }
        };
        Some(PlannedTensor {
            id,
            producer: Some(i),
            info,
            storage,
        })
    }

    /// Every tensor of the graph in id order: the input, then each op's output.
    pub fn tensors(&self) -> impl Iterator<Item = PlannedTensor> + '_ {
        (0..=self.ops().len()).filter_map(|t| self.tensor(TensorId::try_from(t).ok()?))
    }
}
