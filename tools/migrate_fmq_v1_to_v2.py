#!/usr/bin/env python3
"""Rewrites a model file of format v1 (a chain of layers) as format v2 (a graph), byte for byte
the same weights, scales, biases and requantisation, so the model's int8 logits cannot change.

This is how the three committed models moved to v2: re-exporting them from their float weights
would re-run calibration, which does not reproduce the committed files bit for bit (the MLP's
biases came out slightly different, changing the logits of 2 of 10,000 test images), while this
conversion keeps every logit (checked by tests/golden.rs against the logits recorded from the v1
files).

    python3 tools/migrate_fmq_v1_to_v2.py OLD.fmq NEW.fmq [--json models/<id>.json]

With --json, the model's JSON record gets the new file's size (`int8.model_bytes`); the scratch
size is then re-measured by `cargo run --release -p firmware-sim -- models/ --update-json`
(infer-core's planner, not this script, decides it).

Both formats are a 16-byte header (magic FMQ8, version, reserved, payload length, CRC-32) and a
postcard payload: model id, input shape, input quantisation, then the list of layers (v1) or ops
(v2), each an enum tag followed by its fields. v2 differs only in the ops: each starts with the
id of its input tensor (op i reads tensor i in a chain: 0 is the input), and a convolution's
padding is stored per side (top, bottom, left, right) instead of once, followed by its number
of channel groups (1).
"""
import argparse
import json
import struct
import zlib

MAGIC = b"FMQ8"


def varint(buf, pos):
    """Reads a postcard varint (LEB128); returns (value, new position)."""
    value, shift = 0, 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def take_varint(buf, pos):
    """The raw bytes of one varint and the position after it."""
    _, end = varint(buf, pos)
    return buf[pos:end], end


def take_bytes(buf, pos):
    """A length-prefixed byte array, raw, and the position after it."""
    n, start = varint(buf, pos)
    return buf[pos:start + n], start + n


def encode_varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def convert(v1):
    if v1[:4] != MAGIC:
        raise SystemExit("not a model file (bad magic)")
    version, _reserved, length, crc = struct.unpack("<HHII", v1[4:16])
    if version != 1:
        raise SystemExit(f"format version {version}, expected 1")
    payload = v1[16:]
    if len(payload) != length or zlib.crc32(payload) != crc:
        raise SystemExit("payload length or CRC-32 does not match the header")

    out = bytearray()
    pos = 0
    chunk, pos = take_bytes(payload, pos)  # id
    out += chunk
    for _ in range(3):  # input shape: channels, height, width
        chunk, pos = take_varint(payload, pos)
        out += chunk
    out += payload[pos:pos + 4]  # input scale, f32
    pos += 4
    chunk, pos = take_varint(payload, pos)  # input zero point
    out += chunk
    count, pos = varint(payload, pos)
    out += encode_varint(count)
    for index in range(count):
        tag, pos = varint(payload, pos)
        out += encode_varint(tag)
        out += encode_varint(index)  # the input tensor: the previous op's output
        if tag == 0:  # Conv2d: in_ch, out_ch, kernel_h, kernel_w, stride, padding
            for _ in range(2):
                chunk, pos = take_varint(payload, pos)
                out += chunk
            out += payload[pos:pos + 3]  # kernel_h, kernel_w, stride (u8, one byte each)
            padding = payload[pos + 3:pos + 4]
            out += padding * 4  # top, bottom, left, right
            out += encode_varint(1)  # groups
            pos += 4
        elif tag == 1:  # Dense: in_dim, out_dim
            for _ in range(2):
                chunk, pos = take_varint(payload, pos)
                out += chunk
        elif tag in (2, 3):  # MaxPool2d, AvgPool2d: kernel, stride (u8)
            out += payload[pos:pos + 2]
            pos += 2
            continue
        elif tag == 4:  # Flatten
            continue
        else:
            raise SystemExit(f"layer {index}: unknown v1 layer tag {tag}")
        # Conv2d and Dense: weights, then weight scales, bias, multipliers, shifts; then the
        # output quantisation (f32 scale, varint zero point) and the activation tag.
        for _ in range(5):
            chunk, pos = take_bytes(payload, pos)
            out += chunk
        out += payload[pos:pos + 4]
        pos += 4
        chunk, pos = take_varint(payload, pos)
        out += chunk
        chunk, pos = take_varint(payload, pos)
        out += chunk
    if pos != len(payload):
        raise SystemExit(f"{len(payload) - pos} trailing bytes after the layers")
    out = bytes(out)
    header = MAGIC + struct.pack("<HHII", 2, 0, len(out), zlib.crc32(out))
    return header + out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--json", help="the model's JSON record, to update int8.model_bytes")
    args = parser.parse_args()
    with open(args.old, "rb") as f:
        v2 = convert(f.read())
    with open(args.new, "wb") as f:
        f.write(v2)
    if args.json:
        with open(args.json) as f:
            record = json.load(f)
        record["int8"]["model_bytes"] = len(v2)
        with open(args.json, "w") as f:
            json.dump(record, f, indent=2)
            f.write("\n")
    print(f"{args.old} -> {args.new}: {len(v2)} bytes")


if __name__ == "__main__":
    main()
