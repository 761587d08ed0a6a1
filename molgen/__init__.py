"""molgen: SELFIES mixture-prior VAE for small-molecule generation.

Data flow: data (read, canonicalize) -> tokenizer (SELFIES ids) -> datamodule -> model -> train
-> sample (CSV library) -> evaluate (likelihood, diagnostics) / metrics (MOSES-compatible scores).
"""
from molgen.errors import MolgenError

__version__ = "0.1.0"
__all__ = ["MolgenError", "__version__"]
