#!/usr/bin/env python3
"""PyTorch vs our trainer and infer-core: same models, same settings, same machine, one run.

    bash bench/setup.sh                    # once: bench/.venv with PyTorch (CPU)
    python3 bench/compare.py [--epochs 3] [--models s5-ann s5-cnn s3-lenet-base]

First, the self-check: `torch_models.py --check` builds the PyTorch twin of every selected
model from `trainer describe` and checks its parameter count and output shape.

Training: for each model and each seed (--seeds, default 1 2 3 4 5), PyTorch
(bench/torch_models.py in bench/.venv) and then our trainer (`trainer train -m <id> --epochs N
--seed S -q`), back to back, so both see the same background load. Both follow the model's
recipe in `trainer describe` (batch size, optimizer, schedule, split, augmentation; only the
epochs are --epochs), and the run stops if the two sides trained on different numbers of images
or batch sizes. Seconds per epoch are the median over all epochs of all seeds of each side; the
ratio is trainer / PyTorch (above 1: our trainer is slower). Test accuracy is over the split's
test images (the official 10,000 unless the recipe pools them) after those N epochs, averaged
over the seeds (each framework draws its own initial weights, batch order and dropout masks from
the seed, so one run per side would compare two random draws, not the two trainers). PyTorch
runs with its own OMP_WAIT_POLICY default (for an idle machine) unless --omp-wait-policy says
otherwise: with libgomp's default, 2-thread training on a 2-core machine that another process
is using ran 5-20x slower than with PASSIVE or with 1 thread (measured while writing this), so
a busy machine wants PASSIVE. --model-train-limit ID=N trains one model on the first N images
of its split on both sides (a subset for models whose whole epochs are too long to repeat, such
as s1-resnet18); the table's recipe line gives each model's image count.

Batch-1 inference (for --infer-models, by default the selected models of at most 10M MACs per
image): after training, `trainer export` quantises the trained models to int8 and
`firmware-sim --json` times infer-core on the 10,000 test images (one thread, one image at a
time), twice: built for any x86-64 (SSE2, what `cargo build` gives) and built with
`-C target-cpu=native` (the vector units PyTorch also uses: it picks its kernels for the CPU at
run time, AVX-512 here). PyTorch float32 inference (eval, inference_mode, one thread, one image at a time,
--torch-infer-images test images after a warm-up) runs in alternation with it for --infer-rounds
rounds; images/s is the median over the rounds; the ratio is infer-core / PyTorch (above 1:
infer-core is faster).

Prints two Markdown tables and writes them, with the date, machine, load and versions, to
bench/results.md. Standard library only; the PyTorch side runs in bench/.venv/bin/python.
The Rust binaries are built once (`cargo build --release -p trainer -p firmware-sim`, honouring
CARGO_TARGET_DIR) and copied aside, so edits made while the benchmark runs do not change them.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
VENV_PY = BENCH / ".venv" / "bin" / "python"
MODELS = ["s5-ann", "s5-cnn", "s3-lenet-base"]
# Batch-1 inference rounds run infer-core over all 10,000 test images per round and variant:
# by default only for the selected models up to this many MACs per image (bigger ones would
# take many minutes a round; --infer-models chooses explicitly).
INFER_MAX_MACS = 10_000_000
# Short names of the recipe's optimizers, for the table titles.
OPTIMIZER_NAMES = {"Sgd": "SGD", "Adam": "Adam", "AdamW": "AdamW", "RmsProp": "RMSprop",
                   "Adagrad": "Adagrad", "Adadelta": "Adadelta", "Adamax": "Adamax",
                   "NAdam": "NAdam"}
README_BEGIN = "<!-- bench:begin -->"
README_END = "<!-- bench:end -->"


def log(msg: str) -> None:
    print(f"[compare] {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str], *, env: dict | None = None, check: bool = True, log_to: Path | None = None
        ) -> subprocess.CompletedProcess:
    """Runs cmd; stdout captured, stderr to log_to (or passed through)."""
    err = open(log_to, "a") if log_to else None
    try:
        proc = subprocess.run(
            cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=err, text=True
        )
    finally:
        if err:
            err.close()
    if check and proc.returncode != 0:
        tail = ""
        if log_to and log_to.exists():
            tail = "\n".join(log_to.read_text().splitlines()[-30:])
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{tail}")
    return proc


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


def nproc() -> str:
    try:
        return subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return str(os.cpu_count())


def git_state() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", ".", ":!bench"],
            cwd=ROOT, capture_output=True, text=True,
        ).stdout.strip()
        return f"{head}{' + uncommitted changes' if dirty else ''}"
    except OSError:
        return "unknown"


def build(tmp: Path) -> tuple[Path, Path, Path, str]:
    """Builds trainer and firmware-sim in release mode, and firmware-sim again with
    `-C target-cpu=native` (in its own target folder); copies them into tmp/bin."""
    log("building trainer and firmware-sim (release)")
    run(["cargo", "build", "--release", "-q", "-p", "trainer", "-p", "firmware-sim"], check=True)
    meta = json.loads(run(["cargo", "metadata", "--format-version", "1", "--no-deps"]).stdout)
    target = Path(meta["target_directory"])
    log("building firmware-sim with -C target-cpu=native")
    native_env = dict(os.environ, RUSTFLAGS="-C target-cpu=native",
                      CARGO_TARGET_DIR=str(target / "bench-native"))
    run(["cargo", "build", "--release", "-q", "-p", "firmware-sim"], env=native_env, check=True)
    bindir = tmp / "bin"
    bindir.mkdir()
    trainer = Path(shutil.copy2(target / "release" / "trainer", bindir / "trainer"))
    sim = Path(shutil.copy2(target / "release" / "firmware-sim", bindir / "firmware-sim"))
    sim_native = Path(shutil.copy2(target / "bench-native" / "release" / "firmware-sim",
                                   bindir / "firmware-sim-native"))
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    return trainer, sim, sim_native, rustc


def torch_env(args: argparse.Namespace) -> dict:
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if args.omp_wait_policy != "unset":
        env["OMP_WAIT_POLICY"] = args.omp_wait_policy
    return env


def torch_run(args: argparse.Namespace, models: list[str], extra: list[str], logf: Path) -> list[dict]:
    cmd = [str(VENV_PY), str(BENCH / "torch_models.py"), "--models", *models,
           "--trainer", str(args.trainer_bin),
           "--threads", str(args.threads), "--infer-images", str(args.torch_infer_images), *extra]
    out = run(cmd, env=torch_env(args), log_to=logf).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip().startswith("{")]


def describe(trainer: Path) -> dict[str, dict]:
    """Every architecture the trainer knows, by id (`trainer describe`)."""
    return {a["id"]: a for a in json.loads(run([str(trainer), "describe"]).stdout)}


def self_check(args: argparse.Namespace, logf: Path) -> None:
    """`torch_models.py --check` on the selected models: each PyTorch twin has the trainer's
    parameter count and gives `[N, 10]` (see bench/torch_models.py)."""
    cmd = [str(VENV_PY), str(BENCH / "torch_models.py"), "--check", "--trainer",
           str(args.trainer_bin), "--models", *args.models]
    proc = run(cmd, env=torch_env(args), check=False, log_to=logf)
    for line in proc.stdout.splitlines():
        log(f"check: {line}")
    if proc.returncode != 0:
        tail = "\n".join(logf.read_text().splitlines()[-15:])
        raise SystemExit(f"the PyTorch twins do not match `trainer describe`:\n{tail}")


def model_limits(specs: list[str], models: list[str]) -> dict[str, int]:
    """`--model-train-limit ID=N` arguments as {id: N}, each id among --models, N >= 1."""
    limits: dict[str, int] = {}
    for spec in specs:
        mid, sep, count = spec.partition("=")
        if not sep or not count.isdigit() or int(count) < 1:
            raise SystemExit(f"--model-train-limit {spec!r}: expected ID=N with N >= 1")
        if mid not in models:
            raise SystemExit(f"--model-train-limit {spec!r}: {mid} is not among --models")
        limits[mid] = int(count)
    return limits


def recipe_text(arch: dict, train_images: int) -> str:
    """One model's training settings, for the table title: images, batch, optimizer and lr,
    and schedule / augmentation when the recipe has them."""
    r = arch["recipe"]
    ((opt, fields),) = r["optimizer"].items()
    split = r["split"]
    if isinstance(split, dict) and "Holdout" in split:
        v = split["Holdout"]["validation_percent"]
        where = f"{100 - v}/{v} holdout"
    elif isinstance(split, dict) and "Pooled" in split:
        t, v = split["Pooled"]["train_percent"], split["Pooled"]["validation_percent"]
        where = f"{t}/{v}/{100 - t - v} of the pooled 70,000"
    else:
        where = "all"
    text = (f"{arch['id']} {train_images:,} training images ({where}), batch {r['batch_size']}, "
            f"{OPTIMIZER_NAMES.get(opt, opt)} lr {fields['lr']:g}")
    if r["schedule"]:
        text += f", StepLR {r['schedule']['step_size']} × {r['schedule']['gamma']:g}"
    if r["augmentation"]:
        text += ", augmented"
    return text


def fmt_ratio(x: float) -> str:
    return f"{x:.2f}×"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5],
                   help="one training run per side per seed (default 1 2 3 4 5)")
    p.add_argument("--models", nargs="+", default=MODELS,
                   help=f"model ids of `trainer describe` (default: {' '.join(MODELS)})")
    p.add_argument("--threads", type=int, default=2,
                   help="training threads for both sides (torch.set_num_threads, RAYON_NUM_THREADS)")
    p.add_argument("--omp-wait-policy", default="unset", choices=["PASSIVE", "ACTIVE", "unset"],
                   help="OMP_WAIT_POLICY for PyTorch (default: unset, PyTorch's own default, "
                   "for an idle machine; PASSIVE when another process holds a core, where "
                   "libgomp's default 2-thread barriers stall)")
    p.add_argument("--infer-rounds", type=int, default=3,
                   help="alternating PyTorch / infer-core inference rounds (median)")
    p.add_argument("--torch-infer-images", type=int, default=2000)
    p.add_argument("--train-limit", type=int, default=None,
                   help="train on the first N images of the training split only (smoke runs; "
                   "not a benchmark)")
    p.add_argument("--model-train-limit", action="append", default=[], metavar="ID=N",
                   help="train this model on the first N images of its training split, on both "
                   "sides (repeatable), e.g. s1-resnet18=6400: a subset for models whose whole "
                   "epochs are too long to repeat; the table's recipe line gives the count")
    p.add_argument("--infer-models", nargs="*", default=None,
                   help="models of --models for the batch-1 inference rounds (default: those "
                   f"with at most {INFER_MAX_MACS:,} MACs per image)")
    p.add_argument("--results", type=Path, default=BENCH / "results.md")
    p.add_argument("--update-readme", type=Path, default=None, metavar="README",
                   help="also put the two tables, with date, machine and commit, between "
                   f"{README_BEGIN} and {README_END} in this file (tests/speed.rs checks that "
                   "README.md's copy equals bench/results.md's)")
    p.add_argument("--keep", type=Path, default=None,
                   help="keep models, reports and logs in this folder instead of a temporary one")
    args = p.parse_args()
    if not VENV_PY.exists():
        raise SystemExit(f"{VENV_PY} not found: run `bash bench/setup.sh` first")
    if args.epochs < 1 or args.infer_rounds < 1:
        raise SystemExit("--epochs and --infer-rounds must be at least 1")

    tmp_ctx = None
    if args.keep:
        tmp = args.keep.resolve()
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    else:
        tmp_ctx = tempfile.TemporaryDirectory(prefix="bench-")
        tmp = Path(tmp_ctx.name)
    logf = tmp / "log.txt"
    models_dir = tmp / "models"
    models_dir.mkdir()
    # The trainer's checkpoints go here, not to the checkout's checkpoints/.
    ckpt_dir = tmp / "checkpoints"

    started = datetime.datetime.now(datetime.timezone.utc)
    load_start = loadavg()
    # The tree the binaries are built from (edits made while the run goes on do not count).
    workspace = git_state()
    trainer, sim, sim_native, rustc = build(tmp)
    args.trainer_bin = trainer
    archs = describe(trainer)
    unknown = [m for m in args.models if m not in archs]
    if unknown:
        raise SystemExit(f"unknown model ids {unknown} (the trainer knows: {', '.join(archs)})")
    limits = model_limits(args.model_train_limit, args.models)
    if args.infer_models is None:
        args.infer_models = [m for m in args.models if archs[m]["macs"] <= INFER_MAX_MACS]
    elif not set(args.infer_models) <= set(args.models):
        raise SystemExit(f"--infer-models {args.infer_models} must be among --models {args.models}")
    rust_env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    log(f"work folder {tmp}; log {logf}")
    self_check(args, logf)

    # Training, model by model and seed by seed: PyTorch, then trainer.
    torch_res: dict[str, list[dict]] = {m: [] for m in args.models}
    ours: dict[str, list[dict]] = {m: [] for m in args.models}
    for m in args.models:
        n_images = limits.get(m, args.train_limit)
        limit = ["--train-limit", str(n_images)] if n_images else []
        for seed in args.seeds:
            log(f"{m} seed {seed}: PyTorch, {args.epochs} epochs")
            res = torch_run(args, [m], ["--epochs", str(args.epochs), "--seed", str(seed),
                                        "--infer-reps", "1", *limit], logf)[0]
            torch_res[m].append(res)
            log(f"{m} seed {seed}: PyTorch {res['epoch_seconds']} s/epoch, "
                f"test {100 * res['test_accuracy']:.2f}%")
            log(f"{m} seed {seed}: trainer, {args.epochs} epochs")
            run([str(trainer), "train", "-m", m, "--epochs", str(args.epochs),
                 "--seed", str(seed), "--out-dir", str(models_dir),
                 "--checkpoint-dir", str(ckpt_dir), "-q", *limit],
                env=rust_env, log_to=logf)
            report = json.loads((models_dir / f"{m}.json").read_text())
            mine = {
                "epoch_seconds": [h["seconds"] for h in report["float"]["history"]],
                "test_accuracy": report["float"]["test"]["accuracy"],
                "train_images": report["float"]["train_images"],
                "batch_size": report["float"]["options"]["batch_size"],
            }
            for key in ("train_images", "batch_size"):
                if mine[key] != res[key]:
                    raise SystemExit(f"{m} seed {seed}: {key} {res[key]} (PyTorch) against "
                                     f"{mine[key]} (trainer): the two sides differ")
            ours[m].append(mine)
            log(f"{m} seed {seed}: trainer {mine['epoch_seconds']} s/epoch, "
                f"test {100 * mine['test_accuracy']:.2f}%")

    # Inference: export to int8, then alternate PyTorch and firmware-sim rounds.
    log("exporting int8 models")
    export_cmd = [str(trainer), "export", "--out-dir", str(models_dir), "-q"]
    for m in args.infer_models:
        export_cmd += ["-m", m]
    if args.infer_models:
        run(export_cmd, env=rust_env, log_to=logf)
    # Only the inference models' int8 files go to firmware-sim.
    for stale in models_dir.glob("*.fmq"):
        if stale.stem not in args.infer_models:
            stale.unlink()
    torch_rates: dict[str, list[float]] = {m: [] for m in args.infer_models}
    sim_us: dict[str, dict[str, list[float]]] = {
        variant: {m: [] for m in args.infer_models} for variant in ("default", "native")
    }
    sim_info: dict[str, dict] = {}
    for r in range(1, (args.infer_rounds + 1) if args.infer_models else 1):
        log(f"inference round {r}/{args.infer_rounds}: PyTorch")
        for res in torch_run(args, args.infer_models, ["--skip-train", "--infer-reps", "1"],
                             logf):
            torch_rates[res["id"]].extend(res["infer_images_per_second"])
        for variant, binary in (("default", sim), ("native", sim_native)):
            log(f"inference round {r}/{args.infer_rounds}: firmware-sim (infer-core, {variant})")
            # firmware-sim exits non-zero when int8 is > 0.5 pts below float; keep its JSON.
            proc = run([str(binary), str(models_dir), "--json"], env=rust_env, check=False,
                       log_to=logf)
            try:
                runs = json.loads(proc.stdout)["models"]
            except (json.JSONDecodeError, KeyError):
                raise SystemExit(f"firmware-sim printed no JSON (exit {proc.returncode}); see {logf}")
            for entry in runs:
                if entry["id"] in sim_us[variant]:
                    sim_us[variant][entry["id"]].append(entry["us_per_inference"])
                    sim_info[entry["id"]] = entry
    load_end = loadavg()
    finished = datetime.datetime.now(datetime.timezone.utc)

    # Tables.
    n = args.epochs

    def acc(runs: list[dict]) -> tuple[float, float]:
        a = [100 * r["test_accuracy"] for r in runs]
        return statistics.mean(a), (statistics.stdev(a) if len(a) > 1 else 0.0)

    def secs(runs: list[dict]) -> float:
        return statistics.median(s for r in runs for s in r["epoch_seconds"])

    train_rows = [
        "| model | PyTorch s/epoch | trainer s/epoch | trainer / PyTorch | "
        "PyTorch test acc. | trainer test acc. | trainer − PyTorch |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for m in args.models:
        t, o = secs(torch_res[m]), secs(ours[m])
        (ta, tsd), (oa, osd) = acc(torch_res[m]), acc(ours[m])
        train_rows.append(
            f"| {m} | {t:.2f} | {o:.2f} | {fmt_ratio(o / t)} | {ta:.2f}% ± {tsd:.2f} | "
            f"{oa:.2f}% ± {osd:.2f} | {oa - ta:+.2f} pts |"
        )
    infer_rows = [
        "| model | PyTorch float32 images/s | infer-core int8 images/s (x86-64) | "
        "infer-core / PyTorch | infer-core int8 images/s (target-cpu=native) | "
        "infer-core / PyTorch |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for m in args.infer_models:
        t = statistics.median(torch_rates[m])
        row = f"| {m} | {t:,.0f} |"
        for variant in ("default", "native"):
            if sim_us[variant][m]:
                o = 1e6 / statistics.median(sim_us[variant][m])
                row += f" {o:,.0f} | {fmt_ratio(o / t)} |"
            else:
                row += " n/a | n/a |"
        infer_rows.append(row)
    torch_version = next(iter(torch_res.values()))[0]["torch_version"]
    smoke = " (SMOKE RUN: --train-limit)" if args.train_limit else ""
    recipes = "; ".join(recipe_text(archs[m], ours[m][0]["train_images"]) for m in args.models)
    recipes = f"Each model's recipe (`trainer describe`), on both sides: {recipes}{smoke}."
    seeds = " ".join(str(x) for x in args.seeds)
    train_title = (
        f"Training: median s/epoch over {n} epoch{'s' if n != 1 else ''} × seeds {seeds}, "
        f"{args.threads} threads; test accuracy after epoch {n}, "
        f"mean ± standard deviation over the seeds"
    )
    skipped = [m for m in args.models if m not in args.infer_models]
    infer_title = (
        f"Batch-1 inference, 1 thread: median images/s over {args.infer_rounds} alternating "
        f"rounds (PyTorch: {args.torch_infer_images} test images a round; infer-core: 10,000)"
        + (f"; not timed: {', '.join(skipped)}" if skipped else "")
    )
    printed = "\n".join(
        [f"### {train_title}", "", recipes, "", *train_rows, "", f"### {infer_title}", "",
         *infer_rows, ""]
    )
    print(printed)

    # results.md
    busy = ""
    try:
        peak = max(float(x.split()[0]) for x in (load_start, load_end))
        if peak > float(nproc()):
            busy = (f"- **The machine was busy** (1-min load average up to {peak:.1f} on "
                    f"{nproc()} cores): absolute times are inflated and ratios noisier than on "
                    "an idle machine.\n")
    except ValueError:
        pass
    cmdline = "python3 bench/compare.py " + " ".join(sys.argv[1:])
    details = ["| model | side | seed | seconds per epoch | test acc. |", "|---|---|---:|---|---:|"]
    for m in args.models:
        for side, runs in (("PyTorch", torch_res[m]), ("trainer", ours[m])):
            for seed, res in zip(args.seeds, runs):
                secs_list = ", ".join(f"{x:.2f}" for x in res["epoch_seconds"])
                details.append(
                    f"| {m} | {side} | {seed} | {secs_list} | {100 * res['test_accuracy']:.2f}% |"
                )
    inf_details = [
        "| model | PyTorch images/s per round | infer-core µs/image per round (x86-64) | "
        "infer-core µs/image per round (native) | int8 test acc. | int8 model bytes |",
        "|---|---|---|---|---:|---:|",
    ]
    for m in args.infer_models:
        info = sim_info.get(m, {})
        acc_s = f"{100 * info['int8_accuracy']:.2f}%" if info else "n/a"
        inf_details.append(
            f"| {m} | {', '.join(f'{x:,.0f}' for x in torch_rates[m])} | "
            f"{', '.join(f'{x:.1f}' for x in sim_us['default'][m])} | "
            f"{', '.join(f'{x:.1f}' for x in sim_us['native'][m])} | {acc_s} | "
            f"{info.get('model_bytes', 'n/a')} |"
        )
    md = f"""# PyTorch vs trainer / infer-core

