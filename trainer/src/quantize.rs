//! Post-training int8 quantisation (TensorFlow Lite Micro's integer scheme): activation
//! statistics of the float network on calibration images, the candidate ways to turn them
//! into ranges, and the quantisation of weights, biases and activations. [`crate::lower`]
//! uses them to write the int8 model: weights per output channel and symmetric, activations
//! asymmetric, biases int32, requantisation multipliers derived with
//! [`infer_core::quant::channel_multiplier`] from the stored f32 scales.

use candle_core::{Device, Tensor};
use infer_core::format::{EncodeError, QParams};

use fashion_mnist::{PIXEL_ZERO, Split, pixel_scale};

use crate::lower::{LowerError, Ranges};
use crate::net::{Mode, Net, NetError};
use crate::train::images_tensor;

/// The trace point name of the network input.
pub const INPUT: &str = "input";

/// Errors while quantising.
#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    /// Running the float network failed.
    #[error(transparent)]
    Net(#[from] NetError),
    /// A candle operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// The network has no int8 lowering.
    #[error(transparent)]
    Lower(#[from] LowerError),
    /// Serialising the model failed.
    #[error("encoding the model: {0}")]
    Encode(#[from] EncodeError),
    /// No calibration images were given.
    #[error("calibration needs at least one image")]
    NoCalibrationImages,
}

/// How activation ranges are chosen from calibration statistics.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum RangeMethod {
    /// The observed minimum and maximum.
    MinMax,
    /// The `p`-th and `(100 - p)`-th percentiles of the observed values (`p` in (50, 100]),
    /// clipping rare outliers for a finer scale.
    Percentile(f64),
    /// Per layer, the clipping range (a fraction of the observed one) whose int8 quantisation
    /// has the smallest mean squared error over the observed values.
    Mse,
}

impl std::fmt::Display for RangeMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::MinMax => write!(f, "min/max"),
            Self::Percentile(p) => write!(f, "percentile {p}"),
            Self::Mse => write!(f, "min MSE"),
        }
    }
}

/// The candidates export tries, best chosen by float/int8 agreement on held-out training images.
pub const RANGE_CANDIDATES: [RangeMethod; 5] = [
    RangeMethod::MinMax,
    RangeMethod::Mse,
    RangeMethod::Percentile(99.999),
    RangeMethod::Percentile(99.99),
    RangeMethod::Percentile(99.9),
];

/// At most this many values per layer are kept for percentiles (an even subsample).
const MAX_SAMPLES_PER_LAYER: usize = 1 << 22;

/// Activation values of every arch layer's output over the calibration images, subsampled
/// evenly to at most 2^22 (`MAX_SAMPLES_PER_LAYER`) per layer, plus exact minima and maxima.
///
/// The logits (the last layer) get a range of their own, chosen by [`crate::logit_range`]
/// for the calibration images' argmax to survive int8 rounding.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivationStats {
    /// The trace points (layer paths) in the order the forward pass reached them.
    paths: Vec<String>,
    samples: Vec<Vec<f32>>,
    min_max: Vec<(f32, f32)>,
    /// The logits' range from [`crate::logit_range::choose`], if it found a proper one.
    logit_range: Option<(f32, f32)>,
    /// Mean per channel (images) or per feature (flat) of the network input (index 0) and of
    /// every trace point's output (index `l + 1`).
    means: Vec<Vec<f64>>,
}

