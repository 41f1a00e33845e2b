//! Logit centring: subtracting from every logit of an image the same amount, a linear function
//! of the final dense layer's input, folded into that layer's weights and bias.
//!
//! The argmax and the softmax of a row of logits do not change when one number is subtracted
//! from all of them, so the float network's predictions and probabilities stay exactly what
//! they were. What changes is where the logits lie. Int8 logits share one scale: a network
//! whose logits spread widely (a confident top-1 of 60 here, of 5 there) needs a coarse step to
//! cover its competing logits, and images whose top two are closer than a step tie. Centring
//! fits `g(h) = c . h + e`, by least squares over calibration images, to the mean of each
//! image's top two logits; the logits minus `g(h)` put every image's contest near zero, so
//! [`crate::logit_range`] can give them a much finer step. Folding: the final layer
//! `y = W h + b` becomes `y' = (W - 1 c^T) h + (b - e)`.
//!
//! On the feed-forward models whose int8 logits tied most (S3's AlexNet base and LeNet tuned,
//! S1's MLP), the logits' rounding alone cost over 1% agreement before centring.
//! Export tries both and keeps the better on held-out training images
//! ([`crate::export::quantize_best`]).

use candle_core::{Device, Tensor};
use fashion_mnist::Split;

use crate::layers::Layer;
use crate::net::{Mode, Net, NetError};
use crate::train::images_tensor;

/// At most this many input features of the final layer enter the fit; a wider final layer is
/// fitted on its logits instead (`g` a linear function of them, which is one of `h` too).
pub const MAX_FEATURES: usize = 1024;

/// Ridge added to the normal equations' diagonal, relative to its mean, so the fit is defined
/// when features are constant (dead ReLUs) or outnumber the images.
const RIDGE: f64 = 1e-4;

/// The fitted shift `g(h) = weight . h + bias` of the final dense layer `layer`.
#[derive(Debug, Clone, PartialEq)]
pub struct Centring {
    /// Path of the final dense layer.
    pub layer: String,
    /// `c`, one entry per input feature of the layer.
    pub weight: Vec<f32>,
    /// `e`.
    pub bias: f32,
}

impl Centring {
    /// Fits the shift on `images` (calibration images), or `None` when the network does not
    /// end in a dense layer or there are no images.
    ///
    /// # Errors
    ///
    /// If the float network fails.
    pub fn fit(net: &Net, images: &Split, batch: usize) -> Result<Option<Self>, NetError> {
        let last = net.arch.layers.len().saturating_sub(1);
        if !matches!(net.arch.layers.last(), Some(Layer::Dense(_))) || images.is_empty() {
            return Ok(None);
        }
        let layer = last.to_string();
        let params = net.store.at(&layer);
        let w = params.get("weight")?.as_tensor().to_vec2::<f32>()?;
        let b = params.get("bias")?.as_tensor().to_vec1::<f32>()?;
        let in_dim = w.first().map_or(0, Vec::len);
        let on_logits = in_dim > MAX_FEATURES;
        let mut normal = Normal::new(if on_logits { b.len() } else { in_dim });
        let all: Vec<usize> = (0..images.len()).collect();
        for idx in all.chunks(batch.max(1)) {
            let x = images_tensor(images, idx, None, &Device::Cpu)?;
            let trace = net.forward_trace(&x, Mode::Eval)?;
            let logits = match trace.last() {
                Some((_, t)) => t.to_vec2::<f32>()?,
                None => return Ok(None),
            };
            let features = if on_logits {
                logits.clone()
            } else {
                let h: &Tensor = trace.len().checked_sub(2).map_or(&x, |i| &trace[i].1);
                h.flatten_from(1)?.to_vec2::<f32>()?
            };
            for (z, row) in features.iter().zip(&logits) {
                normal.add(z, mid_top_two(row));
            }
        }
        let Some(u) = normal.solve() else {
            return Ok(None);
        };
        let (coef, offset) = u.split_at(u.len() - 1);
        let offset = offset.first().copied().unwrap_or(0.0);
        // On the logits, g = u . (W h + b) + v = (W^T u) . h + (u . b + v).
        let (weight, bias) = if on_logits {
            let weight = (0..in_dim)
                .map(|k| {
                    w.iter()
                        .zip(coef)
                        .map(|(row, &a)| f64::from(row[k]) * a)
                        .sum()
                })
                .collect();
            let bias = coef
                .iter()
                .zip(&b)
                .map(|(&a, &v)| a * f64::from(v))
                .sum::<f64>()
                + offset;
            (weight, bias)
        } else {
            (coef.to_vec(), offset)
        };
        #[allow(clippy::cast_possible_truncation)] // weights are f32
        Ok(Some(Self {
            layer,
            weight: weight.into_iter().map(|v: f64| v as f32).collect(),
            bias: bias as f32,
        }))
    }

