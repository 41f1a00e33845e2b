#!/usr/bin/env python3
"""Build tiny stand-ins for the CUDA libraries that PyPI's Linux torch wheel links against.

PyPI's x86_64 Linux `torch` wheel is a CUDA build: `libtorch_cpu.so`, `libtorch_cuda.so` and
`libtorch_python.so` list libcudart, libcublas, libcudnn, libnccl, ... as DT_NEEDED, so
`import torch` fails unless the multi-GB nvidia-* wheels are installed, even though the CPU
code paths never call into them. (The CPU-only wheels live on download.pytorch.org, which this
machine cannot reach.)

This script, run by setup.sh with the venv's python after `pip install --no-deps torch`:

1. walks the DT_NEEDED closure of `torch/_C*.so` and every `torch/lib/*.so` (readelf);
2. takes every needed soname that is neither in `torch/lib` nor known to the system loader
   (`ldconfig -p`) as missing: libcudart.so.13, libcublas.so.13, libcudnn.so.9, libcuda.so.1, ...;
3. collects the symbols torch imports from each missing library (the versioned undefined
   dynamic symbols: CUDA libraries version every export with their soname, e.g.
   `cudaMalloc@libcudart.so.13`), plus any unversioned undefined symbol nothing else defines;
4. compiles one small shared library per missing soname with that soname, that symbol version
   and one function per symbol, into `torch/lib` (on every torch library's RPATH as `$ORIGIN`).

Every stub function returns an error code (999, "unknown error" in the CUDA runtime), except
`cudaGetDeviceCount`, which reports zero devices with cudaErrorNoDevice, and the error-string
functions, which return a fixed message. So `torch.cuda.is_available()` is False and the CPU
kernels (MKL, oneDNN) are exactly those of the official wheel. The stubs total a few hundred KB.

Standard library only; needs `readelf` (binutils) and a C compiler (`cc`).
"""

from __future__ import annotations

import glob
import os
import re
import subprocess
import sys
import sysconfig
import tempfile

STUB_MARK = "bench-cuda-stub"
# Names of the stubs written, in torch/lib, so a re-run replaces them.
MANIFEST = "bench-cuda-stubs.txt"


def readelf(*args: str) -> str:
    return subprocess.run(
        ["readelf", "-W", *args], check=True, capture_output=True, text=True
    ).stdout


def needed(path: str) -> list[str]:
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", readelf("-d", path))


def soname(path: str) -> str | None:
    m = re.search(r"\(SONAME\)\s+Library soname: \[([^\]]+)\]", readelf("-d", path))
    return m.group(1) if m else None


def verneed_files(path: str) -> dict[str, str]:
    """Version name -> file that must provide it, from the .gnu.version_r section."""
    out: dict[str, str] = {}
    current = None
    for line in readelf("-V", path).splitlines():
        m = re.search(r"File: (\S+)", line)
        if m:
            current = m.group(1)
            continue
        m = re.search(r"Name: (\S+)", line)
        if m and current:
            out[m.group(1)] = current
    return out


def dyn_syms(path: str) -> list[tuple[str, str, str, str | None]]:
    """(name, type, bind, version-or-None) for undefined (ndx UND) and defined symbols.

    Returned as (name, type, bind, version) with type prefixed by 'U:' for undefined ones.
    """
    out = []
    for line in readelf("--dyn-syms", path).splitlines():
        parts = line.split()
        if len(parts) < 8 or not parts[0].rstrip(":").isdigit():
            continue
        typ, bind, ndx, name = parts[3], parts[4], parts[6], parts[7]
        version = None
        if "@" in name:
            name, _, version = name.partition("@")
            version = version.lstrip("@")
        out.append((name, ("U:" if ndx == "UND" else "D:") + typ, bind, version))
    return out


def system_libs() -> dict[str, str]:
    """soname -> path for the x86_64 libraries the system loader knows (ldconfig -p)."""
    out = {}
    text = subprocess.run(
        ["ldconfig", "-p"], check=True, capture_output=True, text=True
    ).stdout
    for line in text.splitlines():
        m = re.match(r"\s+(\S+) \((.*)\) => (\S+)", line)
        if m and "x86-64" in m.group(2):
            out.setdefault(m.group(1), m.group(3))
    return out


SPECIAL = {
    # Report "no device" (cudaErrorNoDevice = 100) so torch.cuda.is_available() is False.
    "cudaGetDeviceCount": "int cudaGetDeviceCount(int *n) { if (n) *n = 0; return 100; }",
    "cudaGetErrorString": "const char *cudaGetErrorString(int e) { (void)e; return MSG; }",
    "cudaGetErrorName": "const char *cudaGetErrorName(int e) { (void)e; return MSG; }",
    "cudaDriverGetVersion": "int cudaDriverGetVersion(int *v) { if (v) *v = 0; return 0; }",
    "cudaRuntimeGetVersion": "int cudaRuntimeGetVersion(int *v) { if (v) *v = 0; return 0; }",
    "cuGetErrorString": "int cuGetErrorString(int e, const char **s) { (void)e; if (s) *s = MSG; return 0; }",
    "cuGetErrorName": "int cuGetErrorName(int e, const char **s) { (void)e; if (s) *s = MSG; return 0; }",
    "cudnnGetErrorString": "const char *cudnnGetErrorString(int e) { (void)e; return MSG; }",
    "cublasGetStatusString": "const char *cublasGetStatusString(int e) { (void)e; return MSG; }",
    "cublasLtGetStatusString": "const char *cublasLtGetStatusString(int e) { (void)e; return MSG; }",
    "ncclGetErrorString": "const char *ncclGetErrorString(int e) { (void)e; return MSG; }",
    "ncclGetLastError": "const char *ncclGetLastError(void *c) { (void)c; return MSG; }",
    "nvrtcGetErrorString": "const char *nvrtcGetErrorString(int e) { (void)e; return MSG; }",
    "cusparseGetErrorString": "const char *cusparseGetErrorString(int e) { (void)e; return MSG; }",
    "cusparseGetErrorName": "const char *cusparseGetErrorName(int e) { (void)e; return MSG; }",
    "cusparseLtGetErrorString": "const char *cusparseLtGetErrorString(int e) { (void)e; return MSG; }",
    "cusparseLtGetErrorName": "const char *cusparseLtGetErrorName(int e) { (void)e; return MSG; }",
}


