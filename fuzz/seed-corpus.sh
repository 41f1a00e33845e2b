#!/usr/bin/env bash
# Seeds the fuzzer's corpus with the committed model files: copies models/*.fmq into
# fuzz/corpus/from_bytes_predict/, each named by its content hash as libFuzzer names its own
# entries (an existing entry of the same content is kept).
set -euo pipefail
cd "$(dirname "$0")"
corpus=corpus/from_bytes_predict
mkdir -p "$corpus"
for model in ../models/*.fmq; do
  cp "$model" "$corpus/$(sha1sum "$model" | cut -d' ' -f1)"
done
ls "$corpus" | wc -l
