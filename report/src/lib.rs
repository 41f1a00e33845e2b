//! The pipeline's records and how they are scored, without any training code:
//!
//! - [`schema`]: the per-model JSON report, `models/<id>.json` ([`ModelReport`] and its parts),
//!   read and written in one place;
//! - [`atomic`]: writing a file through a temporary and a rename (every output file);
//! - [`model_set`]: replacing a model's `.fmq`, `.json` and `.safetensors` as one verified set,
//!   and recovering from an interrupted replacement;
//! - [`forest`]: the random forests' record, `models/forests/<id>.json` ([`ForestReport`]);
//! - [`metrics`]: accuracy, macro precision/recall/F1, per-class accuracy, confusion;
//! - [`eval`]: the host int8 evaluation loop (an infer-core model over a Fashion-MNIST split);
//! - [`markdown`]: the generated README sections and the results table;
//! - [`output`]: standard output of the command-line tools, quiet on a closed pipe.
//! - [`inspect`]: what a model file holds and costs, as `trainer inspect` and
//!   `firmware-sim inspect` print it.
//!
//! The trainer writes the `float` and `int8` records, `firmware-sim device` the `firmware`
//! record; both go through [`ModelReport::write`], so a report read and written back is
//! unchanged byte for byte.

pub mod atomic;
pub mod eval;
pub mod forest;
pub mod inspect;
pub mod markdown;
pub mod metrics;
pub mod model_set;
pub mod optimizer;
pub mod output;
pub mod schema;

pub use eval::{HOST_MAX_OPS, Int8Eval, evaluate_int8, evaluate_int8_any, evaluate_int8_parallel};
pub use forest::{ForestOptions, ForestReport};
pub use markdown::{Section, summary_table};
pub use metrics::{Metrics, agreement};
pub use schema::{
    COMMITTED_MODEL_LIMIT, EpochStats, FirmwareReport, FloatReport, InstructionCounts, Int8Report,
    ModelReport, Provenance, ReportError, TrainOptions,
};