def main() -> int:
    purelib = sysconfig.get_paths()["platlib"]
    torch_dir = os.path.join(purelib, "torch")
    lib_dir = os.path.join(torch_dir, "lib")
    if not os.path.isdir(lib_dir):
        print(f"no torch installed under {purelib}", file=sys.stderr)
        return 1
    # Drop stubs from an earlier run so they are not mistaken for torch's own libraries.
    manifest = os.path.join(lib_dir, MANIFEST)
    if os.path.exists(manifest):
        with open(manifest) as f:
            for name in f.read().split():
                if os.path.exists(os.path.join(lib_dir, name)):
                    os.remove(os.path.join(lib_dir, name))
        os.remove(manifest)

    own = {os.path.basename(p): p for p in glob.glob(os.path.join(lib_dir, "*.so*"))}
    for p in list(own.values()):
        s = soname(p)
        if s:
            own.setdefault(s, p)
    system = system_libs()
    roots = glob.glob(os.path.join(torch_dir, "_C*.so")) + sorted(set(own.values()))

    # DT_NEEDED closure over torch's own libraries and the system ones.
    seen: set[str] = set()
    queue = list(roots)
    missing: dict[str, set[str]] = {}  # soname -> libraries needing it
    present: list[str] = []
    while queue:
        path = queue.pop()
        real = os.path.realpath(path)
        if real in seen:
            continue
        seen.add(real)
        present.append(path)
        for name in needed(path):
            if name in own:
                queue.append(own[name])
            elif name in system:
                queue.append(system[name])
            else:
                missing.setdefault(name, set()).add(path)
    if not missing:
        print("cuda_stubs: torch needs no missing libraries; nothing to do")
        return 0

    defined: set[str] = set()
    # (name, type, version, file providing the version, user)
    undefined: list[tuple[str, str, str | None, str | None, str]] = []
    for path in present:
        vfile = verneed_files(path)
        for name, typ, bind, version in dyn_syms(path):
            if typ.startswith("D:"):
                defined.add(name)
            elif name and bind != "WEAK":
                owner = vfile.get(version) if version else None
                undefined.append((name, typ[2:], version, owner, path))

    funcs: dict[str, dict[str, str]] = {lib: {} for lib in missing}  # lib -> name -> type
    versions: dict[str, dict[str, set[str]]] = {lib: {} for lib in missing}  # lib -> ver -> names
    for name, typ, version, owner, user in undefined:
        if owner in missing:
            funcs[owner][name] = typ
            versions[owner].setdefault(version, set()).add(name)
        elif owner is None and name not in defined:
            # Unversioned and defined nowhere: give it to a missing library its user needs.
            candidates = sorted(lib for lib, users in missing.items() if user in users)
            if candidates:
                funcs[candidates[0]][name] = typ

    with tempfile.TemporaryDirectory() as tmp:
        for lib in sorted(missing):
            syms = funcs[lib]
            lines = [
                f"/* {STUB_MARK}: stand-in for {lib}; no CUDA in this environment. */",
                f'static const char MSG[] = "{lib} is a {STUB_MARK} (CUDA not installed)";',
                f'const char bench_cuda_stub_marker[] = "{STUB_MARK}";',
            ]
            for name in sorted(syms):
                if syms[name] in ("OBJECT", "TLS"):
                    lines.append(f"char {name}[4096];")
                elif name in SPECIAL:
                    lines.append(SPECIAL[name])
                else:
                    lines.append(f"int {name}(void) {{ return 999; }}")
            src = os.path.join(tmp, "stub.c")
            with open(src, "w") as f:
                f.write("\n".join(lines) + "\n")
            cmd = ["cc", "-shared", "-fPIC", "-O1", "-w", f"-Wl,-soname,{lib}", "-o"]
            cmd.append(os.path.join(lib_dir, lib))
            if versions[lib]:
                vs = os.path.join(tmp, "stub.map")
                with open(vs, "w") as f:
                    for i, (ver, names) in enumerate(sorted(versions[lib].items())):
                        extra = " bench_cuda_stub_marker;" if i == 0 else ""
                        body = "".join(f" {n};" for n in sorted(names))
                        f.write(f"{ver} {{ global:{body}{extra} }};\n")
                cmd.append(f"-Wl,--version-script={vs}")
            cmd.append(src)
            subprocess.run(cmd, check=True)
            with open(manifest, "a") as f:
                f.write(lib + "\n")
            print(f"cuda_stubs: {lib}: {len(syms)} symbols")
    return 0


if __name__ == "__main__":
    sys.exit(main())
