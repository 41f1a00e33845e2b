//! `defmt::Format` for the types that do not derive it: the borrowed file-format types and the
//! validated model, which hold weight slices. They print a summary (dimensions, lengths) rather
//! than kilobytes of parameters over the debug link.

use ::defmt::{Format, Formatter, write};

use crate::format::{ChannelQuant, Conv2dDef, DenseDef, LayerDef, ModelDef};
use crate::model::{Model, QLayer};

impl Format for ChannelQuant<'_> {
    fn format(&self, f: Formatter<'_>) {
        write!(
            f,
            "ChannelQuant {{ channels: {=usize}, bytes: {=usize} }}",
            self.shifts.len(),
            self.weight_scales.len() + self.bias.len() + self.multipliers.len() + self.shifts.len()
        );
    }
}

impl Format for Conv2dDef<'_> {
    fn format(&self, f: Formatter<'_>) {
        write!(
            f,
            "Conv2d {{ in_ch: {=u16}, out_ch: {=u16}, kernel: {=u8}x{=u8}, stride: {=u8}, \
             padding: {=u8}, weights: {=usize} bytes, output: {}, activation: {} }}",
            self.in_ch,
            self.out_ch,
            self.kernel_h,
            self.kernel_w,
            self.stride,
            self.padding,
            self.weights.len(),
            self.output,
            self.activation
        );
    }
}

impl Format for DenseDef<'_> {
    fn format(&self, f: Formatter<'_>) {
        write!(
            f,
            "Dense {{ in_dim: {=u32}, out_dim: {=u32}, weights: {=usize} bytes, output: {}, \
             activation: {} }}",
            self.in_dim,
            self.out_dim,
            self.weights.len(),
            self.output,
            self.activation
        );
    }
}

impl Format for LayerDef<'_> {
    fn format(&self, f: Formatter<'_>) {
        match self {
            Self::Conv2d(conv) => write!(f, "{}", conv),
            Self::Dense(dense) => write!(f, "{}", dense),
            Self::MaxPool2d(pool) => write!(f, "MaxPool2d({})", pool),
            Self::AvgPool2d(pool) => write!(f, "AvgPool2d({})", pool),
            Self::Flatten => write!(f, "Flatten"),
        }
    }
}

impl Format for ModelDef<'_> {
    fn format(&self, f: Formatter<'_>) {
        write!(
            f,
            "ModelDef {{ id: {=str}, input_shape: {}, input: {}, layers: {=[?]} }}",
            self.id,
            self.input_shape,
            self.input,
            self.layers.as_slice()
        );
    }
}

impl Format for QLayer<'_> {
    fn format(&self, f: Formatter<'_>) {
        let (act_min, act_max) = self.activation_range();
        write!(
            f,
            "QLayer {{ kind: {}, input: {}, output: {}, output_qparams: {}, clamp: [{=i8}, {=i8}], \
             macs: {=u64}, param_bytes: {=usize} }}",
            self.kind(),
            self.input_shape(),
            self.output_shape(),
            self.output_qparams(),
            act_min,
            act_max,
            self.macs(),
            self.param_bytes()
        );
    }
}

impl Format for Model<'_> {
    fn format(&self, f: Formatter<'_>) {
        write!(
            f,
            "Model {{ id: {=str}, input: {}, classes: {=usize}, layers: {=usize}, macs: {=u64}, \
             param_bytes: {=usize}, scratch_len: {=usize} }}",
            self.id(),
            self.input_shape(),
            self.num_classes(),
            self.layers().len(),
            self.macs(),
            self.param_bytes(),
            self.scratch_len()
        );
    }
}
