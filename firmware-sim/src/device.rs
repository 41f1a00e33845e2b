//! The Cortex-M4 side: builds `firmware/` for one model, runs it under QEMU (`mps2-an386`,
//! Cortex-M4), parses what it prints over semihosting, measures its ELF, and compares its logits
//! with infer-core's on the host.
//!
//! # How instructions are counted
//!
//! QEMU has no timing model, so the firmware counts instructions, not cycles. QEMU runs with
//! `-icount shift=0`: every guest instruction advances virtual time by exactly 1 ns, so the
//! SysTick timer, clocked by the board's 25 MHz core clock, ticks once every [`INSNS_PER_TICK`]
//! instructions. The firmware reads SysTick right before and after each inference; the counts
//! are deterministic and need nothing but QEMU. Each run also times a calibration loop of known
//! length, and the runner rejects the run unless it matches. The optional exact counter (a QEMU
//! TCG plugin, [`DeviceOptions::plugin`]) counts the same region between two calls of the
//! firmware's `insn_marker` function.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use infer_core::Model;
use object::{Object, ObjectSection, ObjectSymbol, SectionFlags, SectionKind};
use trainer::data::Split;
use trainer::report::{FirmwareReport, InstructionCounts, ModelReport};

/// Rust target of the firmware.
pub const TARGET: &str = "thumbv7em-none-eabihf";
/// The QEMU binary (Debian package `qemu-system-arm`).
pub const QEMU: &str = "qemu-system-arm";
/// The emulated board and CPU.
pub const MACHINE: &str = "qemu-system-arm -machine mps2-an386 -cpu cortex-m4";
/// Instructions per SysTick tick under `-icount shift=0` (1 ns per instruction, 25 MHz clock).
pub const INSNS_PER_TICK: u64 = 40;
/// Test images each firmware runs by default.
pub const DEFAULT_IMAGES: usize = 200;
/// The firmware's release profile, as `firmware/Cargo.toml` sets it.
pub const PROFILE: &str =
    "release: opt-level \"s\", infer-core opt-level 3, lto = \"fat\", codegen-units = 1";
/// How [`FirmwareReport::instructions`] are counted.
pub const COUNTING: &str = "SysTick on the 25 MHz core clock under QEMU -icount shift=0 \
                            (1 instruction = 1 ns, 40 instructions per tick)";
/// Start of the data RAM in `firmware/memory.x`; sections from here on are RAM.
const RAM_ORIGIN: u64 = 0x2000_0000;
/// Default QEMU time limit per run.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// One firmware build runs at a time: the build and the copy of its ELF to a per-model name
/// happen under this lock, so concurrent runs (parallel tests) never see each other's binary.
static BUILD_LOCK: Mutex<()> = Mutex::new(());