impl ActivationStats {
    /// Runs the float network over `images` and records every layer's outputs.
    pub fn collect(net: &Net, images: &Split, batch: usize) -> Result<Self, QuantizeError> {
        if images.is_empty() {
            return Err(QuantizeError::NoCalibrationImages);
        }
        let mut paths: Vec<String> = Vec::new();
        let mut stride: Vec<usize> = Vec::new();
        let mut samples: Vec<Vec<f32>> = Vec::new();
        let mut min_max: Vec<(f32, f32)> = Vec::new();
        let mut logit_rows: Vec<Vec<f32>> = Vec::with_capacity(images.len());
        let mut sums: Vec<Vec<f64>> = Vec::new();
        let mut counts: Vec<usize> = Vec::new();
        let all: Vec<usize> = (0..images.len()).collect();
        for idx in all.chunks(batch.max(1)) {
            let x = images_tensor(images, idx, None, &Device::Cpu)?;
            let trace = net.forward_trace(&x, Mode::Eval)?;
            if paths.is_empty() {
                paths = trace.iter().map(|(p, _)| p.clone()).collect();
                stride = trace
                    .iter()
                    .map(|(_, t)| {
                        let per_image = t.elem_count() / idx.len().max(1);
                        (per_image * images.len())
                            .div_ceil(MAX_SAMPLES_PER_LAYER)
                            .max(1)
                    })
                    .collect();
                samples = vec![Vec::new(); paths.len()];
                min_max = vec![(f32::INFINITY, f32::NEG_INFINITY); paths.len()];
                sums = vec![Vec::new(); paths.len() + 1];
                counts = vec![0; paths.len() + 1];
            }
            let outs: Vec<&Tensor> = trace.iter().map(|(_, t)| t).collect();
            for (l, t) in std::iter::once(&x).chain(outs.iter().copied()).enumerate() {
                let (sum, count) = channel_sums(t)?;
                if sums[l].is_empty() {
                    sums[l] = vec![0.0; sum.len()];
                }
                sums[l].iter_mut().zip(sum).for_each(|(a, b)| *a += b);
                counts[l] += count;
            }
            if let Some(logits) = outs.last() {
                logit_rows.extend(logits.to_vec2::<f32>()?);
            }
            for (l, out) in outs.iter().enumerate() {
                let values = to_vec(out)?;
                for &v in &values {
                    min_max[l] = (min_max[l].0.min(v), min_max[l].1.max(v));
                }
                samples[l].extend(values.iter().step_by(stride[l]));
            }
        }
        let means = sums
            .into_iter()
            .zip(counts)
            .map(|(sum, n)| sum.into_iter().map(|v| v / n.max(1) as f64).collect())
            .collect();
        Ok(Self {
            paths,
            samples,
            min_max,
            logit_range: crate::logit_range::choose(&logit_rows),
            means,
        })
    }

    /// Mean per channel or feature of the tensor at trace point `path` ([`INPUT`] for the
    /// network input); empty for an unknown path.
    pub fn means(&self, path: &str) -> &[f64] {
        let index = if path == INPUT {
            Some(0)
        } else {
            self.paths.iter().position(|p| p == path).map(|l| l + 1)
        };
        index
            .and_then(|i| self.means.get(i))
            .map_or(&[], Vec::as_slice)
    }

    /// The trace points (layer paths) in the order the forward pass reached them.
    pub fn paths(&self) -> &[String] {
        &self.paths
    }

    /// The `(low, high)` range of every trace point's output under `method`, by path; the
    /// logits take the range [`crate::logit_range::choose`] found, if any.
    pub fn ranges(&self, method: RangeMethod) -> Ranges {
        let mut ranges = self.ranges_of_all_layers(method);
        if let Some(last) = ranges.last_mut() {
            if let Some(range) = self.logit_range {
                *last = range;
            }
        }
        self.paths.iter().cloned().zip(ranges).collect()
    }

    fn ranges_of_all_layers(&self, method: RangeMethod) -> Vec<(f32, f32)> {
        match method {
            RangeMethod::MinMax => self.min_max.clone(),
            RangeMethod::Percentile(p) => self
                .samples
                .iter()
                .map(|values| {
                    let mut v = values.clone();
                    (percentile(&mut v, 100.0 - p), percentile(&mut v, p))
                })
                .collect(),
            RangeMethod::Mse => self
                .samples
                .iter()
                .zip(&self.min_max)
                .map(|(values, &(lo, hi))| min_mse_range(values, lo, hi))
                .collect(),
        }
    }
}

/// Per-channel (rank 4, `[b, c, h, w]`) or per-feature (rank 2) sums of `t`, and how many
/// values each sum adds.
fn channel_sums(t: &Tensor) -> Result<(Vec<f64>, usize), QuantizeError> {
    let dims = t.dims().to_vec();
    let (sum, count) = if let [b, _, h, w] = dims[..] {
        (t.sum((0, 2, 3))?, b * h * w)
    } else {
        (t.sum(0)?, dims.first().copied().unwrap_or(0))
    };
    let sum: Vec<f32> = sum.flatten_all()?.to_vec1()?;
    Ok((sum.into_iter().map(f64::from).collect(), count))
}

