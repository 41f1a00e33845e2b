//! The README's generated firmware table, from the `firmware` records of `models/*.json` (the
//! records themselves are set with [`model_report::ModelReport::update_firmware`]).

use model_report::ModelReport;

/// ARM CMSIS-NN's instructions per inference on the same three models: the reference point of
/// the firmware table.
///
/// Provenance: CMSIS-NN at commit 99f736a, built with gcc 12.2 at `-O2` with its DSP (SMLAD)
/// kernels, per-channel int8 with TensorFlow Lite Micro semantics, run on QEMU's `mps2-an386`
/// (Cortex-M4) and counted exactly, instruction by instruction, with a TCG plugin like
/// `tools/qemu-insn-count.c` between two marker calls around one inference.
pub const CMSIS_NN_INSTRUCTIONS: [(&str, u64); 3] = [
    ("s3-lenet-base", 1_539_746),
    ("s5-cnn", 9_758_616),
    ("s5-ann", 463_423),
];

fn kib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / 1024.0)
}

/// The README's firmware table, from the reports that have a `firmware` record.
pub fn readme_section(reports: &[ModelReport]) -> String {
    let mut out = String::from(
        "| model | flash code | flash model | flash total KiB | RAM static | scratch | peak stack \
         (inference) | RAM total KiB | instructions / inference (min-max) | instr / MAC | CMSIS-NN \
         instructions (reference) | batch accuracy % |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut notes = Vec::new();
    for r in reports {
        let Some(f) = &r.firmware else { continue };
        let macs = r.int8.as_ref().map_or(0, |q| q.macs);
        let per_mac = if macs > 0 {
            format!("{:.2}", f.instructions.mean as f64 / macs as f64)
        } else {
            String::new()
        };
        let cmsis = CMSIS_NN_INSTRUCTIONS
            .iter()
            .find(|(id, _)| *id == r.id)
            .map_or(String::new(), |(_, n)| n.to_string());
        out += &format!(
            "| {id} | {code} | {model} | {flash} | {stat} | {scratch} | {peak} ({inf}) | {ram} | \
             {mean} ({min}-{max}) | {per_mac} | {cmsis} | {acc:.2} ({n} images) |\n",
            id = r.id,
            code = f.flash_code_bytes,
            model = f.flash_model_bytes,
            flash = kib(f.flash_code_bytes + f.flash_model_bytes),
            stat = f.ram_static_bytes,
            scratch = f.scratch_bytes,
            peak = f.peak_stack_bytes,
            inf = f.inference_stack_bytes,
            ram = kib(f.ram_total_bytes),
            mean = f.instructions.mean,
            min = f.instructions.min,
            max = f.instructions.max,
            acc = 100.0 * f.accuracy,
            n = f.images,
        );
        for note in [
            format!("Target `{}` on `{}`.", f.target, f.machine),
            format!("Profile: {}.", f.profile),
            format!("Instructions counted by {}.", f.counting),
        ] {
            if !notes.contains(&note) {
                notes.push(note);
            }
        }
    }
    if !notes.is_empty() {
        out += "\n";
        out += &notes.join("\n");
        out += "\n";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use model_report::optimizer::OptimizerConfig;
    use model_report::{FirmwareReport, FloatReport, InstructionCounts, Metrics, TrainOptions};

    fn report(id: &str, firmware: Option<FirmwareReport>) -> ModelReport {
        ModelReport {
            id: id.into(),
            description: String::new(),
            layers: serde_json::Value::Null,
            float: FloatReport {
                options: TrainOptions::plain(1, 1, OptimizerConfig::adam(), 0),
                train_images: 1,
                validation_images: 0,
                param_count: 1,
                history: Vec::new(),
                test: Metrics::new(&[0], &[0], 1),
                safetensors_bytes: 0,
            },
            int8: None,
            firmware,
        }
    }

    #[test]
    fn the_table_lists_measured_models_with_the_cmsis_nn_reference() {
        let firmware = FirmwareReport {
            target: "t".into(),
            machine: "m".into(),
            profile: "p".into(),
            images: 200,
            accuracy: 0.905,
            flash_code_bytes: 1024,
            flash_model_bytes: 1024,
            ram_static_bytes: 1,
            scratch_bytes: 2,
            peak_stack_bytes: 3,
            inference_stack_bytes: 2,
            ram_total_bytes: 6,
            instructions: InstructionCounts {
                mean: 7,
                min: 6,
                max: 8,
            },
            counting: "c".into(),
        };
        let table = readme_section(&[report("s5-ann", Some(firmware)), report("unmeasured", None)]);
        assert!(
            table.contains(
                "| s5-ann | 1024 | 1024 | 2.0 | 1 | 2 | 3 (2) | 0.0 | 7 (6-8) |  | 463423 | \
                 90.50 (200 images) |"
            ),
            "{table}"
        );
        assert!(!table.contains("unmeasured"));
        assert!(table.ends_with("Instructions counted by c.\n"), "{table}");
    }
}
