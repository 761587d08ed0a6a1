"""The optional C extension and the bundled files; everything else is in pyproject.toml."""
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

# molgen.resources.BUNDLED: copied into the wheel as molgen/_bundled/<path> (see molgen/resources.py)
BUNDLED = (
    "checkpoints/molgen-moses.pt",
    "checkpoints/molgen-moses-kl24.pt",
    "data/moses/train.csv.gz",
    "data/moses/test.csv.gz",
    "data/moses/test_scaffolds.csv.gz",
)


class BuildWithBundle(build_py):
    """build_py that also copies the shipped model and the MOSES splits into the package."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads them from the repository
        for relative in BUNDLED:
            target = Path(self.build_lib) / "molgen" / "_bundled" / relative
            self.mkpath(str(target.parent))
            self.copy_file(relative, str(target))


setup(
    cmdclass={"build_py": BuildWithBundle},
    ext_modules=[
        # AVX-512 Tanimoto kernel; optional: without a C compiler molgen uses its portable path.
        Extension("molgen.metrics._tanimoto", ["molgen/metrics/_tanimoto.c"], extra_compile_args=["-O3"], optional=True),
        # fused GRU time-step kernels for CPU training; optional: without them training uses torch's GRU.
        # -fno-trapping-math lets the compiler vectorize the clamps of the tanh approximation.
        Extension("molgen.nn._gru_cell", ["molgen/nn/_gru_cell.c"], extra_compile_args=["-O3", "-fno-trapping-math"], optional=True),
    ],
)
