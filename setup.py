"""Only the optional C extension lives here; everything else is in pyproject.toml."""
from setuptools import Extension, setup

setup(
    ext_modules=[
        # AVX-512 Tanimoto kernel; optional: without a C compiler molgen uses its portable path.
        Extension("molgen.metrics._tanimoto", ["molgen/metrics/_tanimoto.c"], extra_compile_args=["-O3"], optional=True)
    ]
)
