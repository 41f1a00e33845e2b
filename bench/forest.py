#!/usr/bin/env python3
"""Random forest on raw pixels: scikit-learn against our trainer's `s1-rf`, same machine, one run.

    bash bench/setup-forest.sh             # once: bench/.venv-forest with scikit-learn + numpy
    python3 bench/forest.py [--repeats 3] [--train-limit 10000 | --full] [--trees 100] \
        [--threads 1 2] [--crate-trees 10] [--crate-train-limit 10000] [--crate-repeats 3] \
        [--results bench/results-forest.md]

Both sides fit a forest of --trees trees (default 100, S1's) with seed 42 on the first
--train-limit training images (default 10,000; --full: all 60,000) and classify the full
10,000-image test set:

- scikit-learn: `RandomForestClassifier(n_estimators=trees, random_state=42, n_jobs=N)`
  (its defaults otherwise: Gini, sqrt(784) = 28 candidate pixels per node, grown until pure,
  bootstrap), run by this script in bench/.venv-forest/bin/python (`--sklearn-worker`), which
  times `fit` and `predict` in-process;
- ours: `trainer train -m s1-rf --trees T [--train-limit N] --out-dir <tmp> -q` with
  `RAYON_NUM_THREADS=N` (the trainer is built once with `cargo build --release -p trainer`,
  honouring CARGO_TARGET_DIR, and copied aside); fit and predict seconds are read from the
  report it writes, `<tmp>/forests/s1-rf.json`.

For each of --repeats rounds and each thread count (--threads, default 1 and 2), scikit-learn
and then the trainer run back to back, so both see the same background load. Reported per
thread count: test accuracy, median fit and predict seconds, and the ratio trainer /
scikit-learn of the median fit seconds (above 1: ours is slower); also the CPU seconds of each
whole process (getrusage of the child: loading the data, fitting, predicting; scikit-learn's also
includes importing it), which moves less than wall time when other jobs share the cores.

Then it builds and runs the crate comparison, bench/forest-crates (smartcore 0.7 vs
linfa-ensemble 0.8, --crate-trees trees on the first --crate-train-limit images,
--crate-repeats alternating rounds), and includes its table.

Writes everything, with the command, date, CPU, nproc, load average at start and end, versions
and the per-round numbers, to bench/results-forest.md (--results), and prints it. The Python
side of the orchestration is standard library only.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import json
import os
import platform
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
VENV_PY = BENCH / ".venv-forest" / "bin" / "python"
CRATES = BENCH / "forest-crates"
DEBIAN_DATA_DIR = Path("/usr/share/datasets/fashion-mnist")
SEED = 42


def log(msg: str) -> None:
    print(f"[forest] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# The scikit-learn worker (runs in bench/.venv-forest).


def data_dir() -> Path:
    """The Fashion-MNIST folder, as the dataset crate finds it: $FASHION_MNIST_DIR, then
    Debian's."""
    names = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    candidates = [Path(d) for d in [os.environ.get("FASHION_MNIST_DIR")] if d]
    candidates.append(DEBIAN_DATA_DIR)
    for d in candidates:
        if all((d / n).is_file() for n in names):
            return d
    raise SystemExit(f"Fashion-MNIST not found in {', '.join(map(str, candidates))}")


def read_idx(path: Path, magic: int, count: int, item: int):
    """The `count` items of `item` bytes of a gzip IDX file, as a numpy uint8 array."""
    import numpy as np

    data = gzip.decompress(path.read_bytes())
    header = 16 if item > 1 else 8
    got_magic = int.from_bytes(data[:4], "big")
    got_count = int.from_bytes(data[4:8], "big")
    if got_magic != magic or got_count != count or len(data) != header + count * item:
        raise SystemExit(f"{path}: not an IDX file of {count} items of {item} bytes "
                         f"(magic {got_magic:#x}, count {got_count}, {len(data)} bytes)")
    arr = np.frombuffer(data, dtype=np.uint8, offset=header)
    return arr.reshape(count, item) if item > 1 else arr


