//! The optimizers of the reference studies on candle's [`Optimizer`] trait, with PyTorch's
//! `torch.optim` update rules and default hyper-parameters: SGD (momentum, dampening, Nesterov,
//! weight decay), Adam, AdamW, RMSprop (momentum, centred), Adagrad, Adadelta, Adamax and NAdam;
//! and a step learning-rate schedule.
//!
//! Each rule is PyTorch's single-tensor ("for-loop") implementation, operation for operation in
//! `f32` with the scalar coefficients in `f64`, so a run agrees with `torch.optim` to about 1e-6
//! relative (checked against values PyTorch produced: `tests/fixtures/optim.json`, written by
//! `bench/optim_fixture.py`). Adam and AdamW, the zoo's usual optimizers, run as one parallel
//! pass per parameter (`optim/adam.rs`) that computes the same operations bit for bit.

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};
use candle_nn::Optimizer;

pub use model_report::optimizer::{OptimizerConfig, StepLr};

mod adam;

/// One parameter and the optimizer's state for it (up to three tensors, by optimizer: momentum
/// buffer; first and second moments; ...), created on the first step.
#[derive(Debug, Clone)]
struct Slot {
    var: Var,
    state: [Option<Tensor>; 3],
}

/// An optimizer of [`OptimizerConfig`] over a set of variables.
#[derive(Debug, Clone)]
pub struct Optim {
    config: OptimizerConfig,
    slots: Vec<Slot>,
    /// Steps taken.
    step: u32,
    /// NAdam's product of the momentum coefficients so far.
    mu_product: f64,
}

impl Optim {
    /// The hyper-parameters.
    pub fn config(&self) -> OptimizerConfig {
        self.config
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u32 {
        self.step
    }

    /// Everything a checkpoint needs to continue exactly: the step count, NAdam's momentum
    /// product, and each state tensor by `(parameter index, state slot)`.
    pub fn state(&self) -> OptimState {
        let tensors = self
            .slots
            .iter()
            .enumerate()
            .flat_map(|(i, slot)| {
                slot.state
                    .iter()
                    .enumerate()
                    .filter_map(move |(k, t)| t.as_ref().map(|t| ((i, k), t.clone())))
            })
            .collect();
        OptimState {
            step: self.step,
            mu_product: self.mu_product,
            tensors,
        }
    }

    /// Restores a [`Self::state`] taken from an optimizer over the same variables.
    pub fn restore(&mut self, state: OptimState) -> Result<()> {
        for slot in &mut self.slots {
            slot.state = [None, None, None];
        }
        for ((i, k), t) in state.tensors {
            let slot = self.slots.get_mut(i).ok_or_else(|| {
                candle_core::Error::Msg(format!(
                    "optimizer state for parameter {i}: no such parameter"
                ))
            })?;
            if t.dims() != slot.var.dims() {
                return Err(candle_core::Error::Msg(format!(
                    "optimizer state for parameter {i}: shape {:?}, expected {:?}",
                    t.dims(),
                    slot.var.dims()
                )));
            }
            let cell = slot.state.get_mut(k).ok_or_else(|| {
                candle_core::Error::Msg(format!(
                    "optimizer state slot {k} of parameter {i}: no such slot"
                ))
            })?;
            *cell = Some(t);
        }
        self.step = state.step;
        self.mu_product = state.mu_product;
        Ok(())
    }
}

/// An optimizer's state (see [`Optim::state`]).
#[derive(Debug, Clone)]
pub struct OptimState {
    /// Steps taken.
    pub step: u32,
    /// NAdam's product of momentum coefficients.
    pub mu_product: f64,
    /// State tensors by `(parameter index, slot)`.
    pub tensors: Vec<((usize, usize), Tensor)>,
}

/// `state` or, on the first step, `init`.
fn state_or(state: &Option<Tensor>, init: impl FnOnce() -> Result<Tensor>) -> Result<Tensor> {
    match state {
        Some(t) => Ok(t.clone()),
        None => init(),
    }
}

/// The gradient with an L2 penalty: `grad + weight_decay * p` (PyTorch's coupled weight decay).
fn l2(grad: &Tensor, p: &Tensor, weight_decay: f64) -> Result<Tensor> {
    if weight_decay == 0.0 {
        Ok(grad.clone())
    } else {
        grad + (p * weight_decay)?
    }
}

/// A running mean of squares: `decay * old + (1 - decay) * g^2`.
fn mean_square(old: &Tensor, g: &Tensor, decay: f64) -> Result<Tensor> {
    (old * decay)? + (g.sqr()? * (1.0 - decay))?
}

/// `decay * old + (1 - decay) * new`, as `torch.lerp(old, new, 1 - decay)`.
fn ema(old: &Tensor, new: &Tensor, decay: f64) -> Result<Tensor> {
    old + ((new - old)? * (1.0 - decay))?
}

impl Optimizer for Optim {
    type Config = OptimizerConfig;