/// Errors building, running or measuring the firmware.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// QEMU is not installed.
    #[error(
        "`{QEMU}` not found: install it with `apt-get install qemu-system-arm` (Debian package \
         qemu-system-arm; .ci/run installs it)"
    )]
    QemuMissing,
    /// A command could not be started or waited for.
    #[error("running `{command}`: {source}")]
    Spawn {
        /// The command.
        command: String,
        /// The cause.
        source: std::io::Error,
    },
    /// `cargo build` of the firmware failed.
    #[error("building the firmware for {model} failed:\n{stderr}")]
    Build {
        /// Model id.
        model: String,
        /// Cargo's error output.
        stderr: String,
    },
    /// QEMU did not finish in time.
    #[error("the firmware for {model} did not finish within {} s under QEMU", timeout.as_secs())]
    Timeout {
        /// Model id.
        model: String,
        /// The limit.
        timeout: Duration,
    },
    /// The firmware reported an error or QEMU exited with a failure.
    #[error("the firmware for {model} failed (QEMU exit {status}); output:\n{output}")]
    Firmware {
        /// Model id.
        model: String,
        /// QEMU's exit status.
        status: String,
        /// What the firmware printed.
        output: String,
    },
    /// A line of the firmware's output is not in the expected format.
    #[error("firmware output line {line}: {message}: {text:?}")]
    Parse {
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        message: &'static str,
        /// The line.
        text: String,
    },
    /// The firmware's output misses a record or disagrees with itself.
    #[error("firmware output: {0}")]
    Incomplete(String),
    /// The SysTick calibration loop did not take the expected number of ticks.
    #[error(
        "SysTick calibration: {ticks} ticks for {instructions} instructions, expected \
         {INSNS_PER_TICK} instructions per tick (is QEMU running with -icount shift=0?)"
    )]
    Calibration {
        /// Instructions in the calibration loop.
        instructions: u64,
        /// Ticks it took.
        ticks: u64,
    },
    /// The ELF could not be read or lacks a section or symbol.
    #[error("{path}: {message}")]
    Elf {
        /// The ELF file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// The instruction-counting plugin's output is unusable.
    #[error("{path}: {message}")]
    Plugin {
        /// The plugin's output file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The model file is rejected by infer-core on the host.
    #[error("{path}: infer-core rejects the model: {source}")]
    Model {
        /// The `.fmq` file.
        path: PathBuf,
        /// The cause.
        source: infer_core::Error,
    },
}

/// What to build and run.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceOptions {
    /// Repository root (holding `firmware/` and `models/`).
    pub root: PathBuf,
    /// Model id (`models/<id>.fmq`).
    pub model: String,
    /// Test images to embed (the first ones of the test set).
    pub images: usize,
    /// Fashion-MNIST folder for the firmware's build script (else its default lookup).
    pub data_dir: Option<PathBuf>,
    /// QEMU time limit.
    pub timeout: Duration,
    /// Exact instruction counter: a QEMU TCG plugin taking `marker=<addr>,out=<file>`
    /// (`../shared/tools/qemu-insn-count.c`, built as a shared library).
    pub plugin: Option<PathBuf>,
}

impl DeviceOptions {
    /// Defaults for `model` in the repository at `root`: [`DEFAULT_IMAGES`] images, the
    /// default dataset lookup, [`DEFAULT_TIMEOUT`], no plugin.
    pub fn new(root: impl Into<PathBuf>, model: impl Into<String>) -> Self {
        Self {
            root: root.into(),
            model: model.into(),
            images: DEFAULT_IMAGES,
            data_dir: None,
            timeout: DEFAULT_TIMEOUT,
            plugin: None,
        }
    }
}

/// Sizes read from the firmware's ELF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirmwareSizes {
    /// Flash: vector table, code, read-only data, `.data` initialisers (no model, no images).
    pub flash_code: u64,
    /// Flash: the `.model` section.
    pub flash_model: u64,
    /// Flash: the `.test_images` section (not counted in the budgets).
    pub flash_images: u64,
    /// RAM: `.data`, `.bss`, `.uninit`, without the scratch buffer.
    pub ram_static: u64,
    /// RAM: the `SCRATCH` buffer.
    pub scratch: u64,
    /// Address of `insn_marker` (Thumb bit cleared), for the counting plugin.
    pub marker_addr: u64,
}

/// Peak stack depths the firmware measured by stack painting, in bytes from the top.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StackUse {
    /// While validating the model (`Model::from_bytes`).
    pub load: u64,
    /// During one inference.
    pub inference: u64,
    /// During the timed loop over all images, with the reporting.
    pub run: u64,
}

impl StackUse {
    /// The deepest of the three.
    pub fn peak(self) -> u64 {
        self.load.max(self.inference).max(self.run)
    }
}

/// One image as the firmware classified it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceImage {
    /// True label.
    pub label: u8,
    /// Predicted class.
    pub class: usize,
    /// Instructions for the inference (SysTick ticks x [`INSNS_PER_TICK`]).
    pub instructions: u64,
    /// The int8 logits.
    pub logits: Vec<i8>,
}

