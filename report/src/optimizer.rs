//! The optimizers of the reference studies as recorded settings: which rule and its
//! hyper-parameters (PyTorch's `torch.optim` names and defaults), and the step learning-rate
//! schedule. The trainer implements the update rules (`trainer::optim`); a model's report records
//! the settings it was trained with.

use serde::{Deserialize, Serialize};

/// An optimizer and its hyper-parameters (PyTorch's names; the constructors give PyTorch's
/// defaults).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum OptimizerConfig {
    /// `torch.optim.SGD`.
    Sgd {
        /// Learning rate.
        lr: f64,
        /// Momentum factor (0: none).
        momentum: f64,
        /// Dampening of the momentum's new gradient.
        dampening: f64,
        /// L2 penalty added to the gradient.
        weight_decay: f64,
        /// Nesterov momentum.
        nesterov: bool,
    },
    /// `torch.optim.Adam` (L2 weight decay added to the gradient).
    Adam {
        /// Learning rate.
        lr: f64,
        /// Decay of the first moment.
        beta1: f64,
        /// Decay of the second moment.
        beta2: f64,
        /// Added to the denominator.
        eps: f64,
        /// L2 penalty added to the gradient.
        weight_decay: f64,
    },
    /// `torch.optim.AdamW` (decoupled weight decay).
    AdamW {
        /// Learning rate.
        lr: f64,
        /// Decay of the first moment.
        beta1: f64,
        /// Decay of the second moment.
        beta2: f64,
        /// Added to the denominator.
        eps: f64,
        /// Decoupled weight decay: `p *= 1 - lr * weight_decay` each step.
        weight_decay: f64,
    },
    /// `torch.optim.RMSprop`.
    RmsProp {
        /// Learning rate.
        lr: f64,
        /// Decay of the running mean of squared gradients.
        alpha: f64,
        /// Added to the denominator.
        eps: f64,
        /// L2 penalty added to the gradient.
        weight_decay: f64,
        /// Momentum factor (0: none).
        momentum: f64,
        /// Normalise by the variance (the running mean of squares minus the squared running
        /// mean) instead of the running mean of squares.
        centered: bool,
    },
    /// `torch.optim.Adagrad`.
    Adagrad {
        /// Learning rate.
        lr: f64,
        /// Learning-rate decay: step `t` uses `lr / (1 + (t - 1) * lr_decay)`.
        lr_decay: f64,
        /// L2 penalty added to the gradient.
        weight_decay: f64,
        /// Starting value of the sum of squared gradients.
        initial_accumulator_value: f64,
        /// Added to the denominator.
        eps: f64,
    },
    /// `torch.optim.Adadelta`.
    Adadelta {
        /// Scale of the update.
        lr: f64,
        /// Decay of the running averages.
        rho: f64,
        /// Added inside the square roots.
        eps: f64,
        /// L2 penalty added to the gradient.
        weight_decay: f64,
    },
    /// `torch.optim.Adamax`.
    Adamax {
        /// Learning rate.
        lr: f64,
        /// Decay of the first moment.
        beta1: f64,
        /// Decay of the infinity norm.
        beta2: f64,
        /// Added to the infinity norm.
        eps: f64,
        /// L2 penalty added to the gradient.
        weight_decay: f64,
    },
    /// `torch.optim.NAdam` (Adam with Nesterov momentum and a momentum schedule).
    NAdam {
        /// Learning rate.
        lr: f64,
        /// Decay of the first moment.
        beta1: f64,
        /// Decay of the second moment.
        beta2: f64,
        /// Added to the denominator.
        eps: f64,
        /// L2 penalty added to the gradient.
        weight_decay: f64,
        /// Momentum schedule: `mu_t = beta1 * (1 - 0.5 * 0.96^(t * momentum_decay))`.
        momentum_decay: f64,
    },
}

impl OptimizerConfig {
    /// SGD with PyTorch's defaults (no momentum, no weight decay).
    pub fn sgd(lr: f64) -> Self {
        Self::Sgd {
            lr,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        }
    }

