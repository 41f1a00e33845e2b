//! Fast CPU training ops as candle custom ops: convolution through `im2col` + candle's matmul,
//! and max / average pooling with direct backward passes.
//!
//! Stock candle 0.11 computes a conv's input gradient with `conv_transpose2d` (a plain loop),
//! its weight gradient with a conv over transposed tensors, and the max-pool gradient from an
//! upsample, an equality mask and an average pool. The ops here replace those paths:
//!
//! - [`conv2d`]: `W·im2col(x) + b` as one custom op whose backward computes the weight and
//!   input gradients with candle's multithreaded matmul (gemm) and a direct `col2im` loop,
//!   skipping the input gradient of an untracked input (a network's first layer). Layers
//!   with 3×3 kernels, stride 1 and 16 or more input channels run all three products through
//!   Winograd's F(4×4, 3×3) minimal filtering instead (`winograd.rs`): 36 multiply-adds per 16
//!   outputs and input channel where `im2col` needs 144.
//! - [`max_pool2d`]: each output gradient goes to the first maximum of its window (PyTorch's
//!   rule); windows may overlap (`kernel != stride`).
//! - [`avg_pool2d`]: each output gradient is spread as `g/(k·k)` over its window.
//! - [`batch_norm_train`]: batch normalisation by the batch's statistics, forward and backward
//!   each in one or two sweeps instead of candle's strided reductions.
//! - [`conv_block`]: `pool(relu(conv2d(x)))` fused into one op with one backward pass, which
//!   the networks use for every conv layer followed by ReLU (see `block.rs` for what it saves).
//! - [`conv_bn_block`]: the same with batch normalisation (training mode) between the conv and
//!   the ReLU, for every conv → BatchNorm → ReLU in training; bit-identical to the unfused
//!   layers, and about a fifth faster on `s1-cnn64` and `s2-m6` (see `bench/README.md`).
//! - [`add_relu`]: `relu(a + b)`, where a residual block's branches meet and the ReLU after
//!   it, as one op with one backward sweep; bit-identical to candle's add and `relu`.
//!
//! Every op takes an `f32` NCHW tensor on the CPU (any strides: it is made contiguous first)
//! and returns a contiguous one. The matmuls run on candle's gemm threads (rayon); so do our
//! own loops (im2col, col2im, transpositions, bias, normalisation, pooling), split over
//! independent planes, rows or channels in pieces of at least [`PAR_MIN`] values. Each value
//! is computed exactly as on one thread, so results do not depend on the thread count. (An
//! earlier split over two scoped threads, spawned per op, was slower under background load:
//! the step waited for whichever thread the scheduler ran last. Rayon's pool is already
//! running, and its caller steals back unstarted pieces.)
//!
//! `trainer/examples/op_profile.rs` times every op and whole training steps against stock
//! candle.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, DType, Layout};

mod add_relu;
mod batch_norm;
mod block;
mod conv;
mod pool;
mod winograd;

pub use add_relu::add_relu;
pub use batch_norm::batch_norm_train;
pub use block::{BatchNormArgs, BatchStats, Pooling, Tail, conv_block, conv_bn_block};
pub use conv::conv2d;
pub use pool::{avg_pool2d, max_pool2d};

/// The fewest values one parallel piece of an op's own loops handles: below this, rayon's
/// hand-over costs more than the loop.
pub const PAR_MIN: usize = 1 << 14;

/// The fewest items of `len` values each that make a parallel piece of [`PAR_MIN`] values.
fn min_items(len: usize) -> usize {
    (PAR_MIN / len.max(1)).max(1)
}

/// Why an op cannot run on the tensors it was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpError {
    /// The op only implements `f32`.
    #[error("{op}: expected an f32 tensor, got {got:?}")]
    DType {
        /// The op.
        op: &'static str,
        /// The dtype it got.
        got: DType,
    },
    /// An input's shape does not fit the op.
    #[error("{op}: {problem}")]
    Shape {
        /// The op.
        op: &'static str,
        /// What is wrong, with the shapes involved.
        problem: String,
    },
}

impl OpError {
    fn shape(op: &'static str, problem: String) -> candle_core::Error {
        candle_core::Error::wrap(OpError::Shape { op, problem })
    }
}

/// The contiguous `f32` data of a CPU storage.
pub(crate) fn f32_data<'a>(
    op: &'static str,
    storage: &'a CpuStorage,
    layout: &Layout,
) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        return Err(candle_core::Error::wrap(OpError::DType {
            op,
            got: storage.dtype(),
        }));
    };
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| OpError::shape(op, "input is not contiguous".into()))?;
    Ok(&data[start..end])
}

/// Output side of a window sweep (`infer_core::spec::window_len`, the project's one rule),
/// or an error naming the op and the sizes.
fn out_size(
    op: &'static str,
    size: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
) -> candle_core::Result<usize> {
    infer_core::spec::window_len(size, padding, padding, kernel, stride).ok_or_else(|| {
        OpError::shape(
            op,
            format!("kernel {kernel}, stride {stride}, padding {padding} do not fit size {size}"),
        )
    })
}

#[cfg(test)]
pub(crate) mod test_util {
    //! Seeded inputs and gradient checks shared by the op tests.

    use candle_core::{Device, Tensor, Var, backprop::GradStore};
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// A tensor of uniform values in `[-1, 1)` from a seeded ChaCha8 generator.
    pub fn random(shape: &[usize], seed: u64) -> Tensor {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    /// The values of a [`random`] tensor.
    pub fn values(shape: &[usize], seed: u64) -> Vec<f32> {
        random(shape, seed)
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    /// A variable with [`random`] values.
    pub fn random_var(shape: &[usize], seed: u64) -> Var {
        Var::from_tensor(&random(shape, seed)).unwrap()
    }

    /// Gradients of `sum(y · r)` for a random `r` of `y`'s shape.
    pub fn grads_of(y: &Tensor, seed: u64) -> GradStore {
        let r = random(y.dims(), seed);
        y.mul(&r).unwrap().sum_all().unwrap().backward().unwrap()
    }

    /// Asserts that `sum(a · r)` and `sum(b · r)`, for one random `r`, have the same
    /// gradients with respect to each named variable, within `tol` as [`assert_close`].
    pub fn assert_same_grads(
        a: &Tensor,
        b: &Tensor,
        vars: &[(&str, &Var)],
        seed: u64,
        tol: f32,
        what: &str,
    ) {
        let (ga, gb) = (grads_of(a, seed), grads_of(b, seed));
        for (name, v) in vars {
            let (x, y) = (ga.get(v).unwrap(), gb.get(v).unwrap());
            assert_close(x, y, tol, &format!("{what}: d{name}"));
        }
    }

    /// Asserts `a ≈ b` elementwise within `tol` relative to the largest magnitude in `b`.
    pub fn assert_close(a: &Tensor, b: &Tensor, tol: f32, what: &str) {
        assert_eq!(a.dims(), b.dims(), "{what}: shapes");
        let a: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
        let scale = b.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert!(
                (x - y).abs() <= tol * scale,
                "{what}: element {i}: {x} vs {y} (scale {scale})"
            );
        }
    }
}