/// The result of one firmware run.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRun {
    /// Model id as the firmware reported it.
    pub model: String,
    /// The ELF that ran.
    pub elf: PathBuf,
    /// Every image, in order.
    pub images: Vec<DeviceImage>,
    /// Correct predictions as the firmware counted them.
    pub correct: usize,
    /// Scratch bytes the model needs, as the firmware reported it.
    pub scratch_len: usize,
    /// Stack measurements.
    pub stack: StackUse,
    /// ELF sizes.
    pub sizes: FirmwareSizes,
    /// Exact instructions per inference from the plugin, when one was given.
    pub plugin_instructions: Option<Vec<u64>>,
    /// Wall-clock time of the firmware build.
    pub build_time: Duration,
    /// Wall-clock time of the QEMU run.
    pub run_time: Duration,
}

impl DeviceRun {
    /// Accuracy on the batch, as a fraction.
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.images.len().max(1) as f64
    }

    /// Mean, min and max of `counts`.
    fn stats(counts: impl Iterator<Item = u64> + Clone) -> InstructionCounts {
        let n = counts.clone().count().max(1) as u64;
        let sum: u64 = counts.clone().sum();
        InstructionCounts {
            mean: (sum + n / 2) / n,
            min: counts.clone().min().unwrap_or(0),
            max: counts.max().unwrap_or(0),
        }
    }

    /// Instructions per inference by SysTick.
    pub fn instructions(&self) -> InstructionCounts {
        Self::stats(self.images.iter().map(|i| i.instructions))
    }

    /// Exact instructions per inference by the plugin, when one ran.
    pub fn plugin_instruction_counts(&self) -> Option<InstructionCounts> {
        self.plugin_instructions
            .as_ref()
            .map(|c| Self::stats(c.iter().copied()))
    }

    /// The `firmware` record for `models/<id>.json`.
    pub fn report(&self) -> FirmwareReport {
        let s = self.sizes;
        let peak = self.stack.peak();
        FirmwareReport {
            target: TARGET.to_string(),
            machine: MACHINE.to_string(),
            profile: PROFILE.to_string(),
            images: self.images.len(),
            accuracy: self.accuracy(),
            flash_code_bytes: s.flash_code,
            flash_model_bytes: s.flash_model,
            ram_static_bytes: s.ram_static,
            scratch_bytes: s.scratch,
            peak_stack_bytes: peak,
            inference_stack_bytes: self.stack.inference,
            ram_total_bytes: s.ram_static + s.scratch + peak,
            instructions: self.instructions(),
            counting: COUNTING.to_string(),
        }
    }
}

