//! The candle network built from an [`Arch`]: seeded initialisation, forward pass with our own
//! dropout masks, and safetensors save/load.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::arch::{Arch, ArchError, Dims, Layer};
use crate::ops::Pooling;

/// Errors building, running or loading a network.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The architecture is invalid.
    #[error(transparent)]
    Arch(#[from] ArchError),
    /// A candle operation failed.
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
    /// A weights file lacks a tensor or has the wrong shape.
    #[error("{path}: tensor `{name}`: {problem}")]
    Weights {
        /// The safetensors file.
        path: String,
        /// Tensor name.
        name: String,
        /// What is wrong.
        problem: String,
    },
}

/// Weight and bias of one conv or dense layer.
#[derive(Debug, Clone)]
pub struct Params {
    /// Conv `[out_ch, in_ch, k, k]` or dense `[out_dim, in_dim]`.
    pub weight: Var,
    /// `[out]`.
    pub bias: Var,
}

/// Whether a forward pass trains (dropout active, masks from the given RNG) or evaluates.
pub enum Mode<'r> {
    /// Training: dropout masks drawn from this generator.
    Train(&'r mut ChaCha8Rng),
    /// Evaluation: dropout is the identity.
    Eval,
}

/// A trainable network.
#[derive(Debug, Clone)]
pub struct Net {
    /// The description it was built from.
    pub arch: Arch,
    /// One entry per layer: `Some` for conv and dense layers.
    pub params: Vec<Option<Params>>,
    /// Input shape of every layer.
    pub inputs: Vec<Dims>,
}

fn param_name(index: usize, which: &str) -> String {
    format!("layer{index}.{which}")
}

