//! The README's generated firmware table, from the `firmware` records of `models/*.json` (the
//! records themselves are set with [`model_report::ModelReport::update_firmware`]), and the text
//! `firmware-sim device` prints per run.

use fashion_mnist::SplitPlan;
use model_report::ModelReport;

use super::{Board, DEFAULT_IMAGES, DeviceRun, MAC_BUDGET, MIN_IMAGES, images_for};

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

/// Int8 files of this size or more are not committed (`.gitignore`): the table says so, since
/// their firmware cannot be checked from a fresh checkout.
pub use model_report::COMMITTED_MODEL_LIMIT;

fn kib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / 1024.0)
}

/// What `firmware-sim device` prints for one run; `mismatches`: images whose logits differ from
/// the host's.
pub fn describe(run: &DeviceRun, mismatches: usize) -> String {
    let report = run.report();
    let mut out = format!(
        "{id}: {n} images, accuracy {acc:.2}%, logits identical to the host: {same}\n  \
         flash: code {code} B + model {model} B = {flash:.1} KiB (test images {img} B not \
         counted)\n  RAM: static {stat} B + scratch {scratch} B + peak stack {peak} B = \
         {ram:.1} KiB (stack: load {load} B, inference {inf} B, run {runs} B)\n  \
         instructions/inference (SysTick): mean {mean}, min {min}, max {max} ({macs} MACs)",
        id = run.model,
        n = report.images,
        acc = 100.0 * report.accuracy,
        same = if mismatches == 0 {
            "yes".to_string()
        } else {
            format!("NO, {mismatches} images differ")
        },
        code = report.flash_code_bytes,
        model = report.flash_model_bytes,
        flash = (report.flash_code_bytes + report.flash_model_bytes) as f64 / 1024.0,
        img = run.sizes.flash_images,
        stat = report.ram_static_bytes,
        scratch = report.scratch_bytes,
        peak = report.peak_stack_bytes,
        ram = report.ram_total_bytes as f64 / 1024.0,
        load = run.stack.load,
        inf = run.stack.inference,
        runs = run.stack.run,
        mean = report.instructions.mean,
        min = report.instructions.min,
        max = report.instructions.max,
        macs = run.needs.macs,
    );
    if let Some(exact) = run.plugin_instruction_counts() {
        out += &format!(
            "\n  instructions/inference (plugin, exact): mean {}, min {}, max {}",
            exact.mean, exact.min, exact.max
        );
    }
    let ops: Vec<&str> = run.needs.kinds.iter().map(|k| k.name()).collect();
    out += &format!(
        "\n  ops linked: {} (firmware features: {})\n  build {:.1} s, QEMU {:.1} s",
        ops.join(", "),
        run.needs.firmware_features().join(","),
        run.build_time.as_secs_f64(),
        run.run_time.as_secs_f64()
    );
    out
}

/// Why a model with an int8 record but no `firmware` record is not in the table's numbers: it
/// cannot fit `board` with its test images (from the sizes its report records), or it has not
/// been run.
fn not_run_reason(r: &ModelReport, board: &Board) -> String {
    let Some(q) = &r.int8 else {
        return "no int8 model".to_string();
    };
    let images = images_for(q.macs);
    match board.check_fits(q.model_bytes, q.scratch_bytes as u64, 0, images) {
        Err(no_fit) => format!("does not fit the board: {no_fit}"),
        Ok(()) if q.model_bytes >= COMMITTED_MODEL_LIMIT => "not run on the board".to_string(),
        Ok(()) => "not run on the board yet".to_string(),
    }
}

/// Notes on a model whatever its firmware record: an int8 file too big to commit, a batch that
/// holds training images.
fn notes(r: &ModelReport) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(q) = r
        .int8
        .as_ref()
        .filter(|q| q.model_bytes >= COMMITTED_MODEL_LIMIT)
    {
        notes.push(format!(
            "int8 file {:.1} MB, not committed (1 MB or more)",
            q.model_bytes as f64 / 1e6
        ));
    }
    if matches!(r.float.options.split, SplitPlan::Pooled { .. }) {
        notes.push("pooled split: some of these test images are training images".to_string());
    }
    notes
}