    /// A copy of `net` whose final layer outputs the centred logits.
    ///
    /// # Errors
    ///
    /// If `net` has no such layer or its shape differs from the fit's.
    pub fn apply(&self, net: &Net) -> Result<Net, NetError> {
        let device = Device::Cpu;
        let mut tensors: std::collections::HashMap<String, Tensor> =
            net.tensors().into_iter().collect();
        let (wname, bname) = (
            format!("{}.weight", self.layer),
            format!("{}.bias", self.layer),
        );
        let bad = |name: &str, problem: &str| NetError::Weights {
            path: "logit centring".into(),
            name: name.to_string(),
            problem: problem.to_string(),
        };
        let w = tensors.get(&wname).ok_or_else(|| bad(&wname, "missing"))?;
        let b = tensors.get(&bname).ok_or_else(|| bad(&bname, "missing"))?;
        if w.dims().get(1) != Some(&self.weight.len()) {
            return Err(bad(&wname, "input width differs from the fit's"));
        }
        let c = Tensor::from_slice(&self.weight, (1, self.weight.len()), &device)?;
        let w = w.broadcast_sub(&c)?;
        let b = (b - f64::from(self.bias))?;
        tensors.insert(wname, w);
        tensors.insert(bname, b);
        let centred = Net::new(&net.arch, 0, &device)?;
        centred.set_tensors(&tensors, "logit centring")?;
        Ok(centred)
    }
}

/// The mean of the two largest values of `row` (the single value of a one-element row).
fn mid_top_two(row: &[f32]) -> f64 {
    let (a, b) = crate::logit_range::top_two(row);
    if b.is_finite() {
        (f64::from(a) + f64::from(b)) / 2.0
    } else {
        f64::from(a)
    }
}

/// Normal equations `(Z^T Z) u = Z^T t` of a least-squares fit with an intercept (the last
/// unknown).
struct Normal {
    n: usize,
    /// `(n + 1) x (n + 1)`, row-major.
    gram: Vec<f64>,
    rhs: Vec<f64>,
    rows: usize,
}

impl Normal {
    fn new(features: usize) -> Self {
        let n = features + 1;
        Self {
            n,
            gram: vec![0.0; n * n],
            rhs: vec![0.0; n],
            rows: 0,
        }
    }

    fn add(&mut self, features: &[f32], target: f64) {
        let z: Vec<f64> = features
            .iter()
            .map(|&v| f64::from(v))
            .chain([1.0])
            .collect();
        for (i, &zi) in z.iter().enumerate() {
            if zi == 0.0 {
                continue; // ReLU outputs are mostly zeros
            }
            let row = &mut self.gram[i * self.n..(i + 1) * self.n];
            row.iter_mut().zip(&z).for_each(|(g, &zj)| *g += zi * zj);
            self.rhs[i] += zi * target;
        }
        self.rows += 1;
    }

    /// The ridge-regularised solution, or `None` without rows or if it is not finite.
    fn solve(mut self) -> Option<Vec<f64>> {
        if self.rows == 0 {
            return None;
        }
        let n = self.n;
        #[allow(clippy::cast_precision_loss)] // n is at most MAX_FEATURES + 1
        let mean_diag = (0..n).map(|i| self.gram[i * n + i]).sum::<f64>() / n as f64;
        let ridge = RIDGE * mean_diag.max(f64::MIN_POSITIVE);
        for i in 0..n - 1 {
            self.gram[i * n + i] += ridge; // the intercept is not shrunk
        }
        let u = cholesky_solve(&mut self.gram, &mut self.rhs, n)?;
        u.iter().all(|v| v.is_finite()).then_some(u)
    }
}

