//! Flatten: an image `[c, h, w]` seen as a vector of `c * h * w` features, channel-major. It
//! moves no data: its output is its input under another shape.

use serde::{Deserialize, Serialize};

use super::{Context, TensorInfo};
use crate::error::Error;
use crate::format::TensorId;

/// Flatten in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FlattenDef {
    /// The input tensor.
    pub input: TensorId,
}

/// A validated flatten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct QFlatten {
    pub(crate) input: TensorId,
}

impl QFlatten {
    /// The input tensor.
    pub fn input(&self) -> TensorId {
        self.input
    }
}

pub(crate) fn prepare(def: &FlattenDef, cx: &Context<'_>) -> Result<(QFlatten, TensorInfo), Error> {
    let input = cx.tensor(def.input)?;
    // An image of more than u32::MAX elements (the format's flat length).
    let shape = input
        .shape
        .flattened()
        .ok_or(cx.too_large(crate::error::Extent::Output))?;
    Ok((
        QFlatten { input: def.input },
        TensorInfo {
            shape,
            qparams: input.qparams,
        },
    ))
}
