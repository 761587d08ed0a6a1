"""LightningModule wiring MoleculeVAE to an optimizer, beta warm-up, validation at beta = 1,
collapse diagnostics at every validation and restarts of dead mixture components."""
from __future__ import annotations

import math
import time

import pytorch_lightning as pl
import torch

from molgen.errors import MolgenError
from molgen.model.diagnostics import posterior_statistics, summarize
from molgen.model.vae import MoleculeVAE

VAL_KEYS = ("elbo", "rec", "kl", "tokens", "token_acc", "exact", "n")


class VAEModule(pl.LightningModule):
    """Trains a MoleculeVAE; hyper-parameters are plain dicts so checkpoints load with weights_only=True."""

    def __init__(self, model: dict, vocab: dict, objective: dict, optim: dict, seed: int = 0) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = MoleculeVAE(**model)
        self.objective, self.optim = objective, optim
        self.last_val: dict = {}
        self.last_diagnostics: dict = {}
        self.restarts = 0
        self.molecules_seen = 0  # on this rank, in this process
        self._val_sums: torch.Tensor | None = None
        self._step_time: float | None = None

    # ------------------------------------------------------------------ training
    def beta_at(self, step: int) -> float:
        """KL weight at optimizer step ``step``: linear warm-up from beta_start to beta."""
        o = self.objective
        if o["beta_warmup_steps"] <= 0:
            return float(o["beta"])
        frac = min(1.0, step / o["beta_warmup_steps"])
        return float(o["beta_start"] + frac * (o["beta"] - o["beta_start"]))

    def on_fit_start(self) -> None:
        """Give each rank its own random stream for z draws and word dropout (seed + global rank)."""
        torch.manual_seed(self.hparams.seed + self.global_rank)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """One step on a (tokens, lengths) batch; logs loss, ELBO/rec/KL (nats/molecule), beta, mol/s."""
        tokens, lengths = batch
        self.molecules_seen += len(lengths)
        beta = self.beta_at(self.global_step)
        terms = self.model.elbo_terms(
            tokens, lengths, self.objective["kl_samples"], beta, self.objective["free_bits"]
        )
        if not torch.isfinite(terms["loss"]):
            raise MolgenError(
                f"training loss is {terms['loss'].item()} at step {self.global_step}; stopped before the update, "
                "the last checkpoint is the last good one (lower optim.lr or check the data)"
            )
        now = time.perf_counter()
        if self._step_time is not None:
            rate = len(lengths) * self.trainer.world_size / max(now - self._step_time, 1e-9)
            self.log("train/mol_per_s", rate, on_step=True, on_epoch=False)
        self._step_time = now
        log = dict(on_step=True, on_epoch=False, batch_size=len(lengths))
        self.log("train/loss", terms["loss"], **log)
        self.log("train/elbo", terms["elbo"].mean(), prog_bar=True, **log)
        self.log("train/rec", terms["rec"].mean(), **log)
        self.log("train/kl", terms["kl"].mean(), prog_bar=True, **log)
        self.log("train/beta", beta, **log)
        return terms["loss"]

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """AdamW with the configured learning rate and weight decay."""
        return torch.optim.AdamW(self.parameters(), lr=self.optim["lr"], weight_decay=self.optim["weight_decay"])

    # ------------------------------------------------------------------ validation
    def on_validation_epoch_start(self) -> None:
        self._val_sums = torch.zeros(len(VAL_KEYS), dtype=torch.float64, device=self.device)
        self._step_time = None

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        """Accumulate ELBO terms at beta = 1 and teacher-forced reconstruction accuracy (z = mu)."""
        tokens, lengths = batch
        terms = self.model.elbo_terms(tokens, lengths, self.objective["kl_samples"], 1.0)
        token_acc, exact = self.model.reconstruction_accuracy(tokens, lengths)
        values = [terms["elbo"].sum(), terms["rec"].sum(), terms["kl"].sum(), lengths.sum(),
                  token_acc.sum(), exact.sum(), len(lengths)]  # fmt: skip
        self._val_sums += torch.stack([torch.as_tensor(v, dtype=torch.float64, device=self.device) for v in values])

    def on_validation_epoch_end(self) -> None:
        """Log val/* means over all ranks, run collapse diagnostics and restart dead components."""
        sums = self.trainer.strategy.reduce(self._val_sums, reduce_op="sum")
        s = dict(zip(VAL_KEYS, sums.tolist()))
        n = max(s["n"], 1.0)
        self.last_val = {
            "elbo": s["elbo"] / n,
            "rec": s["rec"] / n,
            "kl": s["kl"] / n,
            "bits_per_token": -s["elbo"] / max(s["tokens"], 1.0) / math.log(2),
            "token_acc": s["token_acc"] / n,
            "exact": s["exact"] / n,
            "n_molecules": int(s["n"]),
        }
        for key, value in self.last_val.items():
            if key != "n_molecules":
                self.log(f"val/{key}", value, prog_bar=key == "elbo", sync_dist=False)
        if self.model.kind == "vae" and not self.trainer.sanity_checking:
            self._diagnose()

    def _diagnose(self) -> None:
        datamodule = self.trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "diagnostic_tensors"):
            return
        stats = posterior_statistics(
            self.model, datamodule.diagnostic_tensors(), n_samples=self.objective["kl_samples"], seed=self.hparams.seed
        )
        diag = summarize(stats, self.model.prior.logits.detach())
        self.last_diagnostics = diag
        for key in ("kl", "active_units", "mutual_info", "n_eff", "n_dead", "mi_x_k"):
            self.log(f"diag/{key}", float(diag[key]), sync_dist=False)
        fitting = self.trainer.state.fn == "fit"
        if fitting and self.objective["restart_dead_components"] and diag["n_dead"] > 0:
            self._restart_dead(diag["dead_components"], stats)
        self.log("diag/restarts", float(self.restarts), sync_dist=False)

    @torch.no_grad()
    def _restart_dead(self, dead: list[int], stats: dict[str, torch.Tensor]) -> None:
        """Move dead components onto posterior means of poorly fit molecules (the worst 10% by ELBO).

        Every rank computes the same choice (same weights, data and seed); rank 0's parameters are
        broadcast anyway so the replicas cannot drift. The optimizer moments of the moved rows are reset.
        """
        prior = self.model.prior
        generator = torch.Generator().manual_seed(self.hparams.seed * 1_000_003 + self.global_step)
        n_poor = max(len(dead), len(stats["elbo"]) // 10)
        poor = torch.argsort(stats["elbo"])[:n_poor]
        chosen = poor[torch.randperm(n_poor, generator=generator)[: len(dead)]]
        dead_t = torch.tensor(dead, dtype=torch.long)
        prior.restart_components(dead_t, stats["mu"][chosen])
        for param in prior.parameters():
            param.data.copy_(self.trainer.strategy.broadcast(param.data.clone(), src=0))
        optimizer = self.trainer.optimizers[0] if self.trainer.optimizers else None
        if optimizer is not None:
            for param in (prior.logits, prior.means, prior.log_scales):
                state = optimizer.state.get(param, {})
                for key in ("exp_avg", "exp_avg_sq"):
                    if key in state:
                        state[key][dead_t.to(state[key].device)] = 0.0
        self.restarts += len(dead)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Keep the restart count across resumes; refuse to write non-finite weights."""
        from molgen.checkpoint import VERSION

        bad = next((name for name, p in self.model.named_parameters() if not torch.isfinite(p).all()), None)
        if bad is not None:
            raise MolgenError(f"weight {bad} is not finite at step {self.global_step}; checkpoint not written")
        checkpoint["molgen"] = {"restarts": self.restarts, "version": VERSION}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.restarts = int(checkpoint.get("molgen", {}).get("restarts", 0))
