#!/usr/bin/env python3
"""Renames the tensors of a float weights file saved before tensors were named by layer path:
`layer<i>.weight` becomes `<i>.weight` (the names PyTorch's nn.Sequential and candle's
VarBuilder give), the data bytes untouched. This is how the three committed models' weights
moved to the new names; `tests/parity.rs` checks their float accuracy is still the recorded one.

    python3 tools/rename_safetensors_v1.py models/<id>.safetensors

A safetensors file is an 8-byte little-endian header length, a JSON header (name -> dtype,
shape, data offsets relative to the data section), then the data section.
"""
import json
import re
import struct
import sys


def main():
    path = sys.argv[1]
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    renamed = {}
    for name, info in header.items():
        new = re.sub(r"^layer(\d+)\.", r"\1.", name)
        renamed[new] = info
    text = json.dumps(renamed, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # keep the data section 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)
    print(f"{path}: {sorted(k for k in renamed if k != '__metadata__')}")


if __name__ == "__main__":
    main()
