//! The firmware's line records (see `firmware/src/main.rs`), parsed and checked.

use super::{DeviceError, DeviceImage, INSNS_PER_TICK, StackUse};

/// The firmware's output, parsed.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Parsed {
    pub(super) model: String,
    pub(super) scratch_len: usize,
    pub(super) images: Vec<DeviceImage>,
    pub(super) correct: usize,
    pub(super) stack: StackUse,
}

/// Parses the firmware's line records (see `firmware/src/main.rs`).
pub(super) fn parse_output(output: &str) -> Result<Parsed, DeviceError> {
    let mut model = None;
    let mut expected_images = 0;
    let mut scratch_len = 0;
    let mut images = Vec::new();
    let mut accuracy = None;
    let mut stack = None;
    let mut calibrated = false;
    let mut done = false;
    for (n, text) in output.lines().enumerate() {
        let bad = |message| DeviceError::Parse {
            line: n + 1,
            message,
            text: text.to_string(),
        };
        // The fields after the record name.
        let mut fields = text.split_ascii_whitespace().skip(1);
        let mut num = |what| -> Result<u64, DeviceError> {
            fields
                .next()
                .and_then(|f| f.parse().ok())
                .ok_or_else(|| bad(what))
        };
        match text.split_ascii_whitespace().next() {
            Some("model") => {
                let f: Vec<&str> = text.split_ascii_whitespace().collect();
                match f[..] {
                    [_, id, "images", count, "model_bytes", _, "scratch", scratch] => {
                        model = Some(id.to_string());
                        expected_images = count.parse().map_err(|_| bad("bad image count"))?;
                        scratch_len = scratch.parse().map_err(|_| bad("bad scratch length"))?;
                    }
                    _ => return Err(bad("bad model record")),
                }
            }
            Some("calibrate") => {
                let instructions = num("calibration instructions")?;
                let ticks = num("calibration ticks")?;
                if instructions.abs_diff(ticks * INSNS_PER_TICK) > INSNS_PER_TICK {
                    return Err(DeviceError::Calibration {
                        instructions,
                        ticks,
                    });
                }
                calibrated = true;
            }
            Some("logits") => {
                let index = num("image index")?;
                let label = u8::try_from(num("label")?).map_err(|_| bad("label"))?;
                let class = usize::try_from(num("class")?).map_err(|_| bad("class"))?;
                let ticks = num("ticks")?;
                if usize::try_from(index) != Ok(images.len()) {
                    return Err(bad("image out of order"));
                }
                let logits = text
                    .split_ascii_whitespace()
                    .skip(5)
                    .map(|f| f.parse::<i8>().map_err(|_| bad("bad logit")))
                    .collect::<Result<Vec<i8>, _>>()?;
                if logits.is_empty() {
                    return Err(bad("no logits"));
                }
                images.push(DeviceImage {
                    label,
                    class,
                    instructions: ticks * INSNS_PER_TICK,
                    logits,
                });
            }
            Some("accuracy") => {
                let correct = usize::try_from(num("correct")?).map_err(|_| bad("correct"))?;
                let total = usize::try_from(num("images")?).map_err(|_| bad("images"))?;
                accuracy = Some((correct, total));
            }
            Some("stack") => {
                stack = Some(StackUse {
                    load: num("load stack")?,
                    inference: num("inference stack")?,
                    run: num("run stack")?,
                });
            }
            Some("done") => done = true,
            _ => {} // QEMU's own messages, if any
        }
    }
    let missing = |what: &str| DeviceError::Incomplete(format!("no {what} record"));
    let model = model.ok_or_else(|| missing("model"))?;
    let (correct, total) = accuracy.ok_or_else(|| missing("accuracy"))?;
    let stack = stack.ok_or_else(|| missing("stack"))?;
    if !calibrated {
        return Err(missing("calibrate"));
    }
    if !done {
        return Err(missing("done"));
    }
    if images.len() != expected_images || total != expected_images {
        return Err(DeviceError::Incomplete(format!(
            "{} logits records and {total} images in the accuracy record, {expected_images} \
             images embedded",
            images.len()
        )));
    }
    let recount = images
        .iter()
        .filter(|i| i.class == usize::from(i.label))
        .count();
    if recount != correct {
        return Err(DeviceError::Incomplete(format!(
            "accuracy record says {correct} correct, the logits records {recount}"
        )));
    }
    Ok(Parsed {
        model,
        scratch_len,
        images,
        correct,
        stack,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "\
model s3-lenet-base images 2 model_bytes 47400 scratch 4320
calibrate 200000 5000
logits 0 9 9 50000 -128 -128 -128 -128 -128 -115 -128 -25 -128 127
logits 1 2 1 50001 -128 127 -128 -128 -76 -128 -128 -128 -128 -128
accuracy 1 2
stack 10000 2600 2700
done
";

    #[test]
    fn parses_the_firmware_records() {
        let p = parse_output(OUTPUT).unwrap();
        assert_eq!(p.model, "s3-lenet-base");
        assert_eq!(p.scratch_len, 4320);
        assert_eq!(p.correct, 1);
        assert_eq!(p.images.len(), 2);
        assert_eq!(p.images[1].class, 1);
        assert_eq!(p.images[1].instructions, 50001 * INSNS_PER_TICK);
        assert_eq!(p.images[0].logits[9], 127);
        assert_eq!(
            p.stack,
            StackUse {
                load: 10000,
                inference: 2600,
                run: 2700
            }
        );
    }

    #[test]
    fn rejects_incomplete_or_inconsistent_output() {
        let cut = OUTPUT.replace("done\n", "");
        assert!(matches!(
            parse_output(&cut),
            Err(DeviceError::Incomplete(_))
        ));
        let miscounted = OUTPUT.replace("accuracy 1 2", "accuracy 2 2");
        assert!(matches!(
            parse_output(&miscounted),
            Err(DeviceError::Incomplete(_))
        ));
        let slow = OUTPUT.replace("calibrate 200000 5000", "calibrate 200000 8000");
        assert!(matches!(
            parse_output(&slow),
            Err(DeviceError::Calibration { .. })
        ));
        let bad = OUTPUT.replace("-76", "x");
        assert!(matches!(
            parse_output(&bad),
            Err(DeviceError::Parse { line: 4, .. })
        ));
    }
}
