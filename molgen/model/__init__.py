"""Model building blocks: encoder, decoder, mixture prior, the VAE that wires them, diagnostics."""
from molgen.model.prior import MixturePrior
from molgen.model.vae import MoleculeVAE

#: the format version of model files and training checkpoints (molgen/checkpoint.py, lightning.py)
VERSION = 1

__all__ = ["MixturePrior", "MoleculeVAE", "VERSION"]
