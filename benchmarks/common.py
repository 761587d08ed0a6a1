"""Shared pieces of the benchmark scripts: the machine description, data slices, the MOSES peer, RESULTS.md.

The peer (the MOSES reference implementation, molsets 0.3.1) lives in its own virtualenv built by
``bash benchmarks/make_moses_venv.sh`` (default /tmp/moses-venv); it is driven through
``benchmarks/moses_peer.py`` in a subprocess, so molgen never imports MOSES and vice versa.
"""
from __future__ import annotations

import datetime
import gzip
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
TRAIN = ROOT / "data" / "moses" / "train.csv.gz"
PEER_SCRIPT = ROOT / "benchmarks" / "moses_peer.py"
DEFAULT_PEER_PYTHON = os.environ.get("MOSES_PYTHON", "/tmp/moses-venv/bin/python")


def cpu_name() -> str:
    """CPU model string from /proc/cpuinfo (or platform.processor())."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load_average() -> str:
    """The 1/5/15-minute load averages as 'a, b, c'."""
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def machine() -> str:
    """One line: CPU model, cores, Python, torch and RDKit versions, OS, molgen's Tanimoto path,
    current load average."""
    import rdkit
    import torch

    from molgen.metrics.similarity import kernel_available

    tanimoto = "AVX-512 popcount kernel" if kernel_available() else "portable int8 path"
    return (f"{cpu_name()}; {os.cpu_count()} cores; Python {platform.python_version()}, torch {torch.__version__}, "
            f"RDKit {rdkit.__version__}; {platform.platform()}; Tanimoto: {tanimoto}; "
            f"load average {load_average()}")  # fmt: skip


def slice_csv(rows: int | None, path: Path = TRAIN) -> Path:
    """The header and first ``rows`` rows of a gzipped SMILES CSV as a plain CSV in the temp dir (None: the file)."""
    if rows is None:
        return path
    out = Path(tempfile.gettempdir()) / f"molgen-bench-{path.name.split('.')[0]}-{rows}.csv"
    if not out.exists():
        tmp = out.with_suffix(f".tmp{os.getpid()}")
        with gzip.open(path, "rt") as src, open(tmp, "w") as dst:
            for i, line in enumerate(src):
                if i > rows:
                    break
                dst.write(line)
        tmp.replace(out)
    return out


def ensure_peer(python: str) -> str:
    """Path of the MOSES venv's python, building the venv with make_moses_venv.sh when it is missing."""
    if not Path(python).exists():
        venv = Path(python).parents[1]
        print(f"building the MOSES peer venv at {venv} (bash benchmarks/make_moses_venv.sh) ...", flush=True)
        subprocess.run(["bash", str(ROOT / "benchmarks" / "make_moses_venv.sh"), str(venv)], check=True)
    return python


def run_peer(python: str, args: list[str], threads: int = 1) -> dict:
    """Run ``moses_peer.py ARGS`` in the MOSES venv; its JSON result plus the load average around it."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        out = Path(handle.name)
    command = [python, str(PEER_SCRIPT), *args, "--threads", str(threads), "--json", str(out)]
    print("$ " + " ".join(command), flush=True)
    load = os.getloadavg()[0]
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT, env=env)
    result = json.loads(out.read_text())
    out.unlink()
    result.update(process_wall_s=time.perf_counter() - started, load_before=load, load_after=os.getloadavg()[0])
    return result


def append_results(title: str, body: str, command: str | None = None) -> None:
    """Append a dated section (title, machine, reproducing command, body) to benchmarks/RESULTS.md."""
    stamp = datetime.datetime.now().isoformat(timespec="minutes")
    lines = [f"## {title} ({stamp})", "", f"Machine: {machine()}."]
    lines.append(f"Command: `{command or ' '.join([Path(sys.executable).name, *sys.argv])}`")
    text = "\n".join(lines) + "\n\n" + body.rstrip() + "\n"
    with open(RESULTS, "a") as handle:
        handle.write("\n" + text)
    print(f"appended to {RESULTS.relative_to(ROOT)}")


def command_line() -> str:
    """The command that ran this script, as typed from the repository root."""
    script = Path(sys.argv[0]).resolve()
    try:
        script = script.relative_to(ROOT)
    except ValueError:
        pass
    return " ".join(["PYTHONPATH=. .venv/bin/python", str(script), *sys.argv[1:]])


def report(title: str, lines: list[str], record: bool = True) -> None:
    """Print a result table and, with ``record``, append it to benchmarks/RESULTS.md under ``title``."""
    body = "\n".join(lines)
    print("\n" + body)
    if record:
        append_results(title, body, command_line())
