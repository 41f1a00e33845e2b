//! Flash and RAM sizes read from the firmware's ELF.

use std::path::Path;

use object::{Object, ObjectSection, ObjectSymbol, SectionFlags, SectionKind};

use super::{DeviceError, FirmwareSizes, RAM_ORIGIN};

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
