//! `relu(a + b)` as one op: where a residual block's body and shortcut meet, and the ReLU
//! that follows the block.
//!
//! Unfused, that is two graph nodes over an activation-sized tensor, and candle's backward
//! pass spends on them: for the ReLU a zero-filled tensor to compare with, `ge`, `to_dtype`,
//! `mul`, and a zero-filled gradient plus an `add`; for the sum a zero-filled gradient plus an
//! `add` per branch. Fused, the forward pass is one sweep and the backward pass one sweep that
//! recomputes the sign of `a + b` from the inputs (nothing is kept between the passes), before
//! candle accumulates the result into each branch's gradient as it does for a sum.
//!
//! Values and gradients are candle's `(a + b).relu()` bit for bit, including the derivative 1
//! at exactly 0 and candle's `0 + g·1`, which turns -0 into +0.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

use rayon::prelude::*;

use super::{OpError, PAR_MIN, f32_data};

/// The forward op.
struct AddRelu;

/// The backward op: `(a, b, output gradient) -> gradient of a + b`.
struct AddReluBwd;

impl AddRelu {
    const NAME: &'static str = "add-relu";
}

/// The two branches' values, which must have the same shape.
fn same_shape<'a>(
    op: &'static str,
    (s1, l1): (&'a CpuStorage, &Layout),
    (s2, l2): (&'a CpuStorage, &Layout),
) -> Result<(&'a [f32], &'a [f32])> {
    if l1.shape() != l2.shape() {
        return Err(OpError::shape(
            op,
            format!("branches of shapes {:?} and {:?}", l1.dims(), l2.dims()),
        ));
    }
    Ok((f32_data(op, s1, l1)?, f32_data(op, s2, l2)?))
}

impl CustomOp2 for AddRelu {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (a, b) = same_shape(Self::NAME, (s1, l1), (s2, l2))?;
        let y: Vec<f32> = a
            .par_iter()
            .zip(b)
            .with_min_len(PAR_MIN)
            .map(|(&a, &b)| (a + b).max(0.0))
            .collect();
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = a.apply_op3_no_bwd(b, &grad_res.contiguous()?, &AddReluBwd)?;
        Ok((a.track_op().then(|| g.clone()), b.track_op().then_some(g)))
    }
}

impl CustomOp3 for AddReluBwd {
    fn name(&self) -> &'static str {
        "add-relu-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (a, b) = same_shape(self.name(), (s1, l1), (s2, l2))?;
        let (_, dy) = same_shape(self.name(), (s1, l1), (s3, l3))?;
        // candle's ReLU backward: `0 + g · (z >= 0 ? 1 : 0)`, written out so that the
        // multiply and the add (which map -0 to +0) stay.
        let g: Vec<f32> = a
            .par_iter()
            .zip(b)
            .zip(dy)
            .with_min_len(PAR_MIN)
            .map(|((&a, &b), &g)| 0.0 + g * if a + b >= 0.0 { 1.0 } else { 0.0 })
            .collect();
        Ok((CpuStorage::F32(g), l1.shape().clone()))
    }
}

/// `relu(a + b)` as one op, with one backward pass for both (see the module docs).
///
/// # Shapes
/// - `a`, `b`: the same shape, `f32`
/// - returns that shape
///
/// # Example
/// ```
/// use candle_core::{Device, Tensor};
/// use trainer::ops::add_relu;
/// let a = Tensor::new(&[1f32, -2., 0.5], &Device::Cpu)?;
/// let b = Tensor::new(&[1f32, 1., -1.], &Device::Cpu)?;
/// assert_eq!(add_relu(&a, &b)?.to_vec1::<f32>()?, [2., 0., 0.]);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn add_relu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    a.contiguous()?.apply_op2(&b.contiguous()?, AddRelu)
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;
    use crate::ops::test_util::{grads_of, random_var};

    fn bits(t: &Tensor) -> Vec<u32> {
        t.flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .into_iter()
            .map(f32::to_bits)
            .collect()
    }

    /// Gradients of `sum(relu(a + b) · r)` and of the unfused ops with respect to `a` and
    /// `b`, bit for bit, and the same forward values.
    fn assert_matches_candle(a: &Var, b: &Var, seed: u64) {
        let fused = add_relu(a, b).unwrap();
        let unfused = (a.as_tensor() + b.as_tensor()).unwrap().relu().unwrap();
        assert_eq!(bits(&fused), bits(&unfused), "forward");
        let (gf, gu) = (grads_of(&fused, seed), grads_of(&unfused, seed));
        for (name, v) in [("a", a), ("b", b)] {
            let (f, u) = (gf.get(v).unwrap(), gu.get(v).unwrap());
            assert_eq!(bits(f), bits(u), "d{name}");
        }
    }

    #[test]
    fn matches_candle_add_then_relu_bit_for_bit() {
        for (shape, seed) in [(&[2usize, 3, 5, 5][..], 1), (&[64, 16, 7, 7], 2), (&[7], 3)] {
            assert_matches_candle(
                &random_var(shape, seed),
                &random_var(shape, seed + 10),
                seed,
            );
        }
    }

    #[test]
    fn a_sum_of_exactly_zero_and_negative_zero_gradients_follow_candle() {
        // Sums 0 (derivative 1 in candle), -0 + 0, and below 0; the output gradient's random
        // signs put -0 products in play.
        let dev = Device::Cpu;
        let a = Var::new(&[1f32, -0.0, -3., 0.25, 2.], &dev).unwrap();
        let b = Var::new(&[-1f32, 0.0, 1., -0.25, -5.], &dev).unwrap();
        for seed in 0..8 {
            assert_matches_candle(&a, &b, seed);
        }
        let g = grads_of(&add_relu(&a, &b).unwrap(), 0);
        let r = crate::ops::test_util::values(&[5], 0);
        // 1 + -1 = 0 passes the gradient; -3 + 1 < 0 does not.
        assert_eq!(g.get(&a).unwrap().to_vec1::<f32>().unwrap()[0], r[0]);
        assert_eq!(g.get(&a).unwrap().to_vec1::<f32>().unwrap()[2], 0.0);
    }

    #[test]
    fn an_untracked_branch_gets_no_gradient() {
        let a = random_var(&[2, 4], 1);
        let b = crate::ops::test_util::random(&[2, 4], 2);
        let g = grads_of(&add_relu(&a, &b).unwrap(), 3);
        assert!(g.get(&a).is_some());
        assert!(g.get(&b).is_none());
    }

    #[test]
    fn rejects_branches_of_different_shapes() {
        let a = crate::ops::test_util::random(&[2, 4], 1);
        let b = crate::ops::test_util::random(&[4, 2], 2);
        let err = add_relu(&a, &b).unwrap_err().to_string();
        assert!(
            err.contains("add-relu: branches of shapes [2, 4] and [4, 2]"),
            "{err}"
        );
    }
}
