"""Building blocks of the model: the GRU encoder, the GRU decoder (and its one-step form), the mixture prior.

``molgen.model`` wires them into ``MoleculeVAE`` and holds what is built on it: the generation loop,
the LightningModule, the diagnostics and the EM refit of the prior.
"""