/// Bias correction (Nagel et al. 2019, "Data-Free Quantization", sec. 4.2): the weight
/// rounding error `e = dequant(q(w)) - w` shifts each output's mean by `sum(e * E[x])`; subtract
/// that from the bias. `input_means` holds `E[x]` per input channel (conv, every kernel tap of a
/// channel shares it; padding is ignored) or per input feature (dense).
pub fn corrected_bias(
    weights: &[f32],
    quantized: &[u8],
    scales: &[f32],
    bias: &[f32],
    input_means: &[f64],
) -> Vec<f32> {
    let per_out = weights.len() / bias.len().max(1);
    let per_in = per_out / input_means.len().max(1);
    bias.iter()
        .enumerate()
        .map(|(o, &b)| {
            let shift: f64 = (0..per_out)
                .map(|k| {
                    let i = o * per_out + k;
                    let q = f64::from(i8::from_le_bytes([quantized[i]]));
                    let err = q * f64::from(scales[o]) - f64::from(weights[i]);
                    err * input_means.get(k / per_in.max(1)).copied().unwrap_or(0.0)
                })
                .sum();
            #[allow(clippy::cast_possible_truncation)] // biases are f32 like the weights
            let corrected = (f64::from(b) - shift) as f32;
            corrected
        })
        .collect()
}

/// Mean squared error of quantising `values` with `q`.
fn quantization_mse(values: &[f32], q: QParams) -> f64 {
    let err: f64 = values
        .iter()
        .map(|&v| {
            let level = (f64::from(v) / f64::from(q.scale)).round() + f64::from(q.zero_point);
            let back = (level.clamp(-128.0, 127.0) - f64::from(q.zero_point)) * f64::from(q.scale);
            (back - f64::from(v)).powi(2)
        })
        .sum();
    err / values.len().max(1) as f64
}

/// The range `[lo * f, hi * f]`, `f` in 1.0, 0.98, ..., 0.30, with the smallest
/// [`quantization_mse`] over `values`.
fn min_mse_range(values: &[f32], lo: f32, hi: f32) -> (f32, f32) {
    (0..=35)
        .map(|i| 1.0 - 0.02 * i as f32)
        .map(|f| (lo * f, hi * f))
        .min_by(|a, b| {
            let ea = quantization_mse(values, activation_qparams(a.0, a.1));
            let eb = quantization_mse(values, activation_qparams(b.0, b.1));
            ea.total_cmp(&eb)
        })
        .unwrap_or((lo, hi))
}

/// The `p`-th percentile (nearest rank) of `values`, reordering them; 0 for an empty slice.
fn percentile(values: &mut [f32], p: f64) -> f32 {
    if values.is_empty() {
        return 0.0;
    }
    let last = values.len() - 1;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // in [0, last]
    let rank = ((p / 100.0) * last as f64).round().clamp(0.0, last as f64) as usize;
    *values.select_nth_unstable_by(rank, f32::total_cmp).1
}

/// Asymmetric int8 parameters covering `[min, max]` (widened to include 0).
pub fn activation_qparams(min: f32, max: f32) -> QParams {
    let (min, max) = (f64::from(min.min(0.0)), f64::from(max.max(0.0)));
    let scale = if max > min { (max - min) / 255.0 } else { 1.0 };
    #[allow(clippy::cast_possible_truncation)] // scales are stored as f32
    let scale = scale as f32;
    let zp = (-128.0 - min / f64::from(scale))
        .round()
        .clamp(-128.0, 127.0);
    QParams {
        scale,
        #[allow(clippy::cast_possible_truncation)] // clamped to [-128, 127] above
        zero_point: zp as i32,
    }
}

/// The int8 input parameters: raw pixels enter as `q = pixel - 128`, which represents
/// `(pixel - PIXEL_ZERO) * pixel_scale()` exactly when the zero point is `PIXEL_ZERO - 128`.
pub fn input_qparams() -> QParams {
    QParams {
        scale: pixel_scale(),
        zero_point: PIXEL_ZERO - 128,
    }
}

