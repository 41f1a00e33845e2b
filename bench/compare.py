#!/usr/bin/env python3
"""PyTorch vs our trainer and infer-core: same models, same settings, same machine, one run.

    bash bench/setup.sh                    # once: bench/.venv with PyTorch (CPU)
    python3 bench/compare.py [--epochs 3] [--models s5-ann s5-cnn s3-lenet-base]

Training: for each model, PyTorch (bench/torch_models.py in bench/.venv) and then our trainer
(`trainer train -m <id> --epochs N -q`), back to back, so both see the same background load.
Seconds per epoch are the median over the N epochs of each side; the ratio is
trainer / PyTorch (above 1: our trainer is slower). Test accuracy is over the 10,000 test images
after those N epochs. PyTorch runs with OMP_WAIT_POLICY=PASSIVE unless --omp-wait-policy says
otherwise: with libgomp's default, 2-thread training on a 2-core machine that another process
is using ran 5-20x slower than with PASSIVE or with 1 thread (measured while writing this).

Batch-1 inference: after training, `trainer export` quantises the trained models to int8 and
`firmware-sim --json` times infer-core on the 10,000 test images (one thread, one image at a
time). PyTorch float32 inference (eval, inference_mode, one thread, one image at a time,
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


def build(tmp: Path) -> tuple[Path, Path, str]:
    """Builds trainer and firmware-sim in release mode; copies them into tmp/bin."""
    log("building trainer and firmware-sim (release)")
    run(["cargo", "build", "--release", "-q", "-p", "trainer", "-p", "firmware-sim"], check=True)
    meta = json.loads(run(["cargo", "metadata", "--format-version", "1", "--no-deps"]).stdout)
    target = Path(meta["target_directory"]) / "release"
    bindir = tmp / "bin"
    bindir.mkdir()
    trainer = Path(shutil.copy2(target / "trainer", bindir / "trainer"))
    sim = Path(shutil.copy2(target / "firmware-sim", bindir / "firmware-sim"))
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    return trainer, sim, rustc


def torch_env(args: argparse.Namespace) -> dict:
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if args.omp_wait_policy != "unset":
        env["OMP_WAIT_POLICY"] = args.omp_wait_policy
    return env


def torch_run(args: argparse.Namespace, models: list[str], extra: list[str], logf: Path) -> list[dict]:
    cmd = [str(VENV_PY), str(BENCH / "torch_models.py"), "--models", *models,
           "--threads", str(args.threads), "--infer-images", str(args.torch_infer_images), *extra]
    out = run(cmd, env=torch_env(args), log_to=logf).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip().startswith("{")]


def fmt_ratio(x: float) -> str:
    return f"{x:.2f}×"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    p.add_argument("--threads", type=int, default=2,
                   help="training threads for both sides (torch.set_num_threads, RAYON_NUM_THREADS)")
    p.add_argument("--omp-wait-policy", default="PASSIVE", choices=["PASSIVE", "ACTIVE", "unset"],
                   help="OMP_WAIT_POLICY for PyTorch (default PASSIVE: with the default, libgomp's "
                   "2-thread barriers stall whenever another process holds a core; 'unset' keeps "
                   "libgomp's default)")
    p.add_argument("--infer-rounds", type=int, default=3,
                   help="alternating PyTorch / infer-core inference rounds (median)")
    p.add_argument("--torch-infer-images", type=int, default=2000)
    p.add_argument("--train-limit", type=int, default=None,
                   help="train on the first N images only (smoke runs; not a benchmark)")
    p.add_argument("--results", type=Path, default=BENCH / "results.md")
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

    started = datetime.datetime.now(datetime.timezone.utc)
    load_start = loadavg()
    trainer, sim, rustc = build(tmp)
    rust_env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    log(f"work folder {tmp}; log {logf}")

    # Training, model by model: PyTorch, then trainer.
    torch_res: dict[str, dict] = {}
    ours: dict[str, dict] = {}
    for m in args.models:
        log(f"{m}: PyTorch, {args.epochs} epochs")
        limit = ["--train-limit", str(args.train_limit)] if args.train_limit else []
        torch_res[m] = torch_run(
            args, [m], ["--epochs", str(args.epochs), "--infer-reps", "1", *limit], logf
        )[0]
        log(f"{m}: PyTorch {torch_res[m]['epoch_seconds']} s/epoch, "
            f"test {100 * torch_res[m]['test_accuracy']:.2f}%")
        log(f"{m}: trainer, {args.epochs} epochs")
        run([str(trainer), "train", "-m", m, "--epochs", str(args.epochs),
             "--out-dir", str(models_dir), "-q", *limit], env=rust_env, log_to=logf)
        report = json.loads((models_dir / f"{m}.json").read_text())
        ours[m] = {
            "epoch_seconds": [h["seconds"] for h in report["float"]["history"]],
            "test_accuracy": report["float"]["test"]["accuracy"],
        }
        log(f"{m}: trainer {ours[m]['epoch_seconds']} s/epoch, "
            f"test {100 * ours[m]['test_accuracy']:.2f}%")

    # Inference: export to int8, then alternate PyTorch and firmware-sim rounds.
    log("exporting int8 models")
    export_cmd = [str(trainer), "export", "--out-dir", str(models_dir), "-q"]
    for m in args.models:
        export_cmd += ["-m", m]
    run(export_cmd, env=rust_env, log_to=logf)
    torch_rates: dict[str, list[float]] = {m: [] for m in args.models}
    sim_us: dict[str, list[float]] = {m: [] for m in args.models}
    sim_info: dict[str, dict] = {}
    for r in range(1, args.infer_rounds + 1):
        log(f"inference round {r}/{args.infer_rounds}: PyTorch")
        for res in torch_run(args, args.models, ["--skip-train", "--infer-reps", "1"], logf):
            torch_rates[res["id"]].extend(res["infer_images_per_second"])
        log(f"inference round {r}/{args.infer_rounds}: firmware-sim (infer-core)")
        # firmware-sim exits non-zero when int8 is > 0.5 pts below float; keep its JSON anyway.
        proc = run([str(sim), str(models_dir), "--json"], env=rust_env, check=False, log_to=logf)
        try:
            runs = json.loads(proc.stdout)["models"]
        except (json.JSONDecodeError, KeyError):
            raise SystemExit(f"firmware-sim printed no JSON (exit {proc.returncode}); see {logf}")
        for entry in runs:
            if entry["id"] in sim_us:
                sim_us[entry["id"]].append(entry["us_per_inference"])
                sim_info[entry["id"]] = entry
    load_end = loadavg()
    finished = datetime.datetime.now(datetime.timezone.utc)

    # Tables.
    n = args.epochs
    train_rows = [
        f"| model | PyTorch s/epoch | trainer s/epoch | trainer / PyTorch | "
        f"PyTorch test acc. | trainer test acc. | trainer − PyTorch |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for m in args.models:
        t = statistics.median(torch_res[m]["epoch_seconds"])
        o = statistics.median(ours[m]["epoch_seconds"])
        ta, oa = torch_res[m]["test_accuracy"], ours[m]["test_accuracy"]
        train_rows.append(
            f"| {m} | {t:.2f} | {o:.2f} | {fmt_ratio(o / t)} | {100 * ta:.2f}% | "
            f"{100 * oa:.2f}% | {100 * (oa - ta):+.2f} pts |"
        )
    infer_rows = [
        "| model | PyTorch float32 images/s | infer-core int8 images/s | infer-core / PyTorch |",
        "|---|---:|---:|---:|",
    ]
    for m in args.models:
        t = statistics.median(torch_rates[m])
        if sim_us[m]:
            o = 1e6 / statistics.median(sim_us[m])
            infer_rows.append(f"| {m} | {t:,.0f} | {o:,.0f} | {fmt_ratio(o / t)} |")
        else:
            infer_rows.append(f"| {m} | {t:,.0f} | n/a | n/a |")
    torch_version = next(iter(torch_res.values()))["torch_version"]
    images = f"{args.train_limit:,} images (SMOKE RUN)" if args.train_limit else "all 60,000 images"
    train_title = (
        f"Training: median s/epoch over {n} epoch{'s' if n != 1 else ''}, {images}, "
        f"batch 64, Adam 1e-3, {args.threads} threads; test accuracy after epoch {n}"
    )
    infer_title = (
        f"Batch-1 inference, 1 thread: median images/s over {args.infer_rounds} alternating "
        f"rounds (PyTorch: {args.torch_infer_images} test images a round; infer-core: 10,000)"
    )
    printed = "\n".join(
        [f"### {train_title}", "", *train_rows, "", f"### {infer_title}", "", *infer_rows, ""]
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
    details = ["| model | side | seconds per epoch | test acc. |", "|---|---|---|---:|"]
    for m in args.models:
        for side, res in (("PyTorch", torch_res[m]), ("trainer", ours[m])):
            secs = ", ".join(f"{s:.2f}" for s in res["epoch_seconds"])
            details.append(f"| {m} | {side} | {secs} | {100 * res['test_accuracy']:.2f}% |")
    inf_details = [
        "| model | PyTorch images/s per round | infer-core µs/image per round | "
        "int8 test acc. | int8 model bytes |",
        "|---|---|---|---:|---:|",
    ]
    for m in args.models:
        info = sim_info.get(m, {})
        acc = f"{100 * info['int8_accuracy']:.2f}%" if info else "n/a"
        inf_details.append(
            f"| {m} | {', '.join(f'{x:,.0f}' for x in torch_rates[m])} | "
            f"{', '.join(f'{x:.1f}' for x in sim_us[m])} | {acc} | "
            f"{info.get('model_bytes', 'n/a')} |"
        )
    md = f"""# PyTorch vs trainer / infer-core

