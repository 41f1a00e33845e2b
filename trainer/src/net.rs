//! The candle network built from an [`Arch`]: its tensors by path, seeded initialisation, the
//! forward pass (with our fused conv blocks) and the per-layer trace, and safetensors
//! save/load.
//!
//! Every tensor is named by its layer's path, as candle's `VarBuilder` and PyTorch's
//! `nn.Sequential` name them: `3.weight` for the weight of layer 3, `2.body.0.weight` for a
//! layer inside a residual block.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::arch::{Arch, ArchError};
use crate::layers::{Init, Layer};

/// Errors building, running or loading a network.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The architecture is invalid.
    #[error(transparent)]
    Arch(#[from] ArchError),
    /// A candle operation failed.
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
    /// A layer asked for a tensor the network does not have.
    #[error("no tensor `{0}` in the network")]
    MissingParam(String),
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

/// Whether a forward pass trains (dropout active with masks from the given generator,
/// BatchNorm on batch statistics) or evaluates.
pub enum Mode<'r> {
    /// Training: dropout masks drawn from this generator.
    Train(&'r mut ChaCha8Rng),
    /// Evaluation: dropout is the identity, BatchNorm uses its running statistics.
    Eval,
}

impl Mode<'_> {
    /// Whether this is training.
    pub fn is_train(&self) -> bool {
        matches!(self, Self::Train(_))
    }
}

/// The output of every layer (by path, nested layers included) in the order they ran.
pub type Trace = Vec<(String, Tensor)>;

/// The state of one forward pass: the mode, and the trace when one is recorded.
pub struct Forward<'m, 'r> {
    /// Training or evaluation.
    pub mode: Mode<'r>,
    trace: Option<&'m mut Trace>,
}

impl<'r> Forward<'_, 'r> {
    /// A pass that records nothing.
    pub fn new(mode: Mode<'r>) -> Self {
        Self { mode, trace: None }
    }
}

/// Every tensor of a network by path, and which of them the optimiser trains.
#[derive(Debug, Clone, Default)]
pub struct Store {
    vars: BTreeMap<String, Var>,
    frozen: Vec<String>,
}

impl Store {
    /// The view of the tensors under `path`.
    pub fn at<'s>(&'s self, path: &str) -> Params<'s> {
        Params {
            store: self,
            path: path.to_string(),
        }
    }
}

/// The tensors of one layer: its path in a [`Store`].
pub struct Params<'s> {
    store: &'s Store,
    path: String,
}

impl<'s> Params<'s> {
    /// The layer's path, e.g. `3` or `2.body.0`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The layer's tensor `name`.
    pub fn get(&self, name: &str) -> Result<&'s Var, NetError> {
        let key = format!("{}.{name}", self.path);
        self.store.vars.get(&key).ok_or(NetError::MissingParam(key))
    }

    /// The view of a sub-layer, `<path>.<sub>`.
    pub fn sub(&self, sub: &str) -> Params<'s> {
        self.store.at(&format!("{}.{sub}", self.path))
    }

    /// The whole store.
    pub fn store(&self) -> &'s Store {
        self.store
    }
}

/// A trainable network.
#[derive(Debug, Clone)]
pub struct Net {
    /// The description it was built from.
    pub arch: Arch,
    /// Its tensors.
    pub store: Store,
}

/// Creates the tensors of `layers` (inputs from `input`) under `prefix`, in order.
pub(crate) fn init_layers(
    store: &mut Store,
    layers: &[Layer],
    input: infer_core::spec::TensorShape,
    prefix: &str,
    rng: &mut ChaCha8Rng,
    device: &Device,
) -> Result<(), NetError> {
    let mut cur = input;
    for (i, layer) in layers.iter().enumerate() {
        let path = join(prefix, &i.to_string());
        for spec in layer.params(cur) {
            let n: usize = spec.shape.iter().product();
            let data: Vec<f32> = match spec.init {
                Init::Uniform(bound) => (0..n).map(|_| rng.random_range(-bound..bound)).collect(),
                Init::Fill(v) => vec![v; n],
                Init::UniformPatched {
                    bound,
                    start,
                    len,
                    value,
                } => {
                    let mut v: Vec<f32> = (0..n).map(|_| rng.random_range(-bound..bound)).collect();
                    v.iter_mut().skip(start).take(len).for_each(|x| *x = value);
                    v
                }
            };
            let name = format!("{path}.{}", spec.name);
            let var = Var::from_tensor(&Tensor::from_vec(data, spec.shape.as_slice(), device)?)?;
            if !spec.trainable {
                store.frozen.push(name.clone());
            }
            store.vars.insert(name, var);
        }
        cur = layer.output(cur).ok_or_else(|| ArchError::BadInput {
            path: path.clone(),
            layer: layer.clone(),
            input: cur,
        })?;
    }
    Ok(())
}

