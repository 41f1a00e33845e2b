//! Cortex-M4 firmware: one exported model and a batch of Fashion-MNIST test images, embedded at
//! build time (`build.rs`), classified by infer-core exactly as on the host, and reported over
//! semihosting (QEMU `mps2-an386`).
//!
//! What it measures:
//!
//! - the int8 logits and class of every embedded image, and the accuracy on the batch;
//! - SysTick ticks per inference: SysTick runs on the 25 MHz core clock, and under QEMU's
//!   `-icount shift=0` one instruction takes 1 ns of virtual time, so one tick is 40
//!   instructions (checked by a calibration loop of known length);
//! - peak stack, by stack painting: free RAM below the stack pointer is filled with a pattern,
//!   the code runs, and the deepest overwritten word gives the stack used, counted from the top.
//!
//! The marker function [`insn_marker`] is called right before and after each timed inference, so
//! an instruction-counting QEMU plugin can bracket the same region exactly.
//!
//! Text output (the default), one record per line, parsed by `firmware-sim`'s device runner:
//!
//! ```text
//! model <id> images <n> model_bytes <n> scratch <n>
//! calibrate <loop instructions> <ticks>
//! logits <image> <label> <class> <ticks> <logit>...
//! accuracy <correct> <images>
//! stack <load bytes> <inference bytes> <run bytes>
//! done
//! ```
//!
//! With the `defmt` feature the same records go out as defmt frames over semihosting.
#![no_std]
#![no_main]

use core::mem::MaybeUninit;
use core::ptr::{addr_of, addr_of_mut};

use cortex_m::peripheral::SYST;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::{ExceptionFrame, entry, exception};
use cortex_m_semihosting::debug;
use infer_core::{IMAGE_LEN, Model};

mod config {
    include!(concat!(env!("OUT_DIR"), "/config.rs"));
}
mod report;

use config::{IMAGES, MAX_OPS, MODEL_ID, MODEL_LEN, SCRATCH_LEN};

/// The loaded model: exactly as many ops as the embedded model has.
type LoadedModel = Model<'static, MAX_OPS>;

/// The exported model, in its own output section (`.model`, see `memory.x`).
#[unsafe(link_section = ".model")]
#[unsafe(no_mangle)]
static MODEL: [u8; MODEL_LEN] = *include_bytes!(concat!(env!("OUT_DIR"), "/model.fmq"));

/// The first [`IMAGES`] test images, 784 raw pixels each, kept out of the code-and-model flash
/// figure by their own output section (`.test_images`).
#[unsafe(link_section = ".test_images")]
#[unsafe(no_mangle)]
static TEST_IMAGES: [u8; IMAGES * IMAGE_LEN] =
    *include_bytes!(concat!(env!("OUT_DIR"), "/images.bin"));

/// The labels of [`TEST_IMAGES`].
#[unsafe(link_section = ".test_images")]
#[unsafe(no_mangle)]
static TEST_LABELS: [u8; IMAGES] = *include_bytes!(concat!(env!("OUT_DIR"), "/labels.bin"));

/// The one scratch buffer, exactly `Model::scratch_len` bytes (computed by `build.rs`).
#[unsafe(no_mangle)]
static mut SCRATCH: [i8; SCRATCH_LEN] = [0; SCRATCH_LEN];

/// Pattern written over free stack before a measurement.
const PAINT: u32 = 0xC0DE_F00D;

/// Iterations of the SysTick calibration loop (two instructions each).
const CALIBRATION_LOOPS: u32 = 100_000;

/// SysTick reload: the full 24-bit range, so differences are taken modulo 2^24.
const SYST_RELOAD: u32 = 0x00FF_FFFF;

/// Called right before and right after each timed inference; an instruction-counting QEMU
/// plugin takes its address from the ELF and records the running count on each call.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn insn_marker() {
    cortex_m::asm::nop();
}

#[entry]
fn main() -> ! {
    let status = match run() {
        Ok(()) => debug::EXIT_SUCCESS,
        Err(e) => {
            report::error(e);
            debug::EXIT_FAILURE
        }
    };
    exit(status)
}

