//! What the firmware build needs to know about a model, read on the host before building: the
//! ops it uses (the firmware links only those, through its `op-*` features) and whether it fits
//! the board's memory at all (`firmware/memory.x`).

use std::fmt;
use std::path::{Path, PathBuf};

use infer_core::Model;
use infer_core::ops::OpKind;

use super::DeviceError;
use crate::MAX_OPS;

/// Bytes one embedded test image takes in flash: 784 pixels and its label.
pub const IMAGE_FLASH_BYTES: u64 = 28 * 28 + 1;

/// A model as the firmware build sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelNeeds {
    /// The `.fmq` file.
    pub path: PathBuf,
    /// Length of the file: the flash the model takes.
    pub model_bytes: u64,
    /// Scratch bytes the model needs ([`Model::scratch_len`]).
    pub scratch_len: usize,
    /// Multiply-accumulates per inference ([`Model::macs`]).
    pub macs: u64,
    /// Number of ops: the op capacity of the firmware's `Model`.
    pub ops: usize,
    /// RAM of the loaded model view on the device, at least (its ops; the firmware keeps it in
    /// a static).
    pub view_bytes: u64,
    /// The kinds of op the model uses, each once, in order of first use.
    pub kinds: Vec<OpKind>,
}

impl ModelNeeds {
    /// Loads the model at `path` with infer-core on the host ([`MAX_OPS`] ops at most).
    pub fn read(path: &Path) -> Result<Self, DeviceError> {
        let bytes = std::fs::read(path).map_err(|source| DeviceError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let model = Model::<MAX_OPS>::from_bytes(&bytes).map_err(|source| DeviceError::Model {
            path: path.to_path_buf(),
            source,
        })?;
        let mut kinds = Vec::new();
        for kind in model.ops().iter().map(|op| op.kind()) {
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        let ops = model.ops().len();
        let view_bytes = size_of_val(model.ops());
        Ok(Self {
            path: path.to_path_buf(),
            model_bytes: bytes.len() as u64,
            scratch_len: model.scratch_len(),
            macs: model.macs(),
            ops,
            view_bytes: view_bytes as u64,
            kinds,
        })
    }

    /// The firmware's cargo features that build exactly the model's ops: `op-<feature>` for
    /// each infer-core op feature ([`OpKind::feature`]; flatten has none, it is always built).
    pub fn firmware_features(&self) -> Vec<String> {
        self.kinds
            .iter()
            .filter_map(|k| k.feature())
            .map(|f| format!("op-{f}"))
            .collect()
    }

    /// Checks that the model, with `images` embedded test images, can fit `board` before the
    /// firmware is built: flash for the model file and the images, RAM for the scratch buffer
    /// and the loaded model view (code, other statics and the stack come on top, so passing
    /// does not guarantee a fit, but failing rules it out).
    pub fn check_fits(&self, board: &Board, images: usize) -> Result<(), DeviceError> {
        board
            .check_fits(
                self.model_bytes,
                self.scratch_len as u64,
                self.view_bytes,
                images,
            )
            .map_err(|reason| DeviceError::DoesNotFit {
                path: self.path.clone(),
                reason,
            })
    }
}

/// The board's memory a model (with its embedded test images) would need, over what it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoFit {
    /// `flash` or `RAM`.
    pub memory: &'static str,
    /// Bytes needed at least.
    pub needed: u64,
    /// Bytes the board has.
    pub available: u64,
    /// What the needed bytes are.
    pub what: String,
}

impl fmt::Display for NoFit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "needs {} B of {}, the board has {} B ({})",
            self.needed, self.memory, self.available, self.what
        )
    }
}

/// Flash and RAM of the board, as the firmware's linker script gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Board {
    /// Bytes of flash (the `FLASH` region).
    pub flash: u64,
    /// Bytes of RAM (the `RAM` region).
    pub ram: u64,
}

