//! Host-side trainer for the Fashion-MNIST reference models.
//!
//! Pipeline: [`data`] (the `fashion-mnist` crate) loads the dataset, [`arch`] describes each
//! network as data (a list of [`layers`]), [`net`] builds it in candle, [`train`] fits it,
//! [`quantize`] calibrates it and [`lower`] turns it into an int8 infer-core model, and
//! [`export`] writes and verifies the files; [`pipeline`] runs those steps for one model, into
//! the run folder; [`publish`] copies finished runs into `models/`. The reports, metrics and
//! the int8 evaluation loop live in the `model-report` crate, shared with `firmware-sim`, which
//! does not link candle.

pub mod arch;
pub mod centring;
pub mod checkpoint;
pub mod explore;
pub mod export;
pub mod forest;
pub mod layers;
pub mod logit_range;
pub mod lower;
pub mod model_pages;
pub mod net;
pub mod ops;
pub mod optim;
pub mod pipeline;
pub mod progress;
pub mod provenance;
pub mod publish;
pub mod quantize;
pub mod study;
pub mod study_charts;
pub mod train;
pub mod zoo;

pub use fashion_mnist as data;