/// Whether `qemu-system-arm` can be started.
pub fn qemu_available() -> bool {
    Command::new(QEMU)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Builds the firmware for `opts.model`, runs it under QEMU and measures it.
pub fn run(opts: &DeviceOptions) -> Result<DeviceRun, DeviceError> {
    if !qemu_available() {
        return Err(DeviceError::QemuMissing);
    }
    let start = Instant::now();
    let elf = build(opts)?;
    let build_time = start.elapsed();
    let sizes = read_sizes(&elf)?;

    let mut qemu = Command::new(QEMU);
    qemu.args(["-machine", "mps2-an386", "-cpu", "cortex-m4", "-nographic"])
        .args(["-monitor", "none", "-serial", "none"])
        .args(["-semihosting-config", "enable=on,target=native"])
        .args(["-icount", "shift=0"]);
    let plugin_out = opts.plugin.as_ref().map(|plugin| {
        let out = elf.with_extension("insns.txt");
        qemu.arg("-plugin").arg(format!(
            "{},marker={:#x},out={}",
            plugin.display(),
            sizes.marker_addr,
            out.display()
        ));
        out
    });
    qemu.arg("-kernel").arg(&elf);
    let start = Instant::now();
    let (status, output) = run_with_timeout(qemu, opts.timeout).map_err(|e| match e {
        RunError::Timeout => DeviceError::Timeout {
            model: opts.model.clone(),
            timeout: opts.timeout,
        },
        RunError::Io(source) => DeviceError::Spawn {
            command: QEMU.to_string(),
            source,
        },
    })?;
    let run_time = start.elapsed();
    if !status.success() || output.lines().any(|l| l.starts_with("error ")) {
        return Err(DeviceError::Firmware {
            model: opts.model.clone(),
            status: status.to_string(),
            output,
        });
    }
    let parsed = parse_output(&output)?;
    if parsed.model != opts.model {
        return Err(DeviceError::Incomplete(format!(
            "built for {} but the firmware reports {}",
            opts.model, parsed.model
        )));
    }
    let plugin_instructions = match plugin_out {
        Some(path) => Some(read_plugin_counts(&path, parsed.images.len())?),
        None => None,
    };
    Ok(DeviceRun {
        model: parsed.model,
        elf,
        images: parsed.images,
        correct: parsed.correct,
        scratch_len: parsed.scratch_len,
        stack: parsed.stack,
        sizes,
        plugin_instructions,
        build_time,
        run_time,
    })
}

/// `cargo build --release` of `firmware/` for one model; returns the ELF, copied to a name of
/// its own (`firmware-<model>-<images>.elf`).
fn build(opts: &DeviceOptions) -> Result<PathBuf, DeviceError> {
    let firmware = opts.root.join("firmware");
    let target_dir = firmware.join("target");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.arg("build")
        .arg("--release")
        .arg("--manifest-path")
        .arg(firmware.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .env("FIRMWARE_MODEL", &opts.model)
        .env("FIRMWARE_IMAGES", opts.images.to_string())
        // The host's flags (and a host target dir) must not leak into the cross build.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR")
        .current_dir(&firmware);
    if let Some(dir) = &opts.data_dir {
        cmd.env("FASHION_MNIST_DIR", dir);
    }
    let _guard = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let out = cmd.output().map_err(|source| DeviceError::Spawn {
        command: format!("{} build --release (firmware)", Path::new(&cargo).display()),
        source,
    })?;
    if !out.status.success() {
        return Err(DeviceError::Build {
            model: opts.model.clone(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    let dir = target_dir.join(TARGET).join("release");
    let built = dir.join("firmware");
    let elf = dir.join(format!("firmware-{}-{}.elf", opts.model, opts.images));
    std::fs::copy(&built, &elf).map_err(|source| DeviceError::Io {
        path: built.clone(),
        source,
    })?;
    Ok(elf)
}

enum RunError {
    Timeout,
    Io(std::io::Error),
}

/// Runs `cmd` with stdout captured, killing it after `timeout`.
fn run_with_timeout(
    mut cmd: Command,
    timeout: Duration,
) -> Result<(std::process::ExitStatus, String), RunError> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(RunError::Io)?;
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(out) = stdout.as_mut() {
            let _ = out.read_to_string(&mut text);
        }
        if let Some(err) = stderr.as_mut() {
            let _ = err.read_to_string(&mut text);
        }
        text
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(RunError::Io)? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(RunError::Timeout);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = reader.join().unwrap_or_default();
    Ok((status, output))
}

/// The firmware's output, parsed.
#[derive(Debug, Clone, PartialEq)]
struct Parsed {
    model: String,
    scratch_len: usize,
    images: Vec<DeviceImage>,
    correct: usize,
    stack: StackUse,
}

/// Parses the firmware's line records (see `firmware/src/main.rs`).
fn parse_output(output: &str) -> Result<Parsed, DeviceError> {
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

/// Section and symbol sizes of the firmware ELF.
pub fn read_sizes(elf: &Path) -> Result<FirmwareSizes, DeviceError> {
    let data = std::fs::read(elf).map_err(|source| DeviceError::Io {
        path: elf.to_path_buf(),
        source,
    })?;
    let bad = |message: String| DeviceError::Elf {
        path: elf.to_path_buf(),
        message,
    };
    let file = object::File::parse(&*data).map_err(|e| bad(format!("not an ELF file: {e}")))?;
    let mut sizes = FirmwareSizes {
        flash_code: 0,
        flash_model: 0,
        flash_images: 0,
        ram_static: 0,
        scratch: 0,
        marker_addr: 0,
    };
    for section in file.sections() {
        let SectionFlags::Elf { sh_flags } = section.flags() else {
            return Err(bad("not an ELF file".into()));
        };
        if sh_flags & u64::from(object::elf::SHF_ALLOC) == 0 || section.size() == 0 {
            continue;
        }
        let name = section.name().map_err(|e| bad(e.to_string()))?;
        let in_flash = section.kind() != SectionKind::UninitializedData;
        if section.address() >= RAM_ORIGIN {
            sizes.ram_static += section.size();
        }
        if in_flash {
            match name {
                ".model" => sizes.flash_model += section.size(),
                ".test_images" => sizes.flash_images += section.size(),
                _ => sizes.flash_code += section.size(),
            }
        }
    }
    let symbol = |name: &str| {
        file.symbols()
            .find(|s| s.name() == Ok(name))
            .ok_or_else(|| bad(format!("no symbol {name}")))
    };
    sizes.scratch = symbol("SCRATCH")?.size();
    sizes.ram_static = sizes.ram_static.saturating_sub(sizes.scratch);
    sizes.marker_addr = symbol("insn_marker")?.address() & !1;
    if sizes.flash_model == 0 || sizes.flash_images == 0 {
        return Err(bad("no .model or .test_images section".into()));
    }
    Ok(sizes)
}

/// Exact per-inference counts from the plugin's `M <count>` lines (two markers per image).
fn read_plugin_counts(path: &Path, images: usize) -> Result<Vec<u64>, DeviceError> {
    let text = std::fs::read_to_string(path).map_err(|source| DeviceError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let marks: Vec<u64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("M "))
        .map(|n| n.trim().parse::<u64>())
        .collect::<Result<_, _>>()
        .map_err(|e| DeviceError::Plugin {
            path: path.to_path_buf(),
            message: format!("bad marker count: {e}"),
        })?;
    if marks.len() != 2 * images {
        return Err(DeviceError::Plugin {
            path: path.to_path_buf(),
            message: format!("{} marker hits for {images} images", marks.len()),
        });
    }
    Ok(marks
        .chunks_exact(2)
        .map(|m| m[1].saturating_sub(m[0]))
        .collect())
}

/// infer-core's class and logits for one image on the host.
pub type HostPrediction = (usize, Vec<i8>);

/// An image where device and host disagree: its index, the device's result, the host's.
pub type Mismatch<'a> = (usize, &'a DeviceImage, Option<&'a HostPrediction>);

/// infer-core's class and logits on the host for the first `images` of `test`, with the model
/// at `path`: what the firmware must reproduce bit for bit.
pub fn host_predictions(
    path: &Path,
    test: &Split,
    images: usize,
) -> Result<Vec<HostPrediction>, DeviceError> {
    let bytes = std::fs::read(path).map_err(|source| DeviceError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let model_err = |source| DeviceError::Model {
        path: path.to_path_buf(),
        source,
    };
    let model = Model::from_bytes(&bytes).map_err(model_err)?;
    let mut scratch = vec![0_i8; model.scratch_len()];
    (0..images.min(test.len()))
        .map(|i| {
            let p = model
                .predict(test.image(i), &mut scratch)
                .map_err(model_err)?;
            Ok((p.class, p.logits.to_vec()))
        })
        .collect()
}

/// Images where the firmware's class or logits differ from the host's (index, device, host).
pub fn mismatches<'a>(run: &'a DeviceRun, host: &'a [HostPrediction]) -> Vec<Mismatch<'a>> {
    run.images
        .iter()
        .enumerate()
        .filter_map(|(i, d)| {
            let h = host.get(i);
            (h.map(|(c, l)| (*c, l.as_slice())) != Some((d.class, d.logits.as_slice())))
                .then_some((i, d, h))
        })
        .collect()
}

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
