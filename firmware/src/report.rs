//! The firmware's output records (see the crate docs for the line format): plain text lines over
//! semihosting by default, defmt frames over semihosting with the `defmt` feature.

#[cfg(not(feature = "defmt"))]
mod imp {
    use core::fmt::Write;

    use cortex_m_semihosting::hio;

    /// Longest record: `logits` with 16 logits of 4 characters and the other fields.
    const LINE: usize = 160;

    /// Formats one record and sends it with a single semihosting write.
    fn line(args: core::fmt::Arguments<'_>) {
        let mut text = heapless::String::<LINE>::new();
        // A record longer than LINE is cut short rather than lost.
        let _ = text.write_fmt(args);
        let _ = text.push('\n');
        if let Ok(mut out) = hio::hstdout() {
            let _ = out.write_all(text.as_bytes());
        }
    }

    pub fn header(id: &str, images: usize, model_bytes: usize, scratch: usize) {
        line(format_args!(
            "model {id} images {images} model_bytes {model_bytes} scratch {scratch}"
        ));
    }

    pub fn calibration(instructions: u32, ticks: u32) {
        line(format_args!("calibrate {instructions} {ticks}"));
    }

    pub fn logits(image: usize, label: u8, class: usize, ticks: u32, logits: &[i8]) {
        struct Spaced<'a>(&'a [i8]);
        impl core::fmt::Display for Spaced<'_> {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                self.0.iter().try_for_each(|l| write!(f, " {l}"))
            }
        }
        line(format_args!(
            "logits {image} {label} {class} {ticks}{}",
            Spaced(logits)
        ));
    }

    pub fn accuracy(correct: usize, images: usize) {
        line(format_args!("accuracy {correct} {images}"));
    }

    pub fn stack(load: usize, inference: usize, run: usize) {
        line(format_args!("stack {load} {inference} {run}"));
    }

    pub fn done() {
        line(format_args!("done"));
    }

    pub fn error(e: infer_core::Error) {
        line(format_args!("error {e}"));
    }
}

#[cfg(feature = "defmt")]
mod imp {
    use defmt_semihosting as _;

    pub fn header(id: &str, images: usize, model_bytes: usize, scratch: usize) {
        defmt::println!(
            "model {=str} images {=usize} model_bytes {=usize} scratch {=usize}",
            id,
            images,
            model_bytes,
            scratch
        );
    }

    pub fn calibration(instructions: u32, ticks: u32) {
        defmt::println!("calibrate {=u32} {=u32}", instructions, ticks);
    }

    pub fn logits(image: usize, label: u8, class: usize, ticks: u32, logits: &[i8]) {
        defmt::println!(
            "logits {=usize} {=u8} {=usize} {=u32} {=[?]}",
            image,
            label,
            class,
            ticks,
            logits
        );
    }

    pub fn accuracy(correct: usize, images: usize) {
        defmt::println!("accuracy {=usize} {=usize}", correct, images);
    }

    pub fn stack(load: usize, inference: usize, run: usize) {
        defmt::println!("stack {=usize} {=usize} {=usize}", load, inference, run);
    }

    pub fn done() {
        defmt::println!("done");
    }

    /// infer-core's error through its `defmt::Format` derive.
    pub fn error(e: infer_core::Error) {
        defmt::println!("error {}", e);
    }
}

pub use imp::*;