/// `prefix.name`, or `name` at the top.
pub(crate) fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// Runs `layers` (named under `prefix`) on `x`. Without a trace, a convolution followed by
/// ReLU (and then, if so, by pooling) runs as one fused [`crate::ops::conv_block`], and in
/// training a convolution followed by BatchNorm (and then maybe ReLU, maybe pooling) as one
/// [`crate::ops::conv_bn_block`], and a residual block followed by ReLU as its branches
/// joined by one [`crate::ops::add_relu`]: bit for bit the values of the layers one by one.
pub(crate) fn run_layers(
    store: &Store,
    layers: &[Layer],
    prefix: &str,
    x: &Tensor,
    cx: &mut Forward<'_, '_>,
) -> Result<Tensor, NetError> {
    let mut cur = x.clone();
    let mut i = 0;
    while let Some(layer) = layers.get(i) {
        let path = join(prefix, &i.to_string());
        let params = store.at(&path);
        if cx.trace.is_none() {
            if let (Layer::Conv2d(conv), Some(Layer::Relu(_))) = (layer, layers.get(i + 1)) {
                let pool = layers.get(i + 2).and_then(|l| l.ops().pooling());
                let (w, b) = (params.get("weight")?, params.get("bias")?);
                // Evaluation asks for no gradient: detached parameters keep the block from
                // storing its activations (and a Winograd convolution's transforms).
                let (w, b) = if cx.mode.is_train() {
                    (w.as_tensor().clone(), b.as_tensor().clone())
                } else {
                    (w.detach(), b.detach())
                };
                cur = crate::ops::conv_block(&cur, &w, &b, conv.stride, conv.padding, pool)?;
                i += if pool.is_some() { 3 } else { 2 };
                continue;
            }
            if let (Layer::Conv2d(conv), Some(Layer::BatchNorm(_))) = (layer, layers.get(i + 1))
                && cx.mode.is_train()
            {
                let relu = matches!(layers.get(i + 2), Some(Layer::Relu(_)));
                let after = i + 2 + usize::from(relu);
                let pool = layers.get(after).and_then(|l| l.ops().pooling());
                let (w, b) = (params.get("weight")?, params.get("bias")?);
                let norm = store.at(&join(prefix, &(i + 1).to_string()));
                let bn = crate::ops::BatchNormArgs {
                    gamma: norm.get("weight")?,
                    beta: norm.get("bias")?,
                    eps: crate::layers::batch_norm::EPS,
                };
                let (y, stats) = crate::ops::conv_bn_block(
                    &cur,
                    w,
                    b,
                    bn,
                    conv.stride,
                    conv.padding,
                    crate::ops::Tail { relu, pool },
                )?;
                crate::layers::batch_norm::follow_batch(&norm, stats.mean, stats.var, stats.count)?;
                cur = y;
                i = after + usize::from(pool.is_some());
                continue;
            }
            if let (Layer::Residual(block), Some(Layer::Relu(_))) = (layer, layers.get(i + 1)) {
                let (body, shortcut) = block.branches(&cur, &params, cx)?;
                cur = crate::ops::add_relu(&body, &shortcut)?;
                i += 2;
                continue;
            }
        }
        cur = layer.ops().forward(&cur, &params, cx)?;
        if let Some(trace) = cx.trace.as_deref_mut() {
            trace.push((path, cur.clone()));
        }
        i += 1;
    }
    Ok(cur)
}

impl Net {
    /// A network with PyTorch's default initialisation (uniform in `±1/sqrt(fan_in)` for
    /// weights and biases), drawn from a ChaCha8 generator seeded with `seed`.
    pub fn new(arch: &Arch, seed: u64, device: &Device) -> Result<Self, NetError> {
        arch.shapes()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut store = Store::default();
        init_layers(&mut store, &arch.layers, arch.input, "", &mut rng, device)?;
        Ok(Self {
            arch: arch.clone(),
            store,
        })
    }

