//! `defmt::Format` for the types that do not derive it: the validated ops and model, which hold
//! weight slices. They print a summary (kind, shapes, sizes) rather than kilobytes of
//! parameters over the debug link.

use ::defmt::{Format, Formatter, write};

use crate::model::{Model, ModelOp};
use crate::ops::QOp;

impl Format for QOp<'_> {
    fn format(&self, f: Formatter<'_>) {
        write!(
            f,
            "{} {{ inputs: {=[?]}, macs: {=u64}, param_bytes: {=usize} }}",
            self.kind(),
            self.inputs().ids(),
            self.macs(),
            self.param_bytes()
        );
    }
}

impl Format for ModelOp<'_> {
    fn format(&self, f: Formatter<'_>) {
        write!(
            f,
            "{} -> {} at {}, work {=usize} bytes",
            self.op(),
            self.output(),
            self.output_offset(),
            self.work().1
        );
    }
}

impl<const MAX_OPS: usize> Format for Model<'_, MAX_OPS> {
    fn format(&self, f: Formatter<'_>) {
        write!(
            f,
            "Model {{ id: {=str}, input: {}, classes: {=usize}, ops: {=usize}, macs: {=u64}, \
             param_bytes: {=usize}, scratch_len: {=usize} }}",
            self.id(),
            self.input_shape(),
            self.num_classes(),
            self.ops().len(),
            self.macs(),
            self.param_bytes(),
            self.scratch_len()
        );
    }
}