/// Solves `A x = y` for a symmetric positive definite `A` (`n x n`, row-major) by Cholesky
/// factorisation in place; `None` if `A` is not positive definite.
fn cholesky_solve(a: &mut [f64], y: &mut [f64], n: usize) -> Option<Vec<f64>> {
    for j in 0..n {
        let d = a[j * n + j] - (0..j).map(|k| a[j * n + k].powi(2)).sum::<f64>();
        if d <= 0.0 {
            return None;
        }
        let d = d.sqrt();
        a[j * n + j] = d;
        for i in j + 1..n {
            let s = a[i * n + j] - (0..j).map(|k| a[i * n + k] * a[j * n + k]).sum::<f64>();
            a[i * n + j] = s / d;
        }
    }
    // L z = y, then L^T x = z.
    for i in 0..n {
        let s = y[i] - (0..i).map(|k| a[i * n + k] * y[k]).sum::<f64>();
        y[i] = s / a[i * n + i];
    }
    for i in (0..n).rev() {
        let s = y[i] - (i + 1..n).map(|k| a[k * n + i] * y[k]).sum::<f64>();
        y[i] = s / a[i * n + i];
    }
    Some(y.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::{Arch, build};

    #[test]
    fn cholesky_solves_a_small_system() {
        // [[4, 2], [2, 3]] x = [2, 1] -> x = [0.5, 0]
        let mut a = vec![4.0, 2.0, 2.0, 3.0];
        let mut y = vec![2.0, 1.0];
        let x = cholesky_solve(&mut a, &mut y, 2).expect("positive definite");
        assert!((x[0] - 0.5).abs() < 1e-12 && x[1].abs() < 1e-12, "{x:?}");
        let mut singular = vec![1.0, 1.0, 1.0, 1.0];
        assert_eq!(cholesky_solve(&mut singular, &mut [1.0, 1.0], 2), None);
    }

    #[test]
    fn the_fit_recovers_an_exact_linear_target() {
        // t = 2 z0 - z1 + 3 over points that span the plane.
        let mut normal = Normal::new(2);
        for (z0, z1) in [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (2.0, 3.0), (-1.0, 4.0)] {
            normal.add(&[z0, z1], 2.0 * f64::from(z0) - f64::from(z1) + 3.0);
        }
        let u = normal.solve().expect("a solution");
        for (got, want) in u.iter().zip([2.0, -1.0, 3.0]) {
            assert!((got - want).abs() < 1e-3, "{u:?}");
        }
    }

    /// The largest absolute difference between two tensors of one shape.
    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .and_then(|d| d.abs())
            .and_then(|d| d.max_all())
            .and_then(|d| d.to_scalar::<f32>())
            .expect("same shapes")
    }

    fn images(n: usize) -> Split {
        let images: Vec<u8> = (0..n * fashion_mnist::PIXELS)
            .map(|i| u8::try_from((i * 37 + i / 700) % 256).unwrap_or(0))
            .collect();
        Split {
            images,
            labels: vec![0; n],
        }
    }

    #[test]
    fn centring_keeps_every_argmax_and_softmax_and_narrows_the_contest() {
        let arch = Arch::custom("centring-test", build::MNIST_INPUT, build::mlp(&[32, 10]));
        let net = Net::new(&arch, 7, &Device::Cpu).expect("a network");
        let calib = images(64);
        let centring = Centring::fit(&net, &calib, 16)
            .expect("the fit runs")
            .expect("the network ends in a dense layer");
        assert_eq!(centring.weight.len(), 32);
        let centred = centring.apply(&net).expect("applies");
        let x = images_tensor(&calib, &(0..64).collect::<Vec<_>>(), None, &Device::Cpu)
            .expect("a batch");
        let before = net.forward(&x, Mode::Eval).expect("forward");
        let after = centred.forward(&x, Mode::Eval).expect("forward");
        let p0 = candle_nn::ops::softmax_last_dim(&before).expect("softmax");
        let p1 = candle_nn::ops::softmax_last_dim(&after).expect("softmax");
        let diff = max_abs_diff(&p0, &p1);
        assert!(diff < 1e-5, "softmax moved by {diff}");
        let spread = |t: &Tensor| -> f64 {
            let rows = t.to_vec2::<f32>().expect("rows");
            let mids: Vec<f64> = rows.iter().map(|r| mid_top_two(r)).collect();
            let mean = mids.iter().sum::<f64>() / mids.len() as f64;
            mids.iter().map(|m| (m - mean).powi(2)).sum::<f64>() / mids.len() as f64
        };
        assert!(
            spread(&after) < spread(&before) * 0.5 + 1e-9,
            "{} vs {}",
            spread(&after),
            spread(&before)
        );
        // The original network is untouched.
        let again = net.forward(&x, Mode::Eval).expect("forward");
        let same = max_abs_diff(&again, &before);
        assert_eq!(same, 0.0);
    }

    #[test]
    fn a_network_not_ending_in_dense_is_not_centred() {
        let layers = vec![build::FLATTEN, build::dense(10), build::RELU];
        let arch = Arch::custom("centring-none", build::MNIST_INPUT, layers);
        let net = Net::new(&arch, 7, &Device::Cpu).expect("a network");
        assert_eq!(Centring::fit(&net, &images(4), 4).expect("runs"), None);
    }
}