    /// Adam with PyTorch's defaults (lr 1e-3, betas 0.9/0.999, eps 1e-8).
    pub fn adam() -> Self {
        Self::Adam {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }

    /// AdamW with PyTorch's defaults (Adam's, weight decay 1e-2).
    pub fn adamw() -> Self {
        Self::AdamW {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 1e-2,
        }
    }

    /// RMSprop with PyTorch's defaults (lr 1e-2, alpha 0.99, eps 1e-8).
    pub fn rmsprop() -> Self {
        Self::RmsProp {
            lr: 1e-2,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum: 0.0,
            centered: false,
        }
    }

    /// Adagrad with PyTorch's defaults (lr 1e-2, eps 1e-10).
    pub fn adagrad() -> Self {
        Self::Adagrad {
            lr: 1e-2,
            lr_decay: 0.0,
            weight_decay: 0.0,
            initial_accumulator_value: 0.0,
            eps: 1e-10,
        }
    }

    /// Adadelta with PyTorch's defaults (lr 1.0, rho 0.9, eps 1e-6).
    pub fn adadelta() -> Self {
        Self::Adadelta {
            lr: 1.0,
            rho: 0.9,
            eps: 1e-6,
            weight_decay: 0.0,
        }
    }

    /// Adamax with PyTorch's defaults (lr 2e-3, betas 0.9/0.999, eps 1e-8).
    pub fn adamax() -> Self {
        Self::Adamax {
            lr: 2e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }

    /// NAdam with PyTorch's defaults (lr 2e-3, betas 0.9/0.999, eps 1e-8, momentum decay
    /// 4e-3).
    pub fn nadam() -> Self {
        Self::NAdam {
            lr: 2e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum_decay: 4e-3,
        }
    }

    /// The same optimizer with learning rate `lr`.
    pub fn with_lr(mut self, lr: f64) -> Self {
        self.set_lr(lr);
        self
    }

    /// PyTorch's class name in lower case (`sgd`, `adam`, `adamw`, `rmsprop`, `adagrad`,
    /// `adadelta`, `adamax`, `nadam`): what `--optimizer` takes.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Sgd { .. } => "sgd",
            Self::Adam { .. } => "adam",
            Self::AdamW { .. } => "adamw",
            Self::RmsProp { .. } => "rmsprop",
            Self::Adagrad { .. } => "adagrad",
            Self::Adadelta { .. } => "adadelta",
            Self::Adamax { .. } => "adamax",
            Self::NAdam { .. } => "nadam",
        }
    }

    /// Every optimizer with PyTorch's defaults (SGD with lr 0.01), in [`Self::name`] order.
    pub fn defaults() -> [Self; 8] {
        [
            Self::sgd(1e-2),
            Self::adam(),
            Self::adamw(),
            Self::rmsprop(),
            Self::adagrad(),
            Self::adadelta(),
            Self::adamax(),
            Self::nadam(),
        ]
    }

    /// The optimizer called `name` (see [`Self::name`]) with PyTorch's defaults.
    pub fn by_name(name: &str) -> Option<Self> {
        Self::defaults()
            .into_iter()
            .find(|o| o.name() == name.to_ascii_lowercase())
    }

    /// The learning rate.
    pub fn lr(&self) -> f64 {
        *self.clone().lr_mut()
    }

    /// Changes the learning rate.
    pub fn set_lr(&mut self, new: f64) {
        *self.lr_mut() = new;
    }

    fn lr_mut(&mut self) -> &mut f64 {
        match self {
            Self::Sgd { lr, .. }
            | Self::Adam { lr, .. }
            | Self::AdamW { lr, .. }
            | Self::RmsProp { lr, .. }
            | Self::Adagrad { lr, .. }
            | Self::Adadelta { lr, .. }
            | Self::Adamax { lr, .. }
            | Self::NAdam { lr, .. } => lr,
        }
    }
}

/// PyTorch's `StepLR`: the learning rate is multiplied by `gamma` every `step_size` epochs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepLr {
    /// Epochs between decays.
    pub step_size: usize,
    /// Factor applied at each decay.
    pub gamma: f64,
}

impl StepLr {
    /// The learning rate of (0-based) `epoch` for a base rate `lr`:
    /// `lr * gamma^(epoch / step_size)`.
    pub fn lr(&self, lr: f64, epoch: usize) -> f64 {
        let decays = epoch.checked_div(self.step_size).unwrap_or(0);
        lr * self.gamma.powi(i32::try_from(decays).unwrap_or(i32::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for o in OptimizerConfig::defaults() {
            assert_eq!(OptimizerConfig::by_name(o.name()), Some(o));
        }
        assert_eq!(
            OptimizerConfig::by_name("NAdam"),
            Some(OptimizerConfig::nadam())
        );
        assert_eq!(OptimizerConfig::by_name("lbfgs"), None);
    }

    #[test]
    fn with_lr_keeps_the_rest() {
        let o = OptimizerConfig::adam().with_lr(5e-3);
        assert_eq!(o.lr(), 5e-3);
        assert_eq!(o.with_lr(1e-3), OptimizerConfig::adam());
    }
}
