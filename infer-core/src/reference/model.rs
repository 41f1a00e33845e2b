//! Reference whole-model inference: the ops of a loaded [`Model`] run one after the other
//! with the reference kernels, each tensor in its own block.

use crate::error::Error;
use crate::format::TensorId;
use crate::model::Model;
use crate::ops::QOp;

/// Elements of tensor `id` of `model` (0 for an unknown id).
fn tensor_len<const N: usize>(model: &Model<'_, N>, id: TensorId) -> usize {
    match usize::from(id) {
        0 => model.input_len(),
        t => model
            .ops()
            .get(t - 1)
            .map_or(0, |op| op.output().shape.len()),
    }
}

/// Where tensor `id` starts in [`run_model`]'s buffer: the tensors one after the other, in id
/// order.
fn tensor_offset<const N: usize>(model: &Model<'_, N>, id: TensorId) -> usize {
    (0..id).map(|t| tensor_len(model, t)).sum()
}

/// Bytes of the buffer [`run_model`] needs: every tensor of the graph side by side (no tensor
/// shares memory with another, unlike the [`Model`]'s scratch plan).
pub fn tensors_len<const N: usize>(model: &Model<'_, N>) -> usize {
    let last = TensorId::try_from(model.ops().len()).unwrap_or(TensorId::MAX);
    (0..=last).map(|t| tensor_len(model, t)).sum()
}

/// Runs a loaded model the plain way and returns its output logits: the input `q = pixel - 128`
/// as tensor 0, then each op of [`Model::ops`] in order, reading its input tensors and writing
/// its own with the reference kernel of its kind (a flatten copies its input; a convolution
/// and the max pooling after it run one after the other, never fused). `tensors` holds every
/// tensor, [`tensors_len`] bytes; the logits are its last [`Model::num_classes`] bytes.
///
/// The oracle for [`Model::predict_raw`], which must return the same logits.
///
/// # Errors
///
/// [`Error::InputLength`] if `pixels` is not [`Model::input_len`] long,
/// [`Error::ScratchTooSmall`] if `tensors` is shorter than [`tensors_len`].
pub fn run_model<'t, const N: usize>(
    model: &Model<'_, N>,
    pixels: &[u8],
    tensors: &'t mut [i8],
) -> Result<&'t [i8], Error> {
    if pixels.len() != model.input_len() {
        return Err(Error::InputLength {
            expected: model.input_len(),
            got: pixels.len(),
        });
    }
    let needed = tensors_len(model);
    let tensors = tensors
        .get_mut(..needed)
        .ok_or(Error::ScratchTooSmall { needed })?;
    for (q, &p) in tensors.iter_mut().zip(pixels) {
        *q = i8::from_ne_bytes([p ^ 0x80]);
    }
    for (i, step) in model.ops().iter().enumerate() {
        let own = TensorId::try_from(i + 1).unwrap_or(TensorId::MAX);
        // Every input is made before this op, so it lies before the op's own block.
        let (before, rest) = tensors.split_at_mut(tensor_offset(model, own));
        let output = rest
            .get_mut(..step.output().shape.len())
            .unwrap_or_default();
        let tensor = |id: TensorId| {
            let at = tensor_offset(model, id);
            before
                .get(at..at + tensor_len(model, id))
                .unwrap_or_default()
        };
        match step.op() {
            #[cfg(feature = "conv2d")]
            QOp::Conv2d(q) => {
                let g = q.geometry();
                let params = crate::kernels::Conv2dParams {
                    kernel_h: usize::from(g.kernel_h),
                    kernel_w: usize::from(g.kernel_w),
                    stride: usize::from(g.stride),
                    padding: g.padding,
                };
                // Group by group: output channel `o` of group `o / (out_ch / groups)` sees only
                // that group's `in_ch / groups` input planes.
                let groups = usize::from(g.groups.max(1));
                let shape = crate::spec::Shape {
                    channels: g.group_in_ch(),
                    ..q.input_shape()
                };
                let x = tensor(q.input());
                let (rq, w) = (q.requant(), q.weights());
                let out_g = usize::from(g.out_ch) / groups;
                let (x_len, w_len, o_len) =
                    (x.len() / groups, w.len() / groups, output.len() / groups);
                for k in 0..groups {
                    let group_rq = crate::kernels::QRequant {
                        bias: rq
                            .bias
                            .get(4 * out_g * k..4 * out_g * (k + 1))
                            .unwrap_or_default(),
                        multipliers: rq
                            .multipliers
                            .get(4 * out_g * k..4 * out_g * (k + 1))
                            .unwrap_or_default(),
                        shifts: rq
                            .shifts
                            .get(out_g * k..out_g * (k + 1))
                            .unwrap_or_default(),
                        ..rq
                    };
                    super::conv2d_i8(
                        x.get(x_len * k..x_len * (k + 1)).unwrap_or_default(),
                        shape,
                        q.input_qparams().zero_point,
                        w.get(w_len * k..w_len * (k + 1)).unwrap_or_default(),
                        &params,
                        &group_rq,
                        output
                            .get_mut(o_len * k..o_len * (k + 1))
                            .unwrap_or_default(),
                    );
                }
            }
            #[cfg(feature = "dense")]
            QOp::Dense(q) => super::dense_i8(
                tensor(q.input()),
                q.input_qparams().zero_point,
                q.weights(),
                &q.requant(),
                output,
            ),
            #[cfg(feature = "max-pool2d")]
            QOp::MaxPool2d(q) => {
                let params = crate::kernels::Pool2dParams {
                    kernel: usize::from(q.geometry().kernel),
                    stride: usize::from(q.geometry().stride),
                };
                super::max_pool2d_i8(tensor(q.input()), q.input_shape(), &params, output);
            }
            #[cfg(feature = "avg-pool2d")]
            QOp::AvgPool2d(q) => {
                let params = crate::kernels::Pool2dParams {
                    kernel: usize::from(q.geometry().kernel),
                    stride: usize::from(q.geometry().stride),
                };
                super::avg_pool2d_i8(tensor(q.input()), q.input_shape(), &params, output);
            }
            QOp::Flatten(q) => {
                for (o, &x) in output.iter_mut().zip(tensor(q.input())) {
                    *o = x;
                }
            }
            #[cfg(feature = "add")]
            QOp::Add(q) => {
                let [a, b] = q.inputs();
                super::add_i8(tensor(a), tensor(b), &q.params(), output);
            }
            #[cfg(feature = "global-avg-pool")]
            QOp::GlobalAvgPool(q) => {
                super::global_avg_pool_i8(tensor(q.input()), q.input_shape(), output);
            }
            #[cfg(feature = "leaky-relu")]
            QOp::LeakyRelu(q) => super::leaky_relu_i8(tensor(q.input()), &q.params(), output),
            #[cfg(not(any(feature = "conv2d", feature = "dense")))]
            QOp::Unbuilt(never, _) => match *never {},
        }
    }
    let tensors: &'t [i8] = tensors;
    let start = needed.saturating_sub(model.num_classes());
    Ok(tensors.get(start..).unwrap_or_default())
}
