"""Model building blocks: encoder, decoder, mixture prior, the VAE that wires them, diagnostics."""
from molgen.model.prior import MixturePrior
from molgen.model.vae import MoleculeVAE

__all__ = ["MixturePrior", "MoleculeVAE"]