impl Net {
    /// A network with PyTorch's default initialisation (uniform in `±1/sqrt(fan_in)` for
    /// weights and biases), drawn from a ChaCha8 generator seeded with `seed`.
    pub fn new(arch: &Arch, seed: u64, device: &Device) -> Result<Self, NetError> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let shapes = arch.shapes()?;
        let inputs: Vec<Dims> = std::iter::once(arch.input)
            .chain(shapes.iter().copied())
            .take(arch.layers.len())
            .collect();
        let mut params = Vec::with_capacity(arch.layers.len());
        for (layer, input) in arch.layers.iter().zip(&inputs) {
            let p = match (layer, input) {
                (Layer::Conv2d { out_ch, kernel, .. }, Dims::Image { c, .. }) => Some(init(
                    &mut rng,
                    &[*out_ch, *c, *kernel, *kernel],
                    c * kernel * kernel,
                    device,
                )?),
                (Layer::Dense { out_dim }, d) => {
                    Some(init(&mut rng, &[*out_dim, d.len()], d.len(), device)?)
                }
                _ => None,
            };
            params.push(p);
        }
        Ok(Self {
            arch: arch.clone(),
            params,
            inputs,
        })
    }

    /// All trainable variables, for the optimiser.
    pub fn vars(&self) -> Vec<Var> {
        self.params
            .iter()
            .flatten()
            .flat_map(|p| [p.weight.clone(), p.bias.clone()])
            .collect()
    }

    /// Logits `[batch, classes]` for a batch `[batch, c, h, w]` of normalised images.
    ///
    /// Every conv layer followed by ReLU (and then, if so, by a pooling layer) runs as one
    /// fused [`crate::ops::conv_block`]; the values are those of [`Net::forward_trace`]'s last
    /// output, bit for bit.
    pub fn forward(&self, x: &Tensor, mut mode: Mode<'_>) -> Result<Tensor, NetError> {
        let layers = &self.arch.layers;
        let mut cur = x.clone();
        let mut i = 0;
        while let Some(&layer) = layers.get(i) {
            if let (
                Layer::Conv2d {
                    stride, padding, ..
                },
                Some(Layer::Relu),
                Some(p),
            ) = (layer, layers.get(i + 1), &self.params[i])
            {
                let pool = match layers.get(i + 2) {
                    Some(&Layer::MaxPool2d { kernel, stride }) => {
                        Some(Pooling::Max { kernel, stride })
                    }
                    Some(&Layer::AvgPool2d { kernel, stride }) => {
                        Some(Pooling::Avg { kernel, stride })
                    }
                    _ => None,
                };
                cur = crate::ops::conv_block(&cur, &p.weight, &p.bias, stride, padding, pool)?;
                i += if pool.is_some() { 3 } else { 2 };
                continue;
            }
            cur = self.layer(i, &cur, &mut mode)?;
            i += 1;
        }
        Ok(cur)
    }

    /// The output of every layer, in order (the last one is the logits), each layer run on its
    /// own (no fusion), for calibration and inspection.
    pub fn forward_trace(&self, x: &Tensor, mut mode: Mode<'_>) -> Result<Vec<Tensor>, NetError> {
        let mut outs: Vec<Tensor> = Vec::with_capacity(self.arch.layers.len());
        for i in 0..self.arch.layers.len() {
            let next = self.layer(i, outs.last().unwrap_or(x), &mut mode)?;
            outs.push(next);
        }
        Ok(outs)
    }

    /// Layer `i` applied to `cur`.
    fn layer(&self, i: usize, cur: &Tensor, mode: &mut Mode<'_>) -> Result<Tensor, NetError> {
        let layer = self.arch.layers[i];
        Ok(match (layer, &self.params[i]) {
            (
                Layer::Conv2d {
                    stride, padding, ..
                },
                Some(p),
            ) => crate::ops::conv2d(cur, &p.weight, Some(&p.bias), stride, padding)?,
            (Layer::Dense { .. }, Some(p)) => cur.matmul(&p.weight.t()?)?.broadcast_add(&p.bias)?,
            (Layer::Relu, _) => cur.relu()?,
            (Layer::MaxPool2d { kernel, stride }, _) => {
                crate::ops::max_pool2d(cur, kernel, stride)?
            }
            (Layer::AvgPool2d { kernel, stride }, _) => {
                crate::ops::avg_pool2d(cur, kernel, stride)?
            }
            (Layer::Flatten, _) => cur.flatten_from(1)?,
            (Layer::Dropout { p }, _) => match mode {
                Mode::Train(rng) => dropout(cur, p, rng)?,
                Mode::Eval => cur.clone(),
            },
            (Layer::Conv2d { .. } | Layer::Dense { .. }, None) => {
                unreachable!("Net::new gives every conv and dense layer its parameters")
            }
        })
    }

    /// Saves the float weights as safetensors (`layer{i}.weight`, `layer{i}.bias`).
    pub fn save(&self, path: &Path) -> Result<(), NetError> {
        let mut map: HashMap<String, Tensor> = HashMap::new();
        for (i, p) in self.params.iter().enumerate() {
            if let Some(p) = p {
                map.insert(param_name(i, "weight"), p.weight.as_tensor().clone());
                map.insert(param_name(i, "bias"), p.bias.as_tensor().clone());
            }
        }
        candle_core::safetensors::save(&map, path)?;
        Ok(())
    }

    /// Loads float weights saved by [`Net::save`] into a network of `arch`.
    pub fn load(arch: &Arch, path: &Path, device: &Device) -> Result<Self, NetError> {
        let mut net = Self::new(arch, 0, device)?;
        let tensors =
            candle_core::safetensors::load(path, device).map_err(|e| NetError::Weights {
                path: path.display().to_string(),
                name: "*".into(),
                problem: e.to_string(),
            })?;
        for (i, p) in net.params.iter_mut().enumerate() {
            if let Some(p) = p {
                for (which, var) in [("weight", &mut p.weight), ("bias", &mut p.bias)] {
                    let name = param_name(i, which);
                    let bad = |problem: String| NetError::Weights {
                        path: path.display().to_string(),
                        name: name.clone(),
                        problem,
                    };
                    let t = tensors.get(&name).ok_or_else(|| bad("missing".into()))?;
                    if t.dims() != var.dims() {
                        return Err(bad(format!(
                            "shape {:?}, expected {:?}",
                            t.dims(),
                            var.dims()
                        )));
                    }
                    *var = Var::from_tensor(&t.to_dtype(DType::F32)?)?;
                }
            }
        }
        Ok(net)
    }
}

fn init(
    rng: &mut ChaCha8Rng,
    shape: &[usize],
    fan_in: usize,
    device: &Device,
) -> Result<Params, NetError> {
    let bound = 1.0 / (fan_in as f32).sqrt();
    let mut uniform =
        |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-bound..bound)).collect() };
    let n: usize = shape.iter().product();
    let weight = Var::from_tensor(&Tensor::from_vec(uniform(n), shape, device)?)?;
    let bias = Var::from_tensor(&Tensor::from_vec(uniform(shape[0]), shape[0], device)?)?;
    Ok(Params { weight, bias })
}