/// Per-channel symmetric int8 weights: `(weights as i8 bytes, f32 scales)`, channel-major.
pub fn quantize_weights(weights: &[f32], out_ch: usize) -> (Vec<u8>, Vec<f32>) {
    let per = weights.len() / out_ch.max(1);
    let mut q = Vec::with_capacity(weights.len());
    let mut scales = Vec::with_capacity(out_ch);
    for row in weights.chunks(per.max(1)) {
        let absmax = row.iter().fold(0.0f32, |m, w| m.max(w.abs()));
        let scale = if absmax > 0.0 { absmax / 127.0 } else { 1.0 };
        for &w in row {
            #[allow(clippy::cast_possible_truncation)] // clamped to [-127, 127]
            let v = (w / scale).round().clamp(-127.0, 127.0) as i8;
            q.push(v.to_le_bytes()[0]);
        }
        scales.push(scale);
    }
    (q, scales)
}

/// Int32 bias at scale `input_scale * weight_scale`, rounded half away from zero, saturated.
pub fn quantize_bias(bias: f32, input_scale: f32, weight_scale: f32) -> i32 {
    let v = (f64::from(bias) / (f64::from(input_scale) * f64::from(weight_scale))).round();
    #[allow(clippy::cast_possible_truncation)] // clamped to the i32 range
    let v = v.clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32;
    v
}

fn to_vec(t: &Tensor) -> Result<Vec<f32>, QuantizeError> {
    Ok(t.flatten_all()?.to_vec1()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_params_cover_the_range() {
        let q = activation_qparams(0.0, 2.55);
        assert_eq!(q.zero_point, -128);
        assert!((q.scale - 0.01).abs() < 1e-7);
        let q = activation_qparams(-1.0, 1.0);
        // zero point: -128 + 1/(2/255) = -0.5 -> rounds away from zero to -1
        assert_eq!(q.zero_point, -1);
        // all-positive range is widened to include 0
        assert_eq!(activation_qparams(1.0, 2.0).zero_point, -128);
    }

    #[test]
    fn weights_quantise_per_channel_with_bounded_error() {
        let w = [0.5f32, -0.25, 0.1, 0.0, 0.02, -0.04];
        let (q, s) = quantize_weights(&w, 2);
        let q: Vec<i8> = q.iter().map(|&b| i8::from_le_bytes([b])).collect();
        assert_eq!(q[0], 127);
        assert_eq!(q[5], -127);
        for (i, (&qv, &wv)) in q.iter().zip(&w).enumerate() {
            let back = f32::from(qv) * s[i / 3];
            assert!((back - wv).abs() <= s[i / 3] / 2.0 + 1e-9, "{i}");
        }
    }

    #[test]
    fn bias_rounds_and_saturates() {
        assert_eq!(quantize_bias(1.0, 0.5, 0.25), 8);
        assert_eq!(quantize_bias(-0.3125, 0.5, 0.25), -3); // -2.5 -> -3 (half away from zero)
        assert_eq!(quantize_bias(1e30, 1e-10, 1e-10), i32::MAX);
    }

    #[test]
    fn bias_correction_removes_the_mean_rounding_error() {
        // One output, two inputs with means 2 and -1; weights 0.5 and 0.26 quantise (scale
        // 0.5/127) to 127 and 66 -> 0.25984..., error +0.00000 and -0.00016 per unit input.
        let w = [0.5f32, 0.26];
        let (q, s) = quantize_weights(&w, 1);
        let b = corrected_bias(&w, &q, &s, &[1.0], &[2.0, -1.0]);
        let err1 = f64::from(i8::from_le_bytes([q[1]])) * f64::from(s[0]) - 0.26;
        let expected = 1.0 + err1; // 1 - (0 * 2 + err1 * -1)
        assert!(
            (f64::from(b[0]) - expected).abs() < 1e-6,
            "{b:?} {expected}"
        );
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut v: Vec<f32> = (0..=100).rev().map(|i| i as f32).collect();
        assert_eq!(percentile(&mut v, 99.0), 99.0);
        assert_eq!(percentile(&mut v, 1.0), 1.0);
        assert_eq!(percentile(&mut v, 100.0), 100.0);
        assert_eq!(percentile(&mut [], 50.0), 0.0);
    }

    #[test]
    fn input_mapping_is_exact() {
        let q = input_qparams();
        for pixel in [0u8, 73, 128, 255] {
            let int8 = i32::from(pixel) - 128;
            let real = (int8 - q.zero_point) as f32 * q.scale;
            assert!((real - fashion_mnist::normalise(pixel)).abs() < 1e-6);
        }
    }
}