    /// The variables the optimiser trains, in path order.
    pub fn vars(&self) -> Vec<Var> {
        self.store
            .vars
            .iter()
            .filter(|(name, _)| !self.store.frozen.contains(name))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Number of trainable parameters.
    pub fn param_count(&self) -> usize {
        self.vars().iter().map(|v| v.elem_count()).sum()
    }

    /// Logits `[batch, classes]` for a batch `[batch, c, h, w]` of normalised images.
    pub fn forward(&self, x: &Tensor, mode: Mode<'_>) -> Result<Tensor, NetError> {
        run_layers(
            &self.store,
            &self.arch.layers,
            "",
            x,
            &mut Forward::new(mode),
        )
    }

    /// The output of every layer by path, nested layers included, in the order they ran (the
    /// last one is the logits), each layer on its own (no fusion): for calibration.
    pub fn forward_trace(&self, x: &Tensor, mode: Mode<'_>) -> Result<Trace, NetError> {
        let mut trace = Trace::new();
        let mut cx = Forward {
            mode,
            trace: Some(&mut trace),
        };
        run_layers(&self.store, &self.arch.layers, "", x, &mut cx)?;
        Ok(trace)
    }

    /// Every tensor (trained or running statistic) by path.
    pub fn tensors(&self) -> BTreeMap<String, Tensor> {
        self.store
            .vars
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect()
    }

    /// Every tensor's values by path (for comparing networks exactly).
    pub fn tensors_as_vecs(&self) -> Result<BTreeMap<String, Vec<f32>>, NetError> {
        self.store
            .vars
            .iter()
            .map(|(k, v)| Ok((k.clone(), crate::layers::values(v)?)))
            .collect()
    }

    /// Sets every tensor from `tensors` (as [`Self::tensors`] gives them), in place, so an
    /// optimizer over [`Self::vars`] keeps training them; errors name `source`.
    pub fn set_tensors(
        &self,
        tensors: &std::collections::HashMap<String, Tensor>,
        source: &str,
    ) -> Result<(), NetError> {
        for (name, var) in &self.store.vars {
            let bad = |problem: String| NetError::Weights {
                path: source.to_string(),
                name: name.clone(),
                problem,
            };
            let t = tensors.get(name).ok_or_else(|| bad("missing".into()))?;
            if t.dims() != var.dims() {
                return Err(bad(format!(
                    "shape {:?}, expected {:?}",
                    t.dims(),
                    var.dims()
                )));
            }
            var.set(&t.to_dtype(DType::F32)?)?;
        }
        Ok(())
    }

    /// Every tensor as the bytes of a safetensors file, named by path (what [`Net::save`]
    /// writes); `path` only names the file in errors.
    pub fn to_safetensors(&self, path: &Path) -> Result<Vec<u8>, NetError> {
        let tensors = self.tensors();
        safetensors::serialize(tensors.iter().map(|(k, t)| (k.as_str(), t)), None).map_err(|e| {
            NetError::Weights {
                path: path.display().to_string(),
                name: "*".into(),
                problem: e.to_string(),
            }
        })
    }

    /// Saves every tensor as safetensors, named by path.
    pub fn save(&self, path: &Path) -> Result<(), NetError> {
        // Serialised in memory and written atomically (candle's own `save` writes in place,
        // with the 0600 mode of a temporary file).
        let bytes = self.to_safetensors(path)?;
        model_report::atomic::write(path, &bytes).map_err(|e| NetError::Weights {
            path: path.display().to_string(),
            name: "*".into(),
            problem: e.to_string(),
        })
    }

    /// Loads tensors saved by [`Net::save`] into a network of `arch`.
    pub fn load(arch: &Arch, path: &Path, device: &Device) -> Result<Self, NetError> {
        let net = Self::new(arch, 0, device)?;
        let tensors =
            candle_core::safetensors::load(path, device).map_err(|e| NetError::Weights {
                path: path.display().to_string(),
                name: "*".into(),
                problem: e.to_string(),
            })?;
        net.set_tensors(&tensors, &path.display().to_string())?;
        Ok(net)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch;

    #[test]
    fn same_seed_same_weights() {
        let dev = Device::Cpu;
        let a = Net::new(&arch::by_id("s3-lenet-base").unwrap(), 7, &dev).unwrap();
        let b = Net::new(&arch::by_id("s3-lenet-base").unwrap(), 7, &dev).unwrap();
        let c = Net::new(&arch::by_id("s3-lenet-base").unwrap(), 8, &dev).unwrap();
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
        for arch in arch::all() {
            let net = Net::new(&arch, 1, &dev).unwrap();
            let x = Tensor::zeros((3, 1, 28, 28), DType::F32, &dev).unwrap();
            let mut rng = ChaCha8Rng::seed_from_u64(0);
            let y = net.forward(&x, Mode::Train(&mut rng)).unwrap();
            assert_eq!(y.dims(), &[3, 10], "{}", arch.id);
        }
    }

    #[test]
    fn fused_forward_equals_the_layer_by_layer_trace() {
        // `forward` fuses conv + ReLU + pool and a residual block + ReLU; `forward_trace` runs
        // each layer alone. Same logits, bit for bit, in both modes (the same dropout masks
        // from the same seed).
        let dev = Device::Cpu;
        for arch in arch::all() {
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
                flat(&trace.last().unwrap().1),
                "{} eval",
                arch.id
            );
            // Training also fuses conv + BatchNorm + ReLU (+ pool): the same logits and the
            // same running statistics afterwards (two copies of the network, since the
            // statistics move).
            let twin = Net::new(&arch, 5, &dev).unwrap();
            let (mut r1, mut r2) = (ChaCha8Rng::seed_from_u64(7), ChaCha8Rng::seed_from_u64(7));
            let fused = net.forward(&x, Mode::Train(&mut r1)).unwrap();
            let trace = twin.forward_trace(&x, Mode::Train(&mut r2)).unwrap();
            assert_eq!(
                flat(&fused),
                flat(&trace.last().unwrap().1),
                "{} train",
                arch.id
            );
            assert_eq!(
                net.tensors_as_vecs().unwrap(),
                twin.tensors_as_vecs().unwrap(),
                "{} running statistics",
                arch.id
            );
        }
    }

    #[test]
    fn fused_training_gradients_equal_the_layer_by_layer_ones() {
        // The gradients of a loss through the fused ops (`forward`) and through the layers one
        // by one (`forward_trace`), for every network with a fusable conv: bit for bit.
        let dev = Device::Cpu;
        for arch in arch::all() {
            if !arch.layers.iter().any(|l| matches!(l, Layer::Conv2d(_))) {
                continue;
            }
            let (net, twin) = (
                Net::new(&arch, 5, &dev).unwrap(),
                Net::new(&arch, 5, &dev).unwrap(),
            );
            let mut rng = ChaCha8Rng::seed_from_u64(8);
            let (c, h, w) = match arch.input {
                infer_core::spec::TensorShape::Image(s) => (
                    usize::from(s.channels),
                    usize::from(s.height),
                    usize::from(s.width),
                ),
                infer_core::spec::TensorShape::Flat(_) => continue,
            };
            let v: Vec<f32> = (0..3 * c * h * w)
                .map(|_| rng.random_range(-1.0f32..3.0))
                .collect();
            let x = Tensor::from_vec(v, (3, c, h, w), &dev).unwrap();
            let r: Vec<f32> = (0..30).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let r = Tensor::from_vec(r, (3, 10), &dev).unwrap();
            let (mut r1, mut r2) = (ChaCha8Rng::seed_from_u64(9), ChaCha8Rng::seed_from_u64(9));
            let fused = net.forward(&x, Mode::Train(&mut r1)).unwrap();
            let trace = twin.forward_trace(&x, Mode::Train(&mut r2)).unwrap();
            let unfused = &trace.last().unwrap().1;
            let loss = |y: &Tensor| y.mul(&r).unwrap().sum_all().unwrap();
            let (ga, gb) = (
                loss(&fused).backward().unwrap(),
                loss(unfused).backward().unwrap(),
            );
            for ((name, a), (_, b)) in net.store.vars.iter().zip(&twin.store.vars) {
                if net.store.frozen.contains(name) {
                    continue;
                }
                let flat = |g: Option<&Tensor>| -> Vec<f32> {
                    g.unwrap().flatten_all().unwrap().to_vec1().unwrap()
                };
                assert_eq!(
                    flat(ga.get(a.as_tensor())),
                    flat(gb.get(b.as_tensor())),
                    "{}: gradient of {name}",
                    arch.id
                );
            }
        }
    }

    #[test]
    fn parameters_are_named_by_layer_path() {
        let net = Net::new(&arch::by_id("s3-lenet-base").unwrap(), 1, &Device::Cpu).unwrap();
        let names: Vec<&str> = net.store.vars.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "0.bias",
                "0.weight",
                "11.bias",
                "11.weight",
                "3.bias",
                "3.weight",
                "7.bias",
                "7.weight",
                "9.bias",
                "9.weight"
            ]
        );
    }

    #[test]
    fn save_load_round_trip() {
        let dev = Device::Cpu;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let a = Net::new(&arch::by_id("s5-ann").unwrap(), 5, &dev).unwrap();
        a.save(&path).unwrap();
        let b = Net::load(&arch::by_id("s5-ann").unwrap(), &path, &dev).unwrap();
        for (x, y) in a.vars().iter().zip(b.vars()) {
            let x: Vec<f32> = x.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
            let y: Vec<f32> = y.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
            assert_eq!(x, y);
        }
        let err = Net::load(&arch::by_id("s5-cnn").unwrap(), &path, &dev)
            .unwrap_err()
            .to_string();
        assert!(err.contains("tensor `0.bias`: missing"), "{err}");
    }
}