    fn new(vars: Vec<Var>, config: OptimizerConfig) -> Result<Self> {
        let slots = vars
            .into_iter()
            .filter(|v| v.dtype().is_float())
            .map(|var| Slot {
                var,
                state: [None, None, None],
            })
            .collect();
        Ok(Self {
            config,
            slots,
            step: 0,
            mu_product: 1.0,
        })
    }

    fn learning_rate(&self) -> f64 {
        self.config.lr()
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.config.set_lr(lr);
    }

    fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.step += 1;
        let t = f64::from(self.step);
        // NAdam's momentum schedule is shared by every parameter.
        let (mu, mu_next) = match self.config {
            OptimizerConfig::NAdam {
                beta1,
                momentum_decay,
                ..
            } => {
                let mu = beta1 * (1.0 - 0.5 * 0.96_f64.powf(t * momentum_decay));
                let mu_next = beta1 * (1.0 - 0.5 * 0.96_f64.powf((t + 1.0) * momentum_decay));
                self.mu_product *= mu;
                (mu, mu_next)
            }
            OptimizerConfig::Sgd { .. }
            | OptimizerConfig::Adam { .. }
            | OptimizerConfig::AdamW { .. }
            | OptimizerConfig::RmsProp { .. }
            | OptimizerConfig::Adagrad { .. }
            | OptimizerConfig::Adadelta { .. }
            | OptimizerConfig::Adamax { .. } => (0.0, 0.0),
        };
        let mu_product = self.mu_product;
        for slot in &mut self.slots {
            let Some(grad) = grads.get(slot.var.as_tensor()) else {
                continue;
            };
            // Detached: a gradient can carry the step's graph, and a state tensor kept from it
            // would keep every step's graph alive (8.6 GB after 50 batches of s2-m4b).
            let grad = &grad.detach();
            let p = slot.var.as_tensor().detach();
            let [s0, s1, s2] = &mut slot.state;
            // A new state starts from zeros (made only when needed: a zero-filled tensor per
            // parameter and step was a measurable share of a ResNet step).
            let zeros = || p.zeros_like();
            let new_p = match self.config {
                OptimizerConfig::Sgd {
                    lr,
                    momentum,
                    dampening,
                    weight_decay,
                    nesterov,
                } => {
                    let mut g = l2(grad, &p, weight_decay)?;
                    if momentum != 0.0 {
                        let buf = match s0.as_ref() {
                            None => g.clone(),
                            Some(buf) => ((buf * momentum)? + (&g * (1.0 - dampening))?)?,
                        };
                        g = if nesterov {
                            (g + (&buf * momentum)?)?
                        } else {
                            buf.clone()
                        };
                        *s0 = Some(buf);
                    }
                    (&p - (g * lr)?)?
                }
                OptimizerConfig::Adam {
                    lr,
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                }
                | OptimizerConfig::AdamW {
                    lr,
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                } => {
                    let step = adam::Step {
                        lr,
                        beta1,
                        beta2,
                        eps,
                        weight_decay,
                        decoupled: matches!(self.config, OptimizerConfig::AdamW { .. }),
                        t,
                    };
                    let (new, m, v) = adam::step(&p, grad, s0.as_ref(), s1.as_ref(), step)?;
                    *s0 = Some(m);
                    *s1 = Some(v);
                    new
                }
                OptimizerConfig::RmsProp {
                    lr,
                    alpha,
                    eps,
                    weight_decay,
                    momentum,
                    centered,
                } => {
                    let g = l2(grad, &p, weight_decay)?;
                    let sq = mean_square(&state_or(s0, zeros)?, &g, alpha)?;
                    let avg = if centered {
                        let gavg = ema(&state_or(s1, zeros)?, &g, alpha)?;
                        let avg = (&sq - gavg.sqr()?)?.sqrt()?;
                        *s1 = Some(gavg);
                        avg
                    } else {
                        sq.sqrt()?
                    };
                    let avg = (avg + eps)?;
                    *s0 = Some(sq);
                    if momentum > 0.0 {
                        let buf = ((state_or(s2, zeros)? * momentum)? + g.div(&avg)?)?;
                        let new = (&p - (&buf * lr)?)?;
                        *s2 = Some(buf);
                        new
                    } else {
                        (&p - (g.div(&avg)? * lr)?)?
                    }
                }
                OptimizerConfig::Adagrad {
                    lr,
                    lr_decay,
                    weight_decay,
                    initial_accumulator_value,
                    eps,
                } => {
                    let g = l2(grad, &p, weight_decay)?;
                    let clr = lr / (1.0 + (t - 1.0) * lr_decay);
                    let init = || p.zeros_like()? + initial_accumulator_value;
                    let sum = (state_or(s0, init)? + g.sqr()?)?;
                    let std = (sum.sqrt()? + eps)?;
                    let new = (&p - (g.div(&std)? * clr)?)?;
                    *s0 = Some(sum);
                    new
                }
                OptimizerConfig::Adadelta {
                    lr,
                    rho,
                    eps,
                    weight_decay,
                } => {
                    let g = l2(grad, &p, weight_decay)?;
                    let sq = mean_square(&state_or(s0, zeros)?, &g, rho)?;
                    let std = (&sq + eps)?.sqrt()?;
                    let acc = state_or(s1, zeros)?;
                    let delta = (&acc + eps)?.sqrt()?.div(&std)?.mul(&g)?;
                    let acc = ((acc * rho)? + (delta.sqr()? * (1.0 - rho))?)?;
                    let new = (&p - (delta * lr)?)?;
                    *s0 = Some(sq);
                    *s1 = Some(acc);
                    new
                }
                OptimizerConfig::Adamax {
                    lr,
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                } => {
                    let g = l2(grad, &p, weight_decay)?;
                    let m = ema(&state_or(s0, zeros)?, &g, beta1)?;
                    let inf = (state_or(s1, zeros)? * beta2)?.maximum(&(g.abs()? + eps)?)?;
                    let clr = lr / (1.0 - beta1.powf(t));
                    let new = (&p - (m.div(&inf)? * clr)?)?;
                    *s0 = Some(m);
                    *s1 = Some(inf);
                    new
                }
                OptimizerConfig::NAdam {
                    lr,
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                    ..
                } => {
                    let g = l2(grad, &p, weight_decay)?;
                    let m = ema(&state_or(s0, zeros)?, &g, beta1)?;
                    let v = mean_square(&state_or(s1, zeros)?, &g, beta2)?;
                    let denom = ((&v / (1.0 - beta2.powf(t)))?.sqrt()? + eps)?;
                    let c_grad = lr * (1.0 - mu) / (1.0 - mu_product);
                    let c_avg = lr * mu_next / (1.0 - mu_product * mu_next);
                    let p = (&p - (g.div(&denom)? * c_grad)?)?;
                    let new = (&p - (m.div(&denom)? * c_avg)?)?;
                    *s0 = Some(m);
                    *s1 = Some(v);
                    new
                }
            };
            slot.var.set(&new_p)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;
    use serde::Deserialize;

    use super::*;

    /// One case of the fixture: an optimizer (PyTorch's name and arguments) and the parameters
    /// after each step.
    #[derive(Deserialize)]
    struct Case {
        optimizer: String,
        args: serde_json::Map<String, serde_json::Value>,
        after_step: Vec<Vec<Vec<f32>>>,
    }

    #[derive(Deserialize)]
    struct Fixture {
        steps: usize,
        shapes: Vec<Vec<usize>>,
        start: Vec<Vec<f32>>,
        cases: Vec<Case>,
    }

    /// Our config for PyTorch's optimizer name and arguments: the defaults of that optimizer
    /// (SGD's learning rate is PyTorch's 1e-3) with each argument set on the field of the same
    /// name (`betas` on `beta1` and `beta2`).
    fn config(name: &str, args: &serde_json::Map<String, serde_json::Value>) -> OptimizerConfig {
        let mut defaults = OptimizerConfig::by_name(name).unwrap();
        if name == "sgd" {
            defaults = defaults.with_lr(1e-3);
        }
        // Serialised, a config is `{"Variant": {field: value, ...}}`.
        let mut value = serde_json::to_value(defaults).unwrap();
        let fields = value
            .as_object_mut()
            .and_then(|o| o.values_mut().next())
            .and_then(|v| v.as_object_mut())
            .unwrap();
        for (key, v) in args {
            if key == "betas" {
                fields.insert("beta1".into(), v[0].clone());
                fields.insert("beta2".into(), v[1].clone());
            } else {
                assert!(fields.contains_key(key), "{name}: no field {key}");
                fields.insert(key.clone(), v.clone());
            }
        }
        serde_json::from_value(value).unwrap()
    }

    /// The gradient of step `t` (1-based) for element `i` of tensor `k`, as
    /// `bench/optim_fixture.py` makes it.
    fn grad(k: usize, n: usize, t: usize) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let v = (1.3 * i as f64 + 0.5 * t as f64 + k as f64).cos() * (1.0 + 0.1 * t as f64);
                #[allow(clippy::cast_possible_truncation)] // PyTorch stores them as float32
                let v = v as f32;
                v
            })
            .collect()
    }

    #[test]
    fn every_optimizer_matches_torch_optim() {
        // Expected values: `bench/.venv/bin/python bench/optim_fixture.py` (PyTorch 2.15,
        // torch.optim with foreach=False).
        let fixture: Fixture =
            serde_json::from_str(include_str!("../tests/fixtures/optim.json")).unwrap();
        let dev = Device::Cpu;
        for case in &fixture.cases {
            let cfg = config(&case.optimizer, &case.args);
            let vars: Vec<Var> = fixture
                .start
                .iter()
                .zip(&fixture.shapes)
                .map(|(v, s)| {
                    Var::from_tensor(&Tensor::from_vec(v.clone(), s.as_slice(), &dev).unwrap())
                        .unwrap()
                })
                .collect();
            let mut opt = Optim::new(vars.clone(), cfg).unwrap();
            for t in 1..=fixture.steps {
                // loss = sum(p * g) has gradient g.
                let mut loss = Tensor::new(0f32, &dev).unwrap();
                for (k, v) in vars.iter().enumerate() {
                    let g = Tensor::from_vec(grad(k, v.elem_count(), t), v.shape(), &dev).unwrap();
                    loss = (loss + v.as_tensor().mul(&g).unwrap().sum_all().unwrap()).unwrap();
                }
                opt.backward_step(&loss).unwrap();
                for (k, v) in vars.iter().enumerate() {
                    let got: Vec<f32> = v.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
                    let want = &case.after_step[t - 1][k];
                    for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
                        let tol = 1e-6 * b.abs().max(1e-1);
                        assert!(
                            (a - b).abs() <= tol,
                            "{} {:?} step {t} tensor {k}[{i}]: ours {a}, torch {b}",
                            case.optimizer,
                            case.args
                        );
                    }
                }
            }
        }
    }

    /// Adam and AdamW as candle tensor ops, the formulation `optim/adam.rs` fuses: PyTorch's
    /// single-tensor rule, operation for operation.
    fn adam_by_tensor_ops(
        p: &Tensor,
        grad: &Tensor,
        state: (&Tensor, &Tensor),
        s: adam::Step,
    ) -> (Tensor, Tensor, Tensor) {
        let (lr, wd) = (s.lr, s.weight_decay);
        let (p, g) = if s.decoupled && wd != 0.0 {
            ((p * (1.0 - lr * wd)).unwrap(), grad.clone())
        } else if s.decoupled {
            (p.clone(), grad.clone())
        } else {
            (p.clone(), l2(grad, p, wd).unwrap())
        };
        let m = ema(state.0, &g, s.beta1).unwrap();
        let v = mean_square(state.1, &g, s.beta2).unwrap();
        let step_size = lr / (1.0 - s.beta1.powf(s.t));
        let bc2_sqrt = (1.0 - s.beta2.powf(s.t)).sqrt();
        let denom = ((v.sqrt().unwrap() / bc2_sqrt).unwrap() + s.eps).unwrap();
        let new = (&p - (m.div(&denom).unwrap() * step_size).unwrap()).unwrap();
        (new, m, v)
    }

    fn bits(t: &Tensor) -> Vec<u32> {
        let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        v.iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn fused_adam_equals_the_tensor_ops_bit_for_bit() {
        let dev = Device::Cpu;
        // Enough values for several rayon tasks; zeros of both signs among the gradients and
        // weights, where `+ 0` matters.
        let n = 3 * (1 << 14) + 5;
        let wave = |k: f64| -> Vec<f32> {
            (0..n)
                .map(|i| {
                    #[allow(clippy::cast_possible_truncation)] // test values
                    let v = ((i as f64 * 0.37 + k).sin() * 2.0) as f32;
                    match i % 97 {
                        0 => 0.0,
                        1 => -0.0,
                        _ => v,
                    }
                })
                .collect()
        };
        for (decoupled, weight_decay) in [(false, 0.0), (false, 0.01), (true, 0.0), (true, 0.01)] {
            let mut p = Tensor::from_vec(wave(0.0), (n,), &dev).unwrap();
            let (mut ours, mut theirs) = (None::<(Tensor, Tensor)>, None::<(Tensor, Tensor)>);
            let mut q = p.clone();
            for t in 1..=3 {
                let g = Tensor::from_vec(wave(f64::from(t)), (n,), &dev).unwrap();
                let s = adam::Step {
                    lr: 1e-3,
                    beta1: 0.9,
                    beta2: 0.999,
                    eps: 1e-8,
                    weight_decay,
                    decoupled,
                    t: f64::from(t),
                };
                let (m, v) = ours.as_ref().map(|(m, v)| (m, v)).unzip();
                let (np, nm, nv) = adam::step(&p, &g, m, v, s).unwrap();
                let zeros = q.zeros_like().unwrap();
                let state = theirs.as_ref().map_or((&zeros, &zeros), |(m, v)| (m, v));
                let (nq, tm, tv) = adam_by_tensor_ops(&q, &g, state, s);
                let what = format!("decoupled {decoupled}, weight decay {weight_decay}, step {t}");
                for (name, a, b) in [("parameter", &np, &nq), ("m", &nm, &tm), ("v", &nv, &tv)] {
                    let first = bits(a).iter().zip(bits(b)).position(|(x, y)| *x != y);
                    assert_eq!(first, None, "{name}: first differing value, {what}");
                }
                (p, q) = (np, nq);
                (ours, theirs) = (Some((nm, nv)), Some((tm, tv)));
            }
        }
    }

    #[test]
    fn fused_adam_rejects_a_gradient_of_another_shape() {
        let dev = Device::Cpu;
        let p = Tensor::zeros((2, 3), candle_core::DType::F32, &dev).unwrap();
        let g = Tensor::zeros((3, 2), candle_core::DType::F32, &dev).unwrap();
        let s = adam::Step {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
            t: 1.0,
        };
        let err = adam::step(&p, &g, None, None, s).unwrap_err().to_string();
        assert!(
            err.contains("gradient [3, 2] for a parameter [2, 3]"),
            "{err}"
        );
    }

    #[test]
    fn step_lr_decays_every_step_size_epochs() {
        let s = StepLr {
            step_size: 2,
            gamma: 0.5,
        };
        let lrs: Vec<f64> = (0..5).map(|e| s.lr(0.1, e)).collect();
        assert_eq!(lrs, [0.1, 0.1, 0.05, 0.05, 0.025]);
    }
}
