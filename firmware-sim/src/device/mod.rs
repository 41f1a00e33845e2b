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
//! TCG plugin, [`DeviceOptions::plugin`]: `tools/qemu-insn-count.c`) counts the same region
//! between two calls of the firmware's `insn_marker` function.
//!
//! # How many test images
//!
//! Every image is one inference under QEMU, so the batch bounds the run's time: a model gets
//! [`images_for`] its MACs, 200 images for models up to [`MAC_BUDGET`] / 200 = 5M MACs, fewer
//! for bigger ones (the budget divided by its MACs, in tens), and never fewer than
//! [`MIN_IMAGES`]. Measured on the 2-core development machine under full load (two training
//! jobs), QEMU runs our conv kernels at about 490 million guest instructions per second and
//! takes about 1 s to start and load a model: `s2-m6` (29.4M MACs, 112.5M instructions per
//! inference) takes 1.1 s for 1 image, 4.5 s for 20 and 13.6 s for 60, 0.23 s per image; its 30
//! images take about 8 s. The budget bounds a big model's run to about 10 s under such load
//! (about 4 instructions per MAC), where its 200 images would take 46 s.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

use fashion_mnist::Split;
use infer_core::Model;
use model_report::{FirmwareReport, InstructionCounts, evaluate_int8_any};

use crate::MAX_OPS;

mod elf;
mod needs;
mod output;
mod report;

pub use elf::read_sizes;
pub use needs::{Board, IMAGE_FLASH_BYTES, ModelNeeds, NoFit};
pub use report::{CMSIS_NN_INSTRUCTIONS, COMMITTED_MODEL_LIMIT, describe, readme_section};

use output::parse_output;

/// Rust target of the firmware.
pub const TARGET: &str = "thumbv7em-none-eabihf";
/// The QEMU binary (Debian package `qemu-system-arm`).
pub const QEMU: &str = "qemu-system-arm";
/// The emulated board and CPU.
pub const MACHINE: &str = "qemu-system-arm -machine mps2-an386 -cpu cortex-m4";
/// Instructions per SysTick tick under `-icount shift=0` (1 ns per instruction, 25 MHz clock).
pub const INSNS_PER_TICK: u64 = 40;
/// Test images a firmware runs at most (and the firmware's own default).
pub const DEFAULT_IMAGES: usize = 200;
/// Test images a firmware runs at least, however big the model.
pub const MIN_IMAGES: usize = 20;
/// Multiply-accumulates one firmware run may spend over all its images (images x MACs per
/// inference): the bound on QEMU time behind [`images_for`].
pub const MAC_BUDGET: u64 = 1_000_000_000;
/// Firmware runs in flight by default: one builds (builds are serial) while another runs QEMU.
pub const DEFAULT_JOBS: usize = 2;
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
    /// The model with its test images cannot fit the board: refused before building, or by the
    /// linker, or after a run whose RAM (statics, scratch, peak stack) exceeds the board's.
    #[error("{path}: does not fit the board: {reason}; see firmware/memory.x")]
    DoesNotFit {
        /// The `.fmq` file.
        path: PathBuf,
        /// What it needs and what the board has.
        reason: NoFit,
    },
    /// The firmware's linker script lacks a memory region.
    #[error("{path}: {message}")]
    LinkerScript {
        /// The `memory.x` file.
        path: PathBuf,
        /// What was wrong.
        message: String,
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
    /// Test images to embed (the first ones of the test set); `None`: [`images_for`] the
    /// model's MACs.
    pub images: Option<usize>,
    /// Fashion-MNIST folder for the firmware's build script (else its default lookup).
    pub data_dir: Option<PathBuf>,
    /// QEMU time limit.
    pub timeout: Duration,
    /// Exact instruction counter: a QEMU TCG plugin taking `marker=<addr>,out=<file>` and
    /// writing `M <count>` at each marker hit (`tools/qemu-insn-count.c`, built as a shared
    /// library; see `tools/README.md`).
    pub plugin: Option<PathBuf>,
}