/// Inverted dropout: zero each element with probability `p`, scale the rest by `1/(1-p)`.
/// The mask comes from `rng`, so a seeded run is reproducible.
fn dropout(x: &Tensor, p: f32, rng: &mut ChaCha8Rng) -> Result<Tensor, NetError> {
    let keep = 1.0 / (1.0 - p);
    let mask: Vec<f32> = (0..x.elem_count())
        .map(|_| if rng.random::<f32>() < p { 0.0 } else { keep })
        .collect();
    Ok(x.mul(&Tensor::from_vec(mask, x.shape(), x.device())?)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch;

    #[test]
    fn same_seed_same_weights() {
        let dev = Device::Cpu;
        let a = Net::new(&arch::s3_lenet_base(), 7, &dev).unwrap();
        let b = Net::new(&arch::s3_lenet_base(), 7, &dev).unwrap();
        let c = Net::new(&arch::s3_lenet_base(), 8, &dev).unwrap();
        let flat = |n: &Net| -> Vec<f32> {
            n.vars()[0]
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        };
        assert_eq!(flat(&a), flat(&b));
        assert_ne!(flat(&a), flat(&c));
    }

    #[test]
    fn forward_gives_logits_per_image() {
        let dev = Device::Cpu;
        for arch in arch::deployable() {
            let net = Net::new(&arch, 1, &dev).unwrap();
            let x = Tensor::zeros((3, 1, 28, 28), DType::F32, &dev).unwrap();
            let mut rng = ChaCha8Rng::seed_from_u64(0);
            let y = net.forward(&x, Mode::Train(&mut rng)).unwrap();
            assert_eq!(y.dims(), &[3, 10], "{}", arch.id);
        }
    }

    #[test]
    fn fused_forward_equals_the_layer_by_layer_trace() {
        // `forward` fuses conv + ReLU + pool; `forward_trace` runs each layer alone. Same
        // logits, bit for bit, in both modes (the same dropout masks from the same seed).
        let dev = Device::Cpu;
        for arch in arch::deployable() {
            let net = Net::new(&arch, 5, &dev).unwrap();
            let mut rng = ChaCha8Rng::seed_from_u64(6);
            let v: Vec<f32> = (0..4 * 784)
                .map(|_| rng.random_range(-1.0f32..3.0))
                .collect();
            let x = Tensor::from_vec(v, (4, 1, 28, 28), &dev).unwrap();
            let flat = |t: &Tensor| -> Vec<f32> { t.flatten_all().unwrap().to_vec1().unwrap() };
            let fused = net.forward(&x, Mode::Eval).unwrap();
            let trace = net.forward_trace(&x, Mode::Eval).unwrap();
            assert_eq!(
                flat(&fused),
                flat(trace.last().unwrap()),
                "{} eval",
                arch.id
            );
            let (mut r1, mut r2) = (ChaCha8Rng::seed_from_u64(7), ChaCha8Rng::seed_from_u64(7));
            let fused = net.forward(&x, Mode::Train(&mut r1)).unwrap();
            let trace = net.forward_trace(&x, Mode::Train(&mut r2)).unwrap();
            assert_eq!(
                flat(&fused),
                flat(trace.last().unwrap()),
                "{} train",
                arch.id
            );
        }
    }

    #[test]
    fn dropout_keeps_expectation_and_zeroes_about_p() {
        let dev = Device::Cpu;
        let x = Tensor::ones(10_000, DType::F32, &dev).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let y: Vec<f32> = dropout(&x, 0.25, &mut rng).unwrap().to_vec1().unwrap();
        let zeros = y.iter().filter(|&&v| v == 0.0).count();
        assert!((2300..2700).contains(&zeros), "{zeros}");
        assert!(y.iter().all(|&v| v == 0.0 || (v - 4.0 / 3.0).abs() < 1e-6));
    }

    #[test]
    fn save_load_round_trip() {
        let dev = Device::Cpu;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let a = Net::new(&arch::s5_ann(), 5, &dev).unwrap();
        a.save(&path).unwrap();
        let b = Net::load(&arch::s5_ann(), &path, &dev).unwrap();
        for (x, y) in a.vars().iter().zip(b.vars()) {
            let x: Vec<f32> = x.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
            let y: Vec<f32> = y.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
            assert_eq!(x, y);
        }
        let err = Net::load(&arch::s5_cnn(), &path, &dev)
            .unwrap_err()
            .to_string();
        assert!(err.contains("layer0"), "{err}");
    }
}
