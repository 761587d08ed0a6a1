"""Files that come with molgen: the shipped models and the MOSES splits.

In a source checkout (or an editable install) they are read where they live in the repository
(``checkpoints/``, ``data/moses/``). A wheel (``pip install .``) carries copies inside the package,
in ``molgen/_bundled/`` with the same relative paths (``setup.py`` puts them there), so that
``molgen sample`` and ``molgen score`` work from any folder. ``bundled(path)`` finds either.
"""
from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
BUNDLE = PACKAGE / "_bundled"
REPOSITORY = PACKAGE.parent

MODEL = "checkpoints/molgen-moses.pt"
# The same MOSES run continued at a 24-nat KL target: a latent that knows its molecule, for sampling
# around one (`sample --near`) and interpolating; its prior samples are worse (checkpoints/README.md).
NEAR_MODEL = "checkpoints/molgen-moses-kl24.pt"
MOSES_TRAIN = "data/moses/train.csv.gz"
MOSES_TEST = "data/moses/test.csv.gz"
MOSES_TEST_SCAFFOLDS = "data/moses/test_scaffolds.csv.gz"
BUNDLED = (MODEL, NEAR_MODEL, MOSES_TRAIN, MOSES_TEST, MOSES_TEST_SCAFFOLDS)


def bundled(relative: str) -> Path:
    """The file at ``relative`` (one of ``BUNDLED``): the wheel's copy, else the repository's
    (returned even when missing, so that the caller's error names where it was looked for)."""
    copy = BUNDLE / relative
    return copy if copy.is_file() else REPOSITORY / relative