impl DeviceOptions {
    /// Defaults for `model` in the repository at `root`: [`images_for`] its MACs, the default
    /// dataset lookup, [`DEFAULT_TIMEOUT`], no plugin.
    pub fn new(root: impl Into<PathBuf>, model: impl Into<String>) -> Self {
        Self {
            root: root.into(),
            model: model.into(),
            images: None,
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
    /// The model as the build saw it on the host (ops built, sizes).
    pub needs: ModelNeeds,
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

/// Test images for a model of `macs` multiply-accumulates per inference: [`DEFAULT_IMAGES`] up
/// to 5M MACs, then [`MAC_BUDGET`] / `macs` rounded down to tens, at least [`MIN_IMAGES`] (see
/// the module docs for the measurements behind it).
///
/// ```
/// use firmware_sim::device::images_for;
/// assert_eq!(images_for(4_241_152), 200); // s5-cnn
/// assert_eq!(images_for(7_599_872), 130); // s2-m4a
/// assert_eq!(images_for(29_424_640), 30); // s2-m6
/// assert_eq!(images_for(200_000_000), 20);
/// ```
pub fn images_for(macs: u64) -> usize {
    let fit = usize::try_from(MAC_BUDGET / macs.max(1)).unwrap_or(usize::MAX);
    (fit.min(DEFAULT_IMAGES) / 10 * 10).max(MIN_IMAGES)
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

/// Builds the firmware for `opts.model` with only the model's ops, runs it under QEMU and
/// measures it. A model that cannot fit the board (`firmware/memory.x`) with its test images is
/// refused before the build, by the linker, or after the run when its RAM exceeds the board's
/// ([`DeviceError::DoesNotFit`]).
pub fn run(opts: &DeviceOptions) -> Result<DeviceRun, DeviceError> {
    let model_path = opts.root.join("models").join(format!("{}.fmq", opts.model));
    let needs = ModelNeeds::read(&model_path)?;
    let images = opts.images.unwrap_or_else(|| images_for(needs.macs));
    let board = Board::read(&opts.root.join("firmware").join("memory.x"))?;
    needs.check_fits(&board, images)?;
    if !qemu_available() {
        return Err(DeviceError::QemuMissing);
    }
    let (elf, build_time) = build(opts, &needs, images, &board)?;
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
    if parsed.images.len() != images {
        return Err(DeviceError::Incomplete(format!(
            "built with {images} images but the firmware reports {}",
            parsed.images.len()
        )));
    }
    let ram = sizes.ram_static + sizes.scratch + parsed.stack.peak();
    if ram > board.ram {
        // The stack ran into the statics: the run may have passed by luck.
        return Err(DeviceError::DoesNotFit {
            path: model_path,
            reason: NoFit {
                memory: "RAM",
                needed: ram,
                available: board.ram,
                what: format!(
                    "statics {} B + scratch {} B + peak stack {} B, measured",
                    sizes.ram_static,
                    sizes.scratch,
                    parsed.stack.peak()
                ),
            },
        });
    }
    let plugin_instructions = match plugin_out {
        Some(path) => Some(read_plugin_counts(&path, parsed.images.len())?),
        None => None,
    };
    Ok(DeviceRun {
        model: parsed.model,
        needs,
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

/// Runs every job with up to `jobs` runs in flight (builds stay serial: one run builds while
/// another runs QEMU), and hands each result to `each` on the calling thread, in the order of
/// `runs`.
pub fn run_all(
    runs: &[DeviceOptions],
    jobs: usize,
    mut each: impl FnMut(&DeviceOptions, Result<DeviceRun, DeviceError>),
) {
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, runs.len().max(1)) {
            let tx = tx.clone();
            let next = &next;
            scope.spawn(move || {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(opts) = runs.get(index) else { break };
                    if tx.send((index, run(opts))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        // Results arrive in the order runs finish; hand them on in the order of `runs`.
        let mut done: Vec<Option<Result<DeviceRun, DeviceError>>> =
            runs.iter().map(|_| None).collect();
        let mut handed = 0;
        for (index, result) in rx {
            done[index] = Some(result);
            while let Some(result) = done.get_mut(handed).and_then(Option::take) {
                each(&runs[handed], result);
                handed += 1;
            }
        }
    });
}

/// `cargo build --release --no-default-features --features <the model's ops>` of `firmware/`
/// with `images` test images; returns the ELF, copied to a name of its own
/// (`firmware-<model>-<images>.elf`), and the time the build took (without waiting for another
/// one). A link that overflows the board's flash or RAM is [`DeviceError::DoesNotFit`].
fn build(
    opts: &DeviceOptions,
    needs: &ModelNeeds,
    images: usize,
    board: &Board,
) -> Result<(PathBuf, Duration), DeviceError> {
    let features = needs.firmware_features();
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
        // Only the model's ops: the others' kernels are not linked.
        .arg("--no-default-features")
        .arg("--features")
        .arg(features.join(","))
        .env("FIRMWARE_MODEL", &opts.model)
        .env("FIRMWARE_IMAGES", images.to_string())
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
    let start = Instant::now();
    let out = cmd.output().map_err(|source| DeviceError::Spawn {
        command: format!("{} build --release (firmware)", Path::new(&cargo).display()),
        source,
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if let Some(reason) = link_overflow(&stderr, needs, images, board) {
            return Err(DeviceError::DoesNotFit {
                path: needs.path.clone(),
                reason,
            });
        }
        return Err(DeviceError::Build {
            model: opts.model.clone(),
            stderr,
        });
    }
    let dir = target_dir.join(TARGET).join("release");
    let built = dir.join("firmware");
    let elf = dir.join(format!("firmware-{}-{images}.elf", opts.model));
    std::fs::copy(&built, &elf).map_err(|source| DeviceError::Io {
        path: built.clone(),
        source,
    })?;
    Ok((elf, start.elapsed()))
}

/// The memory a failed link overflowed, from the linker's `section '..' will not fit in region
/// 'FLASH': overflowed by N bytes` (the largest overflow of the first region named).
fn link_overflow(stderr: &str, needs: &ModelNeeds, images: usize, board: &Board) -> Option<NoFit> {
    let (region, over) = stderr
        .lines()
        .filter_map(|line| {
            let rest = line.split("will not fit in region").nth(1)?;
            let region = rest
                .split(['\'', '`', '"'])
                .find(|s| !s.trim().is_empty())?;
            let bytes = rest
                .split("overflowed by")
                .nth(1)?
                .split_whitespace()
                .next()?;
            Some((region.trim().to_string(), bytes.parse::<u64>().ok()?))
        })
        .reduce(|a, b| if b.0 == a.0 && b.1 > a.1 { b } else { a })?;
    let image_bytes = images as u64 * IMAGE_FLASH_BYTES;
    match region.as_str() {
        "FLASH" => Some(NoFit {
            memory: "flash",
            needed: board.flash + over,
            available: board.flash,
            what: format!(
                "code + model {} B + {images} test images {image_bytes} B, as linked",
                needs.model_bytes
            ),
        }),
        "RAM" => Some(NoFit {
            memory: "RAM",
            needed: board.ram + over,
            available: board.ram,
            what: format!(
                "statics + scratch {} B, as linked, before the stack",
                needs.scratch_len
            ),
        }),
        _ => None,
    }
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
    let model = Model::<MAX_OPS>::from_bytes(&bytes).map_err(model_err)?;
    let mut scratch = vec![0_i8; model.scratch_len()];
    let eval =
        evaluate_int8_any(&model, &test.head(images), &mut scratch, images).map_err(model_err)?;
    Ok(eval
        .predictions
        .into_iter()
        .map(usize::from)
        .zip(eval.logits)
        .collect())
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

#[cfg(test)]
mod tests {
    use infer_core::ops::OpKind;

    use super::*;

    #[test]
    fn a_link_over_the_flash_is_a_model_that_does_not_fit() {
        // rust-lld's errors for s1-mlp (4166075 B) with 20 test images.
        let stderr = "error: linking with `rust-lld` failed: exit status: 1\n  = note: rust-lld: \
                      error: section '.test_images' will not fit in region 'FLASH': overflowed \
                      by 14632 bytes\n          rust-lld: error: section '.data' will not fit \
                      in region 'FLASH': overflowed by 14632 bytes\n          rust-lld: error: \
                      section '.gnu.sgstubs' will not fit in region 'FLASH': overflowed by 14656 \
                      bytes\n";
        let needs = ModelNeeds {
            path: "s1-mlp.fmq".into(),
            model_bytes: 4_166_075,
            scratch_len: 3000,
            macs: 4_119_000,
            ops: 9,
            view_bytes: 1700,
            kinds: vec![OpKind::Flatten, OpKind::Dense],
        };
        let board = Board {
            flash: 4 << 20,
            ram: 4 << 20,
        };
        let no_fit = link_overflow(stderr, &needs, 20, &board).unwrap();
        assert_eq!(
            no_fit.to_string(),
            "needs 4208960 B of flash, the board has 4194304 B (code + model 4166075 B + 20 test \
             images 15700 B, as linked)"
        );
        let ram = "rust-lld: error: section '.bss' will not fit in region 'RAM': overflowed by 8 \
                   bytes";
        let no_fit = link_overflow(ram, &needs, 20, &board).unwrap();
        assert_eq!((no_fit.memory, no_fit.needed), ("RAM", (4 << 20) + 8));
        assert_eq!(
            link_overflow("error[E0308]: mismatched types", &needs, 20, &board),
            None
        );
    }

    #[test]
    fn big_models_run_fewer_images() {
        assert_eq!(images_for(0), DEFAULT_IMAGES);
        assert_eq!(images_for(281_640), 200); // s3-lenet-base
        assert_eq!(images_for(5_000_000), 200);
        assert_eq!(images_for(5_000_001), 190);
        assert_eq!(images_for(14_285_480), 70); // s3-lenet-tuned
        assert_eq!(images_for(18_285_824), 50); // s3-alexnet-real
        assert_eq!(images_for(25_865_728), 30); // s1-cnn64
        assert_eq!(images_for(u64::MAX), MIN_IMAGES);
    }
}