def sklearn_worker(args: argparse.Namespace) -> None:
    """Fits and evaluates scikit-learn's forest; prints one JSON object."""
    import numpy as np
    import sklearn
    from sklearn.ensemble import RandomForestClassifier

    d = data_dir()
    x = read_idx(d / "train-images-idx3-ubyte.gz", 0x803, 60000, 784)
    y = read_idx(d / "train-labels-idx1-ubyte.gz", 0x801, 60000, 1)
    xt = read_idx(d / "t10k-images-idx3-ubyte.gz", 0x803, 10000, 784)
    yt = read_idx(d / "t10k-labels-idx1-ubyte.gz", 0x801, 10000, 1)
    n = args.train_limit or len(y)
    # Raw pixels 0-255 as float32 (what the trees compare; scikit-learn converts to float32
    # anyway), outside the timed part.
    x, y = x[:n].astype(np.float32), y[:n]
    xt = xt.astype(np.float32)
    forest = RandomForestClassifier(n_estimators=args.trees, random_state=SEED,
                                    n_jobs=args.sklearn_worker)
    start = time.perf_counter()
    forest.fit(x, y)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    pred = forest.predict(xt)
    predict_s = time.perf_counter() - start
    print(json.dumps({
        "fit_seconds": fit_s,
        "predict_seconds": predict_s,
        "accuracy": float(np.mean(pred == yt)),
        "train_images": int(n),
        "threads": args.sklearn_worker,
        "sklearn": sklearn.__version__,
        "numpy": np.__version__,
    }))


# ---------------------------------------------------------------------------------------------
# The orchestration (standard library only).


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_state() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", ".", ":!bench"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return f"{head}{' + uncommitted changes' if dirty else ''}"
    except OSError:
        return "unknown"


