//! 2-D convolution with bias, square kernel, the same padding on every side.

use candle_core::Tensor;
use infer_core::spec::{Conv2dGeometry, Padding, TensorShape};
use serde::{Deserialize, Serialize};

use super::{LayerOps, ParamSpec, values};
use crate::lower::{Linear, LowerError, Lowerer};
use crate::net::{Forward, NetError, Params};

/// `y = W * x + b` over `[in_ch, h, w]` images; weight `[out_ch, in_ch, kernel, kernel]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conv2d {
    /// Output channels.
    pub out_ch: usize,
    /// Kernel side.
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
    /// Zero padding on each side.
    pub padding: usize,
}

impl Conv2d {
    /// The shared geometry for an input of `in_ch` channels (`None` if a value does not fit
    /// the model format's field).
    pub fn geometry(&self, in_ch: u16) -> Option<Conv2dGeometry> {
        Some(Conv2dGeometry {
            in_ch,
            out_ch: u16::try_from(self.out_ch).ok()?,
            kernel_h: u8::try_from(self.kernel).ok()?,
            kernel_w: u8::try_from(self.kernel).ok()?,
            stride: u8::try_from(self.stride).ok()?,
            padding: Padding::uniform(u8::try_from(self.padding).ok()?),
            groups: 1,
        })
    }
}

impl LayerOps for Conv2d {
    fn output(&self, input: TensorShape) -> Option<TensorShape> {
        self.geometry(input.image()?.channels)?.output(input)
    }

    fn params(&self, input: TensorShape) -> Vec<ParamSpec> {
        let in_ch = input.image().map_or(0, |s| usize::from(s.channels));
        let fan_in = in_ch * self.kernel * self.kernel;
        vec![
            ParamSpec::uniform(
                "weight",
                vec![self.out_ch, in_ch, self.kernel, self.kernel],
                fan_in,
            ),
            ParamSpec::uniform("bias", vec![self.out_ch], fan_in),
        ]
    }

    fn macs(&self, input: TensorShape) -> u64 {
        let (Some(x), Some(y)) = (input.image(), self.output(input).and_then(|o| o.image())) else {
            return 0;
        };
        let per_output = u64::from(x.channels) * (self.kernel * self.kernel) as u64;
        u64::from(y.channels) * u64::from(y.height) * u64::from(y.width) * per_output
    }

    fn forward(
        &self,
        x: &Tensor,
        params: &Params<'_>,
        _cx: &mut Forward<'_, '_>,
    ) -> Result<Tensor, NetError> {
        let (w, b) = (params.get("weight")?, params.get("bias")?);
        Ok(crate::ops::conv2d(
            x,
            w,
            Some(b),
            self.stride,
            self.padding,
        )?)
    }

    fn lower(&self, lw: &mut Lowerer<'_>, params: &Params<'_>) -> Result<(), LowerError> {
        let in_ch = lw.current_shape().image().map(|s| s.channels);
        let geometry = in_ch
            .and_then(|c| self.geometry(c))
            .ok_or(LowerError::TooLarge("conv geometry"))?;
        let weight = values(params.get("weight")?)?;
        let bias = values(params.get("bias")?)?;
        lw.open_linear(params.path(), Linear::Conv2d(geometry), weight, bias)
    }
}