impl Board {
    /// Checks, before any build, that a model of `model_bytes` with `images` embedded test images
    /// ([`IMAGE_FLASH_BYTES`] each) fits the flash, and its scratch buffer and loaded view (
    /// `view_bytes`, about 190 bytes per op; 0 when unknown) the RAM. Code, the other statics
    /// and the stack come on top: passing does not guarantee a fit (the linker and the run
    /// decide), failing rules it out.
    pub fn check_fits(
        &self,
        model_bytes: u64,
        scratch_bytes: u64,
        view_bytes: u64,
        images: usize,
    ) -> Result<(), NoFit> {
        let image_bytes = (images as u64).saturating_mul(IMAGE_FLASH_BYTES);
        let flash = model_bytes.saturating_add(image_bytes);
        if flash > self.flash {
            return Err(NoFit {
                memory: "flash",
                needed: flash,
                available: self.flash,
                what: format!(
                    "model {model_bytes} B + {images} test images {image_bytes} B, before code"
                ),
            });
        }
        let ram = scratch_bytes.saturating_add(view_bytes);
        if ram > self.ram {
            return Err(NoFit {
                memory: "RAM",
                needed: ram,
                available: self.ram,
                what: format!(
                    "scratch {scratch_bytes} B + model view {view_bytes} B, before the other \
                     statics and the stack"
                ),
            });
        }
        Ok(())
    }

    /// Reads the `FLASH` and `RAM` regions of a `memory.x` (`LENGTH = 4M`, `256K` or bytes).
    pub fn read(memory_x: &Path) -> Result<Self, DeviceError> {
        let text = std::fs::read_to_string(memory_x).map_err(|source| DeviceError::Io {
            path: memory_x.to_path_buf(),
            source,
        })?;
        let region = |name: &str| {
            region_length(&text, name).ok_or_else(|| DeviceError::LinkerScript {
                path: memory_x.to_path_buf(),
                message: format!("no `{name} : ORIGIN = .., LENGTH = ..` region"),
            })
        };
        Ok(Self {
            flash: region("FLASH")?,
            ram: region("RAM")?,
        })
    }
}

/// The `LENGTH` of the memory region `name` in a linker script's `MEMORY` block.
fn region_length(script: &str, name: &str) -> Option<u64> {
    script.lines().find_map(|line| {
        let (region, rest) = line.split_once(':')?;
        if region.trim() != name {
            return None;
        }
        let length = rest.split(',').find_map(|part| {
            let (key, value) = part.split_once('=')?;
            (key.trim() == "LENGTH").then(|| value.trim())
        })?;
        let (digits, scale) = match length.as_bytes().last()? {
            b'K' | b'k' => (&length[..length.len() - 1], 1024),
            b'M' | b'm' => (&length[..length.len() - 1], 1024 * 1024),
            _ => (length, 1),
        };
        parse_number(digits.trim())?.checked_mul(scale)
    })
}

/// A decimal or `0x` hexadecimal number.
fn parse_number(text: &str) -> Option<u64> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_region_lengths() {
        let script = "MEMORY\n{\n  FLASH : ORIGIN = 0x00000000, LENGTH = 4M\n  RAM   : ORIGIN = \
                      0x20000000, LENGTH = 0x4000\n  CCM : ORIGIN = 0x10000000, LENGTH = 64K\n}\n";
        assert_eq!(region_length(script, "FLASH"), Some(4 << 20));
        assert_eq!(region_length(script, "RAM"), Some(0x4000));
        assert_eq!(region_length(script, "CCM"), Some(64 << 10));
        assert_eq!(region_length(script, "ROM"), None);
    }

    #[test]
    fn the_committed_board_is_4_mib_each() {
        let memory_x = Path::new(env!("CARGO_MANIFEST_DIR")).join("../firmware/memory.x");
        let board = Board::read(&memory_x).unwrap();
        assert_eq!(
            board,
            Board {
                flash: 4 << 20,
                ram: 4 << 20
            }
        );
    }

    #[test]
    fn refuses_what_cannot_fit() {
        let needs = ModelNeeds {
            path: "big.fmq".into(),
            model_bytes: 3_000_000,
            scratch_len: 1000,
            macs: 2000,
            ops: 3,
            view_bytes: 600,
            kinds: vec![OpKind::Flatten, OpKind::Dense],
        };
        let board = Board {
            flash: 4 << 20,
            ram: 4 << 20,
        };
        assert!(needs.check_fits(&board, 200).is_ok());
        let err = needs.check_fits(&board, 2000).unwrap_err().to_string();
        assert!(
            err.contains("needs 4570000 B of flash, the board has 4194304 B"),
            "{err}"
        );
        let small = Board {
            flash: 4 << 20,
            ram: 1024,
        };
        let err = needs.check_fits(&small, 1).unwrap_err().to_string();
        assert!(err.contains("needs 1600 B of RAM"), "{err}");
        assert_eq!(needs.firmware_features(), ["op-dense"]);
    }
}
