//! The device measurements as a `firmware` record in `models/<id>.json` and as the README's
//! generated firmware table.

use trainer::report::{FirmwareReport, ModelReport};

/// `text`, the pretty JSON of a [`ModelReport`] (as [`ModelReport::write`] writes it), with its
/// `firmware` record set to `report`. Everything else is kept byte for byte (a parse and rewrite
/// would round some floats differently), so the record, the report's last field, is spliced in
/// as text. `None` if `text` does not end like such a file.
pub fn set_firmware_record(text: &str, report: &FirmwareReport) -> Option<String> {
    const KEY: &str = ",\n  \"firmware\": ";
    let body = match text.find(KEY) {
        Some(at) => &text[..at],
        None => text.trim_end().strip_suffix('}')?.trim_end(),
    };
    let record = serde_json::to_string_pretty(report)
        .ok()?
        .replace('\n', "\n  ");
    Some(format!("{body}{KEY}{record}\n}}\n"))
}

/// Marker before the generated firmware section of README.
pub const README_BEGIN: &str = "<!-- firmware:begin -->";
/// Marker after the generated firmware section of README.
pub const README_END: &str = "<!-- firmware:end -->";

/// CMSIS-NN's exact instructions per inference on the same models (Cortex-M4, QEMU
/// mps2-an386, plugin-counted), from `../shared/tools/README.md`: the reference point.
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

/// `text` with everything between `begin` and `end` replaced by `body`, or `None` when the
/// markers are missing or out of order.
pub fn replace_section(text: &str, begin: &str, end: &str, body: &str) -> Option<String> {
    let start = text.find(begin)? + begin.len();
    let stop = start + text[start..].find(end)?;
    Some(format!("{}\n{body}{}", &text[..start], &text[stop..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{COUNTING, MACHINE, PROFILE, TARGET};
    use trainer::report::InstructionCounts;

    #[test]
    fn the_firmware_record_is_spliced_into_the_report_text() {
        let record = FirmwareReport {
            target: TARGET.into(),
            machine: MACHINE.into(),
            profile: PROFILE.into(),
            images: 2,
            accuracy: 0.5,
            flash_code_bytes: 1,
            flash_model_bytes: 2,
            ram_static_bytes: 3,
            scratch_bytes: 4,
            peak_stack_bytes: 5,
            inference_stack_bytes: 6,
            ram_total_bytes: 12,
            instructions: InstructionCounts {
                mean: 7,
                min: 6,
                max: 8,
            },
            counting: COUNTING.into(),
        };
        let text = "{\n  \"id\": \"x\",\n  \"loss\": 0.42918922216780403\n}\n";
        let once = set_firmware_record(text, &record).unwrap();
        assert!(once.starts_with("{\n  \"id\": \"x\",\n  \"loss\": 0.42918922216780403,\n"));
        let value: serde_json::Value = serde_json::from_str(&once).unwrap();
        assert_eq!(value["firmware"]["scratch_bytes"], 4);
        let mut changed = record.clone();
        changed.scratch_bytes = 40;
        let twice = set_firmware_record(&once, &changed).unwrap();
        assert_eq!(twice.matches("firmware").count(), 1);
        assert_eq!(set_firmware_record(&once, &record).unwrap(), once);
        assert_eq!(set_firmware_record("no json", &record), None);
    }

    #[test]
    fn sections_are_replaced_between_markers() {
        let text = format!("a\n{README_BEGIN}\nold\n{README_END}\nb\n");
        assert_eq!(
            replace_section(&text, README_BEGIN, README_END, "new\n").unwrap(),
            format!("a\n{README_BEGIN}\nnew\n{README_END}\nb\n")
        );
        assert_eq!(replace_section("x", README_BEGIN, README_END, "y"), None);
    }
}