/// The README's firmware table: a row for every model with an int8 record, measured (its
/// `firmware` record) or with the reason it is not (it cannot fit `board`, or has not been run
/// yet), and a line naming the models without an int8 model.
pub fn readme_section(reports: &[ModelReport], board: &Board) -> String {
    let mut out = String::from(
        "| model | flash code | flash model | flash total KiB | RAM static | scratch | peak stack \
         (inference) | RAM total KiB | instructions / inference (min-max) | instr / MAC | CMSIS-NN \
         instructions (reference) | batch accuracy % | notes |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut notes_below = Vec::new();
    let mut float_only = Vec::new();
    for r in reports {
        let Some(q) = &r.int8 else {
            float_only.push(r.id.as_str());
            continue;
        };
        let cmsis = CMSIS_NN_INSTRUCTIONS
            .iter()
            .find(|(id, _)| *id == r.id)
            .map_or(String::new(), |(_, n)| n.to_string());
        let mut notes = notes(r);
        let Some(f) = &r.firmware else {
            notes.insert(0, not_run_reason(r, board));
            out += &format!(
                "| {id} |  | {model} |  |  | {scratch} |  |  |  |  | {cmsis} |  | {notes} |\n",
                id = r.id,
                model = q.model_bytes,
                scratch = q.scratch_bytes,
                notes = notes.join("; "),
            );
            continue;
        };
        let per_mac = if q.macs > 0 {
            format!("{:.2}", f.instructions.mean as f64 / q.macs as f64)
        } else {
            String::new()
        };
        out += &format!(
            "| {id} | {code} | {model} | {flash} | {stat} | {scratch} | {peak} ({inf}) | {ram} | \
             {mean} ({min}-{max}) | {per_mac} | {cmsis} | {acc:.2} ({n} images) | {notes} |\n",
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
            notes = notes.join("; "),
        );
        for note in [
            format!("Target `{}` on `{}`.", f.target, f.machine),
            format!("Profile: {}.", f.profile),
            format!("Instructions counted by {}.", f.counting),
        ] {
            if !notes_below.contains(&note) {
                notes_below.push(note);
            }
        }
    }
    notes_below.push(format!(
        "Test images per model (the first of the official test set): {DEFAULT_IMAGES} up to \
         {}M MACs per inference, then {}M MACs divided by the model's, in tens, at least \
         {MIN_IMAGES}. Board: {} B of flash, {} B of RAM (`firmware/memory.x`).",
        MAC_BUDGET / DEFAULT_IMAGES as u64 / 1_000_000,
        MAC_BUDGET / 1_000_000,
        board.flash,
        board.ram,
    ));
    if !float_only.is_empty() {
        notes_below.push(format!(
            "Without an int8 model (float only): {}.",
            float_only.join(", ")
        ));
    }
    out += "\n";
    out += &notes_below.join("\n");
    out += "\n";
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use model_report::optimizer::OptimizerConfig;
    use model_report::{
        FirmwareReport, FloatReport, InstructionCounts, Int8Report, Metrics, TrainOptions,
    };

    const BOARD: Board = Board {
        flash: 4 << 20,
        ram: 4 << 20,
    };

    fn report(id: &str, model_bytes: Option<u64>, firmware: Option<FirmwareReport>) -> ModelReport {
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
                provenance: None,
            },
            int8: model_bytes.map(|model_bytes| Int8Report {
                calibration_images: 1,
                calibration_method: "minmax".into(),
                calibration_candidates: Vec::new(),
                test: Metrics::new(&[0], &[0], 1),
                agreement: 1.0,
                model_bytes,
                fmq_crc32: None,
                scratch_bytes: 1040,
                macs: 4_119_000,
                golden_logits: Vec::new(),
                provenance: None,
            }),
            firmware,
        }
    }

    #[test]
    fn the_table_lists_every_int8_model_measured_or_why_not() {
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
                mean: 8_238_000,
                min: 6,
                max: 8,
            },
            counting: "c".into(),
        };
        let table = readme_section(
            &[
                report("s5-ann", Some(1024), Some(firmware)),
                // s1-mlp's int8 file: 4166075 B, over the flash with 200 test images.
                report("s1-mlp", Some(4_166_075), None),
                report("unmeasured", Some(5000), None),
                report("s2-m6-sgd", None, None),
            ],
            &BOARD,
        );
        assert!(
            table.contains(
                "| s5-ann | 1024 | 1024 | 2.0 | 1 | 2 | 3 (2) | 0.0 | 8238000 (6-8) | 2.00 | \
                 463423 | 90.50 (200 images) |  |\n"
            ),
            "{table}"
        );
        // 4166075 + 200 x 785 = 4323075.
        assert!(
            table.contains(
                "| s1-mlp |  | 4166075 |  |  | 1040 |  |  |  |  |  |  | does not fit the board: \
                 needs 4323075 B of flash, the board has 4194304 B (model 4166075 B + 200 test \
                 images 157000 B, before code); int8 file 4.2 MB, not committed (1 MB or more) |\n"
            ),
            "{table}"
        );
        assert!(
            table.contains("| unmeasured |  | 5000 |")
                && table.contains("not run on the board yet"),
            "{table}"
        );
        assert!(!table.contains("| s2-m6-sgd |"), "{table}");
        assert!(table.contains("Instructions counted by c.\n"), "{table}");
        assert!(
            table.ends_with("Without an int8 model (float only): s2-m6-sgd.\n"),
            "{table}"
        );
    }
}