def timed(cmd: list[str], env: dict | None = None, cwd: Path = ROOT
          ) -> tuple[str, float, float]:
    """Runs cmd; returns its stdout, the CPU seconds (user + system) of it and its children, and
    its wall-clock seconds. Fails with its stderr if it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {shlex.join(cmd)}\n"
                         + "\n".join(proc.stderr.splitlines()[-30:]))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return proc.stdout, cpu, wall


def cargo_executable(args: list[str], name: str) -> Path:
    """Builds with `cargo build --release <args>` and returns the path of binary `name`."""
    proc = subprocess.run(["cargo", "build", "--release", "--message-format=json", *args],
                          cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"cargo build --release {' '.join(args)} failed")
    for line in proc.stdout.splitlines():
        msg = json.loads(line)
        if (msg.get("reason") == "compiler-artifact" and msg["target"]["name"] == name
                and "bin" in msg["target"]["kind"] and msg.get("executable")):
            return Path(msg["executable"])
    raise SystemExit(f"cargo build --release {' '.join(args)}: no binary {name}")


def fmt_acc(values: list[float]) -> str:
    lo, hi = min(values) * 100, max(values) * 100
    return f"{lo:.2f}%" if abs(hi - lo) < 1e-9 else f"{lo:.2f}–{hi:.2f}%"


def fmt_each(values: list[float]) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3, help="alternating rounds (default 3)")
    p.add_argument("--train-limit", type=int, default=10_000,
                   help="the first N training images (default 10,000)")
    p.add_argument("--full", action="store_true", help="all 60,000 training images")
    p.add_argument("--trees", type=int, default=100, help="trees per forest (default 100)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                   help="thread counts, each side (default 1 2)")
    p.add_argument("--crate-trees", type=int, default=10)
    p.add_argument("--crate-train-limit", type=int, default=10_000)
    p.add_argument("--crate-repeats", type=int, default=3)
    p.add_argument("--skip-crates", action="store_true", help="leave out the crate comparison")
    p.add_argument("--results", type=Path, default=BENCH / "results-forest.md")
    p.add_argument("--sklearn-worker", type=int, metavar="N_JOBS", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.full:
        args.train_limit = None
    if args.sklearn_worker is not None:
        sklearn_worker(args)
        return
    if args.repeats < 1 or args.trees < 1 or not args.threads or min(args.threads) < 1:
        raise SystemExit("--repeats, --trees and every --threads must be at least 1")
    if not VENV_PY.exists():
        raise SystemExit(f"{VENV_PY} missing: run `bash bench/setup-forest.sh` first")

    command = shlex.join(["python3", "bench/forest.py", *sys.argv[1:]])
    started = datetime.datetime.now(datetime.timezone.utc)
    load_start = loadavg()
    tmp = Path(tempfile.mkdtemp(prefix="forest-bench-"))
    log("building the trainer (release)")
    trainer = Path(shutil.copy2(cargo_executable(["-q", "-p", "trainer"], "trainer"),
                                tmp / "trainer"))
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()

    sk: dict[int, list[dict]] = {t: [] for t in args.threads}
    ours: dict[int, list[dict]] = {t: [] for t in args.threads}
    limit = [] if args.train_limit is None else ["--train-limit", str(args.train_limit)]
    for r in range(1, args.repeats + 1):
        for t in args.threads:
            log(f"round {r}/{args.repeats}, {t} thread(s): scikit-learn")
            env = dict(os.environ, OMP_NUM_THREADS=str(t))
            out, cpu, wall = timed([str(VENV_PY), str(Path(__file__).resolve()), "--sklearn-worker",
                              str(t), "--trees", str(args.trees), *limit], env=env)
            run = json.loads(out.strip().splitlines()[-1])
            run["cpu_seconds"] = cpu
            run["wall_seconds"] = wall
            sk[t].append(run)
            log(f"  fit {run['fit_seconds']:.2f} s, accuracy {run['accuracy']:.4f}")
            log(f"round {r}/{args.repeats}, {t} thread(s): trainer")
            out_dir = tmp / f"ours-{r}-{t}"
            env = dict(os.environ, RAYON_NUM_THREADS=str(t))
            _, cpu, wall = timed([str(trainer), "train", "-m", "s1-rf", "--trees", str(args.trees),
                            *limit, "--out-dir", str(out_dir), "-q"], env=env)
            report = json.loads((out_dir / "forests" / "s1-rf.json").read_text())
            if report["threads"] != t:
                raise SystemExit(f"trainer used {report['threads']} threads, asked for {t}")
            ours[t].append({
                "fit_seconds": report["fit_seconds"],
                "predict_seconds": report["predict_seconds"],
                "accuracy": report["test"]["accuracy"],
                "train_images": report["train_images"],
                "library": report["library"],
                "cpu_seconds": cpu,
                "wall_seconds": wall,
            })
            log(f"  fit {report['fit_seconds']:.2f} s, accuracy {report['test']['accuracy']:.4f}")
    train_images = {run["train_images"] for runs in [*sk.values(), *ours.values()] for run in runs}
    if len(train_images) != 1:
        raise SystemExit(f"the sides trained on different image counts: {train_images}")
    n_train = train_images.pop()

    crates_table = ""
    if not args.skip_crates:
        log("building and running the crate comparison (bench/forest-crates)")
        exe = cargo_executable(["-q", "--manifest-path", str(CRATES / "Cargo.toml")],
                               "forest-crates")
        crates_table, _, _ = timed([str(exe), "--trees", str(args.crate_trees), "--train-limit",
                                 str(args.crate_train_limit), "--repeats",
                                 str(args.crate_repeats), "--seed", str(SEED)], cwd=CRATES)
    load_end = loadavg()

    first_sk = next(iter(sk.values()))[0]
    library = next(iter(ours.values()))[0]["library"]
    ncpu = os.cpu_count() or 0
    peak = max(float(x) for x in (load_start.split() + load_end.split()) if x != "n/a")
    load_note = (f"**Loaded machine**: the 1-minute load average reached {peak:.1f} on {ncpu} "
                 "cores (other training jobs were running), so absolute seconds are inflated and "
                 "noisy; the two sides ran back to back in each round and the ratios are what "
                 "to read." if peak > ncpu else
                 f"Load average stayed at or below the core count ({ncpu}).")

    lines = [
        "# Random forest: scikit-learn vs our trainer (`s1-rf`)",
        "",
        f"Generated by `{command}` on {started:%Y-%m-%d %H:%M} UTC; {cpu_model()}, nproc "
        f"{ncpu}, load average {load_start} at start and {load_end} at end; "
        f"scikit-learn {first_sk['sklearn']} (numpy {first_sk['numpy']}); trainer with "
        f"{library}, {rustc}; workspace at {git_state()}. Do not edit: rerun the command.",
        "",
        load_note,
        "",
        f"{args.trees} trees, seed {SEED}, the first {n_train:,} training images, all 10,000 "
        f"test images, raw pixels 0-255. scikit-learn: `RandomForestClassifier("
        f"n_estimators={args.trees}, random_state={SEED}, n_jobs=N)`; ours: `trainer train -m "
        f"s1-rf --trees {args.trees}{' --train-limit ' + str(args.train_limit) if limit else ''}"
        f"` with `RAYON_NUM_THREADS=N`. Seconds are medians over {args.repeats} alternating "
        "rounds (wall clock, fit and predict timed inside each program); ratio = trainer / "
        "scikit-learn of the median fit seconds (above 1: ours is slower).",
        "",
        "| threads | scikit-learn test acc. | trainer test acc. | scikit-learn fit s | trainer fit s "
        "| trainer / scikit-learn | scikit-learn predict s | trainer predict s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for t in args.threads:
        med = lambda runs, key: statistics.median(r[key] for r in runs)  # noqa: E731
        ratio = med(ours[t], "fit_seconds") / med(sk[t], "fit_seconds")
        lines.append(
            f"| {t} | {fmt_acc([r['accuracy'] for r in sk[t]])} "
            f"| {fmt_acc([r['accuracy'] for r in ours[t]])} "
            f"| {med(sk[t], 'fit_seconds'):.2f} | {med(ours[t], 'fit_seconds'):.2f} "
            f"| {ratio:.2f}× | {med(sk[t], 'predict_seconds'):.2f} "
            f"| {med(ours[t], 'predict_seconds'):.2f} |")
    lines += [
        "",
        "CPU seconds of each whole process (user + system: loading the data, fitting, "
        "predicting; scikit-learn's also importing it), medians; less sensitive to the "
        "background load than wall time. Core share = the process's CPU seconds / its wall "
        "seconds: when other jobs hold the cores, a process gets less than its thread count, "
        "and the two sides need not get the same share.",
        "",
        "| threads | scikit-learn CPU s | trainer CPU s | trainer / scikit-learn "
        "| scikit-learn core share | trainer core share |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for t in args.threads:
        a = statistics.median(r["cpu_seconds"] for r in sk[t])
        b = statistics.median(r["cpu_seconds"] for r in ours[t])
        share_a = statistics.median(r["cpu_seconds"] / r["wall_seconds"] for r in sk[t])
        share_b = statistics.median(r["cpu_seconds"] / r["wall_seconds"] for r in ours[t])
        lines.append(f"| {t} | {a:.2f} | {b:.2f} | {b / a:.2f}× | {share_a:.2f} "
                     f"| {share_b:.2f} |")
    lines += ["", "Each round, in order (fit s / predict s / CPU s):", ""]
    for t in args.threads:
        for name, runs in [("scikit-learn", sk[t]), ("trainer", ours[t])]:
            each = "; ".join(f"{r['fit_seconds']:.2f} / {r['predict_seconds']:.2f} / "
                             f"{r['cpu_seconds']:.2f}" for r in runs)
            lines.append(f"- {t} thread(s), {name}: {each}")
    if crates_table:
        lines += [
            "",
            "## The Rust crates: smartcore vs linfa-ensemble",
            "",
            "`bench/forest-crates` (its doc says what each library's random forest does), run by "
            "this script: smartcore 0.7's `RandomForestClassifier` and linfa-ensemble 0.8's "
            "`RandomForest`, one thread each, the same 28 candidate pixels per split (drawn per "
            "node by smartcore, per tree by linfa).",
            "",
            crates_table.strip(),
        ]
    text = "\n".join(lines) + "\n"
    args.results.write_text(text)
    print(text)
    log(f"wrote {args.results}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