fn run() -> Result<(), infer_core::Error> {
    let Some(mut peripherals) = cortex_m::Peripherals::take() else {
        return Ok(()); // unreachable: taken once, here
    };
    let syst = &mut peripherals.SYST;
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(SYST_RELOAD);
    syst.clear_current();
    syst.enable_counter();

    // SAFETY: the only reference to SCRATCH, taken once in the single thread of the firmware
    // (no interrupt handler touches it).
    let scratch: &mut [i8; SCRATCH_LEN] = unsafe { &mut *addr_of_mut!(SCRATCH) };
    let (images, _) = TEST_IMAGES.as_chunks::<IMAGE_LEN>();

    report::header(MODEL_ID, IMAGES, MODEL_LEN, SCRATCH_LEN);
    report::calibration(
        2 * CALIBRATION_LOOPS,
        time(|| busy_loop(CALIBRATION_LOOPS)).1,
    );

    let (model, load_stack) = with_stack_measured(load_model);
    let model = model?;
    let (first, inference_stack) =
        with_stack_measured(|| model.predict(&images[0], &mut scratch[..]).map(|p| p.class));
    first?;

    let (correct, run_stack) = with_stack_measured(|| -> Result<usize, infer_core::Error> {
        let mut correct = 0;
        for (i, (pixels, &label)) in images.iter().zip(&TEST_LABELS).enumerate() {
            insn_marker();
            let (prediction, ticks) = time(|| model.predict(pixels, &mut scratch[..]));
            insn_marker();
            let prediction = prediction?;
            correct += usize::from(prediction.class == usize::from(label));
            report::logits(i, label, prediction.class, ticks, prediction.logits);
        }
        Ok(correct)
    });
    report::accuracy(correct?, IMAGES);
    report::stack(load_stack, inference_stack, run_stack);
    report::done();
    Ok(())
}

/// Validates the embedded model into a static: the view (about 190 bytes per op, `MAX_OPS` of
/// them) then lives in `.bss` (counted as static RAM) instead of in `run`'s stack frame for the
/// whole run.
#[inline(never)]
fn load_model() -> Result<&'static LoadedModel, infer_core::Error> {
    let model = LoadedModel::from_bytes(&MODEL)?;
    match cortex_m::singleton!(LOADED: MaybeUninit<LoadedModel> = MaybeUninit::uninit()) {
        Some(slot) => Ok(slot.write(model)),
        None => panic!("load_model called twice"),
    }
}

/// Runs `f` and returns its result with the SysTick ticks it took.
#[inline(always)]
fn time<R>(f: impl FnOnce() -> R) -> (R, u32) {
    let start = SYST::get_current();
    let result = f();
    let end = SYST::get_current();
    // SysTick counts down from SYST_RELOAD and wraps.
    (result, start.wrapping_sub(end) & SYST_RELOAD)
}

/// Exactly `2 * n` instructions: `subs` and `bne` per iteration.
#[inline(always)]
fn busy_loop(n: u32) {
    // SAFETY: register-only loop, no memory access, no stack use.
    unsafe {
        core::arch::asm!(
            "1:",
            "subs {0}, {0}, #1",
            "bne 1b",
            inout(reg) n => _,
            options(nomem, nostack),
        );
    }
}

/// Runs `f` with the free stack painted, and returns its result with the peak stack depth in
/// bytes, counted from the top of the stack (so it includes the callers' frames).
#[inline(never)]
fn with_stack_measured<R>(f: impl FnOnce() -> R) -> (R, usize) {
    paint_free_stack();
    let result = f();
    (result, stack_top() - deepest_overwritten())
}

/// Address of the initial stack pointer (the top of RAM, from cortex-m-rt's linker script).
fn stack_top() -> usize {
    unsafe extern "C" {
        static _stack_start: u32;
    }
    addr_of!(_stack_start) as usize
}

/// Bytes left unpainted below the stack pointer: this function's own frame (pushed after the
/// stack pointer is read). Any measured depth is at least the caller's depth plus this margin.
const PAINT_MARGIN: usize = 64;

/// Fills every word from the end of static RAM up to [`PAINT_MARGIN`] below the current stack
/// pointer with [`PAINT`].
#[inline(never)]
fn paint_free_stack() {
    let bottom = cortex_m_rt::heap_start() as usize;
    let sp = (cortex_m::register::msp::read() as usize & !3).saturating_sub(PAINT_MARGIN);
    let mut addr = bottom;
    while addr < sp {
        // SAFETY: `bottom..sp` is RAM that no static and no live stack frame uses (the stack
        // grows down, this function's frame lies within the margin, and no interrupt is
        // enabled).
        unsafe { core::ptr::write_volatile(addr as *mut u32, PAINT) };
        addr += 4;
    }
}

/// The lowest address whose word no longer holds [`PAINT`].
fn deepest_overwritten() -> usize {
    let mut addr = cortex_m_rt::heap_start() as usize;
    let top = stack_top();
    // SAFETY: reads of RAM between the end of static data and the top of the stack.
    while addr < top && unsafe { core::ptr::read_volatile(addr as *const u32) } == PAINT {
        addr += 4;
    }
    addr
}

/// Ends the QEMU run with `status` (semihosting `SYS_EXIT`).
fn exit(status: debug::ExitStatus) -> ! {
    debug::exit(status);
    loop {
        cortex_m::asm::bkpt();
    }
}

/// A panic cannot happen in infer-core after `Model::from_bytes`; should one happen anyway, end
/// the run with a failure instead of hanging. The location is ignored on purpose: no source path
/// ends up in the binary, so sizes do not depend on where the repository is cloned.
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    exit(debug::EXIT_FAILURE)
}

#[exception]
unsafe fn HardFault(_: &ExceptionFrame) -> ! {
    exit(debug::EXIT_FAILURE)
}
