#!/usr/bin/env bash
# Runs the fuzz target and records the run in RUNS.md from libFuzzer's own closing statistics.
#
#   fuzz/run.sh [JOBS] [RUNS_PER_JOB]      (defaults: 2 jobs of 5,000,000 executions each)
#   fuzz/run.sh --record RUNS_PER_JOB     (only record the run whose fuzz-*.log files are here)
#
# Do not edit this script while it runs: bash reads it as it goes.
#
# Each job is an independent libFuzzer process sharing corpus-run/ (new inputs) and the committed
# corpus; the executions of the run are the sum of the jobs' `stat::number_of_executed_units`.
# The jobs' logs stay in fuzz-<job>.log (not committed). Interrupting the run with Ctrl-C still
# records what ran.
set -euo pipefail
cd "$(dirname "$0")"
target=from_bytes_predict
commit=$(git rev-parse --short HEAD)
dirty=$(git status --porcelain -- ../infer-core fuzz_targets Cargo.toml Cargo.lock | head -n 1)
[ -n "$dirty" ] && commit="$commit (with uncommitted changes)"
status=0
if [ "${1:-}" = "--record" ]; then
  # Record the run whose logs are here (e.g. one this script could not finish recording).
  jobs=$(ls fuzz-*.log | wc -l)
  runs="${2:?--record RUNS_PER_JOB}"
  started="$(date -u -r fuzz-0.log +%Y-%m-%d) (recorded from its logs)"
else
  jobs="${1:-2}"
  runs="${2:-5000000}"
  mkdir -p corpus-run
  rm -f fuzz-*.log
  started=$(date -u +%Y-%m-%dT%H:%MZ)
  cargo +nightly fuzz run "$target" corpus-run "corpus/$target" -- \
    -jobs="$jobs" -workers="$jobs" -runs="$runs" -max_len=8192 -timeout=30 \
    -print_final_stats=1 || status=$?
fi
executions=$(cat fuzz-*.log | awk '/stat::number_of_executed_units/ {s += $2} END {print s + 0}')
per_job=$(cat fuzz-*.log | awk '/stat::number_of_executed_units/ {printf "%s%s", sep, $2; sep=" + "}')
speeds=$(cat fuzz-*.log | awk '/stat::average_exec_per_sec/ {printf "%s%s", sep, $2; sep=", "}')
crashes=$(ls artifacts/"$target" 2>/dev/null | wc -l)
if [ "$status" -eq 0 ] && [ "$crashes" -eq 0 ]; then
  result="no crash, no timeout (artifacts/ empty)"
else
  result="exit $status, $crashes file(s) in artifacts/$target/: see fuzz-*.log"
fi
printf '| %s | %s | %s jobs x -runs=%s | %s = %s | %s execs/s | %s |\n' \
  "$started" "$commit" "$jobs" "$runs" "${per_job:-0}" "$executions" "${speeds:-?}" "$result" \
  >> RUNS.md
tail -n 1 RUNS.md
exit "$status"
