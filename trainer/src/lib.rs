//! Host-side trainer for the Fashion-MNIST reference models.
//!
//! Pipeline: [`data`] loads the dataset, [`arch`] describes each network as data, [`net`] builds
//! it in candle, [`train`] fits it, [`metrics`] scores it, [`quantize`] turns it into an int8
//! infer-core model, [`export`] writes the files and [`report`] the JSON and tables.

pub mod arch;
pub mod data;
pub mod export;
pub mod metrics;
pub mod net;
pub mod ops;
pub mod quantize;
pub mod report;
pub mod train;
