//! A training run's checkpoint: everything needed to continue it to the same result as an
//! uninterrupted run. One safetensors file, written atomically: the network's tensors
//! (`net/<path>`), the optimizer's state tensors (`optim/<parameter>/<slot>`), the current
//! epoch's image order (`order`), and the rest as JSON in the file's metadata (`checkpoint`):
//! id, options, progress, the generator's state, the history so far.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use model_report::{EpochStats, TrainOptions};

use crate::optim::OptimState;

/// Why a checkpoint could not be written, read or used.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file could not be written or read.
    #[error("checkpoint {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a checkpoint this build can read.
    #[error("checkpoint {path}: {problem}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The checkpoint is of another run.
    #[error(
        "checkpoint {path} is of a run with other settings ({problem}); delete it or run without --resume"
    )]
    OtherRun {
        /// The file.
        path: PathBuf,
        /// What differs.
        problem: String,
    },
}

/// How far a run got within its current epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Partial {
    /// Batches of the epoch done.
    pub batches: usize,
    /// Sum of their mean losses.
    pub loss_sum: f64,
    /// Correct predictions so far.
    pub correct: usize,
    /// Images seen so far.
    pub seen: usize,
    /// Training seconds so far.
    pub seconds: f64,
}

/// The JSON part of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Model id.
    pub id: String,
    /// The run's options; a resumed run must have the same.
    pub options: TrainOptions,
    /// Epochs completed.
    pub epochs_done: usize,
    /// Progress in the epoch after them (all zero at an epoch boundary).
    pub partial: Partial,
    /// The shuffling, dropout and augmentation generator.
    pub rng: ChaCha8Rng,
    /// Optimizer steps taken.
    pub optim_step: u32,
    /// NAdam's momentum product, as its bits (exact through JSON).
    pub optim_mu_product_bits: u64,
    /// Statistics of the completed epochs.
    pub history: Vec<EpochStats>,
}

/// A whole checkpoint in memory.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// Progress, options and generator.
    pub progress: Progress,
    /// The network's tensors by path.
    pub weights: HashMap<String, Tensor>,
    /// The optimizer's state.
    pub optim: OptimState,
    /// The image order of the current epoch (empty at an epoch boundary).
    pub order: Vec<u32>,
}

const META_KEY: &str = "checkpoint";

impl Checkpoint {
    /// Writes the checkpoint to `path` atomically.
    pub fn save(&self, path: &Path) -> Result<(), CheckpointError> {
        let invalid = |problem: String| CheckpointError::Invalid {
            path: path.to_path_buf(),
            problem,
        };
        let mut tensors: Vec<(String, Tensor)> = self
            .weights
            .iter()
            .map(|(k, v)| (format!("net/{k}"), v.clone()))
            .collect();
        for ((i, k), t) in &self.optim.tensors {
            tensors.push((format!("optim/{i}/{k}"), t.clone()));
        }
        let order =
            Tensor::new(self.order.as_slice(), &Device::Cpu).map_err(|e| invalid(e.to_string()))?;
        tensors.push(("order".into(), order));
        let meta = Progress {
            optim_step: self.optim.step,
            optim_mu_product_bits: self.optim.mu_product.to_bits(),
            ..self.progress.clone()
        };
        let json = serde_json::to_string(&meta).map_err(|e| invalid(e.to_string()))?;
        let info = HashMap::from([(META_KEY.to_string(), json)]);
        let bytes =
            safetensors::serialize(tensors.iter().map(|(k, t)| (k.as_str(), t)), Some(info))
                .map_err(|e| invalid(e.to_string()))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| CheckpointError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        model_report::atomic::write(path, &bytes).map_err(|source| CheckpointError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Reads a checkpoint written by [`Self::save`].
    pub fn load(path: &Path) -> Result<Self, CheckpointError> {
        let invalid = |problem: String| CheckpointError::Invalid {
            path: path.to_path_buf(),
            problem,
        };
        let bytes = std::fs::read(path).map_err(|source| CheckpointError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let (_, header) =
            safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| invalid(e.to_string()))?;
        let json = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get(META_KEY))
            .ok_or_else(|| invalid("no checkpoint metadata".into()))?;
        let progress: Progress = serde_json::from_str(json).map_err(|e| invalid(e.to_string()))?;
        let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
            .map_err(|e| invalid(e.to_string()))?;
        let mut weights = HashMap::new();
        let mut optim = Vec::new();
        let mut order = Vec::new();
        for (name, t) in tensors {
            if let Some(k) = name.strip_prefix("net/") {
                weights.insert(k.to_string(), t);
            } else if let Some(rest) = name.strip_prefix("optim/") {
                let (i, k) = rest
                    .split_once('/')
                    .and_then(|(i, k)| Some((i.parse().ok()?, k.parse().ok()?)))
                    .ok_or_else(|| invalid(format!("bad tensor name {name}")))?;
                optim.push(((i, k), t));
            } else if name == "order" {
                order = t.to_vec1().map_err(|e| invalid(e.to_string()))?;
            } else {
                return Err(invalid(format!("unexpected tensor {name}")));
            }
        }
        optim.sort_by_key(|(ik, _)| *ik);
        Ok(Self {
            optim: OptimState {
                step: progress.optim_step,
                mu_product: f64::from_bits(progress.optim_mu_product_bits),
                tensors: optim,
            },
            progress,
            weights,
            order,
        })
    }

    /// Checks that this checkpoint continues the run of `id` with `options`.
    pub fn check_matches(
        &self,
        path: &Path,
        id: &str,
        options: &TrainOptions,
    ) -> Result<(), CheckpointError> {
        let other = |problem: String| CheckpointError::OtherRun {
            path: path.to_path_buf(),
            problem,
        };
        if self.progress.id != id {
            return Err(other(format!("model {}, not {id}", self.progress.id)));
        }
        let (a, b) = (&self.progress.options, options);
        // More epochs may be asked of a finished run; everything else must agree.
        let same = TrainOptions {
            epochs: b.epochs,
            ..*a
        } == *b;
        if !same {
            return Err(other(format!(
                "recorded {}, asked {}",
                serde_json::to_string(a).unwrap_or_default(),
                serde_json::to_string(b).unwrap_or_default()
            )));
        }
        if self.progress.epochs_done > b.epochs {
            return Err(other(format!(
                "{} epochs already done, {} asked",
                self.progress.epochs_done, b.epochs
            )));
        }
        Ok(())
    }
}