Generated by `{cmdline.strip()}` (see bench/README.md). Do not edit by hand.

- Date: {started.strftime('%Y-%m-%d %H:%M')} – {finished.strftime('%H:%M')} UTC
- Machine: {cpu_model()}, nproc {nproc()}, {platform.system()} {platform.release()}
- Load average (1/5/15 min) at start: {load_start}; at end: {load_end}
- PyTorch {torch_version} (PyPI wheel, CPU; CUDA libraries stubbed, see bench/setup.sh);
  {rustc}; workspace at {git_state()}
- Threads: training {args.threads} (torch.set_num_threads / RAYON_NUM_THREADS), inference 1;
  PyTorch with OMP_WAIT_POLICY={torch_env(args).get('OMP_WAIT_POLICY', '(unset)')}
{busy}
{printed}
Training ratio above 1: our trainer is slower. Inference ratio above 1: infer-core is faster
(infer-core runs the int8 model, PyTorch the float32 one). Weights are initialised by each
framework its own way, so accuracies after a few epochs differ by a little noise.

## Raw numbers

{chr(10).join(details)}

{chr(10).join(inf_details)}
"""
    args.results.write_text(md)
    log(f"wrote {args.results}")
    if tmp_ctx:
        tmp_ctx.cleanup()


if __name__ == "__main__":
    main()