Generated by `{cmdline.strip()}` (see bench/README.md). Do not edit by hand.

- Date: {started.strftime('%Y-%m-%d %H:%M')} – {finished.strftime('%H:%M')} UTC
- Machine: {cpu_model()}, nproc {nproc()}, {platform.system()} {platform.release()}
- Load average (1/5/15 min) at start: {load_start}; at end: {load_end}
- PyTorch {torch_version} (PyPI wheel, CPU; CUDA libraries stubbed, see bench/setup.sh);
  {rustc}; workspace at {workspace}
- Threads: training {args.threads} (torch.set_num_threads / RAYON_NUM_THREADS), inference 1;
  PyTorch with OMP_WAIT_POLICY={torch_env(args).get('OMP_WAIT_POLICY', '(unset)')}
{busy}
{printed}
Training ratio above 1: our trainer is slower. Inference ratio above 1: infer-core is faster
(infer-core runs the int8 model, PyTorch the float32 one; the int8 models are the last seed's).
Each framework initialises weights, orders batches and draws
dropout masks its own way, so single runs differ by seed noise: compare the means.

## Raw numbers

{chr(10).join(details)}

{chr(10).join(inf_details)}
"""
    args.results.write_text(md)
    log(f"wrote {args.results}")
    if args.update_readme:
        text = args.update_readme.read_text()
        begin, end = text.find(README_BEGIN), text.find(README_END)
        if begin < 0 or end < begin:
            raise SystemExit(f"{args.update_readme}: no {README_BEGIN} ... {README_END} block")
        block = (
            f"{README_BEGIN}\n"
            f"Measured by `{cmdline.strip()}` on {started.strftime('%Y-%m-%d')}, {cpu_model()}, "
            f"nproc {nproc()}, load average {load_start} at start and {load_end} at end, "
            f"PyTorch {torch_version}, workspace at {workspace} "
            f"(details in [`bench/results.md`](bench/results.md)).\n\n{printed}"
        )
        args.update_readme.write_text(text[:begin] + block + text[end:])
        log(f"updated {args.update_readme}")
    if tmp_ctx:
        tmp_ctx.cleanup()


if __name__ == "__main__":
    main()
