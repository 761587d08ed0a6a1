"""The model: MoleculeVAE (wiring molgen.nn's blocks), generation, the LightningModule, diagnostics, the prior refit."""
from molgen.nn.prior import MixturePrior
from molgen.model.vae import MoleculeVAE

#: the format version of model files and training checkpoints (molgen/checkpoint.py, lightning.py)
VERSION = 1

__all__ = ["MixturePrior", "MoleculeVAE", "VERSION"]
