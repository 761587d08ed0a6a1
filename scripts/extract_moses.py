"""Re-extract the MOSES splits and filter SMARTS from the MIT-licensed molsets==0.3.1 wheel.

    python scripts/extract_moses.py [--wheel PATH]

Without --wheel it runs `pip download --no-deps molsets==0.3.1` into a temporary folder. Only
the data files are taken; molgen never imports or depends on the molsets package.
"""
from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILES = {
    "moses/dataset/data/train.csv.gz": ROOT / "data/moses/train.csv.gz",
    "moses/dataset/data/test.csv.gz": ROOT / "data/moses/test.csv.gz",
    "moses/dataset/data/test_scaffolds.csv.gz": ROOT / "data/moses/test_scaffolds.csv.gz",
    "moses/metrics/mcf.csv": ROOT / "molgen/metrics/data/mcf.csv",
    "moses/metrics/wehi_pains.csv": ROOT / "molgen/metrics/data/wehi_pains.csv",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheel", type=Path, help="a local molsets-0.3.1-py3-none-any.whl")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel
        if wheel is None:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "molsets==0.3.1", "-d", tmp], check=True
            )
            wheel = next(Path(tmp).glob("molsets-0.3.1-*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            for member, target in FILES.items():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.read(member))
                digest = hashlib.sha256(target.read_bytes()).hexdigest()
                print(f"{target.relative_to(ROOT)}  sha256 {digest}")


if __name__ == "__main__":
    main()
