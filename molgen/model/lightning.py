"""LightningModule wiring MoleculeVAE to an optimizer, beta warm-up, validation at beta = 1,
collapse diagnostics at every validation and restarts of dead mixture components."""
from __future__ import annotations

import dataclasses
import math
import time

import pytorch_lightning as pl
import torch

from molgen.config import OptimConfig
from molgen.errors import MolgenError
from molgen.model import VERSION
from molgen.model.diagnostics import posterior_statistics, summarize
from molgen.model.vae import MoleculeVAE

VAL_KEYS = ("elbo", "rec", "kl", "tokens", "token_acc", "exact", "n")
FRESH_MOMENTS_WARMUP = 100_000  # molecules of lr warm-up at least, for a stretch resumed without AdamW moments
OPTIM_DEFAULTS = {f.name: f.default for f in dataclasses.fields(OptimConfig)}  # checkpoints of older runs lack newer keys
OBJECTIVE_DEFAULTS = {"restart_every_steps": 0, "restart_mode": "poor", "mixture_weights": "learned", "usage_bonus": 0.0,
                      "kl_target": 0.0, "beta_cycle_molecules": 0, "beta_cycles": 4, "beta_cycle_ramp": 0.5,
                      "ae_warmup_molecules": 0}
USAGE_EMA_DECAY = 0.9  # the usage estimate behind in-training restarts averages about the last 10 batches


class VAEModule(pl.LightningModule):
    """Trains a MoleculeVAE; hyper-parameters are plain dicts so checkpoints load with weights_only=True."""

    def __init__(self, model: dict, vocab: dict, objective: dict, optim: dict, seed: int = 0) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = MoleculeVAE(**model)
        self.objective = {**OBJECTIVE_DEFAULTS, **objective}  # checkpoints of older runs lack the newer keys
        self.optim = {**OPTIM_DEFAULTS, **optim}
        if self.objective["mixture_weights"] == "uniform" and self.model.kind == "vae":
            with torch.no_grad():
                self.model.prior.logits.zero_()
            self.model.prior.logits.requires_grad_(False)
        k = self.model.prior.n_components if self.model.kind == "vae" else 1
        self.register_buffer("usage_ema", torch.full((k,), 1.0 / k), persistent=False)
        self._last_batch: dict[str, torch.Tensor] = {}
        self._usage_fresh = True
        self.last_val: dict = {}
        self.last_diagnostics: dict = {}
        self.restarts = 0
        self.decoder_restarted = False  # the autoencoder warm start's decoder re-initialisation has happened
        self.molecules_seen = 0  # on this rank, in this process
        self.molecules_total = 0  # over all ranks and all stretches of the run (kept in checkpoints)
        self._rng_state: torch.Tensor | None = None
        self._val_sums: torch.Tensor | None = None
        self._step_time: float | None = None
        self._batch_molecules = 0  # the batch of the step being taken
        self.fresh_moments = False  # resumed from a state whose AdamW moments were left out
        self.diag_every = 1  # diagnostics at every N-th validation of this stretch (trainer.diag_every)
        self._validations = 0  # validations of this stretch, sanity checks excluded

    # ------------------------------------------------------------------ training
    def beta_at(self, molecules: int) -> float:
        """KL weight after ``molecules`` training molecules: a linear warm-up from beta_start to beta,
        or with ``beta_cycle_molecules`` > 0 cyclical annealing (Fu et al. 2019): ``beta_cycles``
        cycles, each rising linearly over its first ``beta_cycle_ramp`` fraction and then held at
        beta, and beta after the last cycle. With ``ae_warmup_molecules`` > 0 (autoencoder warm
        start, Li et al. 2019) beta is 0 for that many molecules and the schedule starts after them.

        Schedules count molecules, not steps, so a run resumed with another batch size (a GPU
        stretch after a CPU one) keeps its schedule."""
        o = self.objective
        start, end = float(o["beta_start"]), float(o["beta"])
        if molecules < o["ae_warmup_molecules"]:
            return 0.0
        molecules -= o["ae_warmup_molecules"]
        cycle = o["beta_cycle_molecules"]
        if cycle > 0:
            if molecules >= o["beta_cycles"] * cycle:
                return end
            ramp = o["beta_cycle_ramp"] * cycle
            frac = min(1.0, (molecules % cycle) / ramp)
        elif o["beta_warmup_molecules"] > 0:
            frac = min(1.0, molecules / o["beta_warmup_molecules"])
        else:
            return end
        return start + frac * (end - start)

    def lr_at(self, molecules: int) -> float:
        """Learning rate after ``molecules``: optim.lr, then from cooldown_from_molecules a fall to
        lr_final over cooldown_molecules, shaped 1 - sqrt (constant-then-cool-down; Hägele et al.
        2024 found 1 - sqrt better than a linear fall), and lr_final after it. Counted in molecules like the beta warm-up,
        so the schedule survives a resume with another batch size."""
        o = self.optim
        start = o["cooldown_from_molecules"]
        if start is None or molecules <= start:
            return float(o["lr"])
        frac = min(1.0, (molecules - start) / o["cooldown_molecules"])
        return float(o["lr_final"] + (o["lr"] - o["lr_final"]) * (1.0 - math.sqrt(frac)))

    def warmup_factor(self) -> float:
        """The lr's share during this stretch's warm-up: (molecules this stretch, this step's
        included) / optim.warmup_molecules, at most 1; 1 when there is none. A stretch resumed from
        a state without optimizer moments (``pack_state(moments=False)``) warms up over at least
        FRESH_MOMENTS_WARMUP molecules while AdamW rebuilds them."""
        warmup = self.optim["warmup_molecules"]
        if self.fresh_moments:
            warmup = max(warmup, FRESH_MOMENTS_WARMUP)
        if warmup <= 0:
            return 1.0
        return min(1.0, (self.molecules_seen + self._batch_molecules) * self.trainer.world_size / warmup)

    def _set_lr(self, lr: float) -> None:
        for optimizer in self.trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = lr

    def on_fit_start(self) -> None:
        """Give each rank its own random stream for z draws and word dropout (seed + global rank);
        a resumed run continues the stream its checkpoint saved."""
        if self._rng_state is not None and self.trainer.world_size == 1:
            torch.set_rng_state(self._rng_state)
        else:
            torch.manual_seed(self.hparams.seed + self.global_rank + 1_000_003 * self.global_step)
        self._rng_state = None

    def on_train_start(self) -> None:
        """The learning rate is the config's schedule's, also after a resume (the optimizer state saved the old one)."""
        self._set_lr(self.lr_at(self.molecules_total) * self.warmup_factor())

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """One step on a (tokens, lengths) batch; logs loss, ELBO/rec/KL (nats/molecule), beta, mol/s."""
        tokens, lengths = batch
        if self._autoencoder_phase_ended():
            self._restart_decoder()
        beta = self.beta_at(self.molecules_total)
        self._batch_molecules = len(lengths)
        lr = self.lr_at(self.molecules_total) * self.warmup_factor()
        self._set_lr(lr)  # before this step's update, for the molecules seen before it
        self.molecules_seen += len(lengths)
        self.molecules_total += len(lengths) * self.trainer.world_size
        o = self.objective
        terms = self.model.elbo_terms(tokens, lengths, o["kl_samples"], beta, o["free_bits"], o["kl_target"])
        loss = terms["loss"]
        if self.model.kind == "vae":
            usage = terms["resp"].float().mean(0)  # [K] this batch's mixture usage
            bonus = self.usage_bonus_at(self.molecules_total)
            if bonus > 0:
                loss = loss - bonus * -(usage * torch.log(usage.clamp_min(1e-12))).sum()
            if self._usage_fresh:  # the first batch (and the first after a restart) sets the estimate
                self.usage_ema.copy_(usage.detach())
                self._usage_fresh = False
            else:
                self.usage_ema.mul_(USAGE_EMA_DECAY).add_((1 - USAGE_EMA_DECAY) * usage.detach())
            self._last_batch = {"elbo": terms["elbo"].detach().float(), "mu": terms["mu"].float()}
        # Reading a value of the step (the loss check, a logged metric: Lightning copies a float to the
        # device and reads the progress-bar ones) waits for the device. On an accelerator that happens
        # only at the steps Lightning writes to the logs; a checkpoint refuses non-finite weights, and
        # validation checks them, in between.
        logged = self._logging_step()
        if (logged or self.device.type == "cpu") and not torch.isfinite(terms["loss"]):
            raise MolgenError(
                f"training loss is {terms['loss'].item()} at step {self.global_step}; stopped before the update, "
                "the last checkpoint is the last good one (lower optim.lr or check the data)"
            )
        now = time.perf_counter()
        rate = None if self._step_time is None else len(lengths) * self.trainer.world_size / max(now - self._step_time, 1e-9)
        self._step_time = now
        if not logged:
            return loss
        if rate is not None:
            self.log("train/mol_per_s", rate, on_step=True, on_epoch=False)
        log = dict(on_step=True, on_epoch=False, batch_size=len(lengths))
        # rows are labelled with the index of the step (Lightning's public "step" metric), also after a resume
        self.log("step", float(self.global_step), **log)
        self.log("epoch", float(self.current_epoch), **log)
        self.log("train/loss", terms["loss"], **log)
        self.log("train/elbo", terms["elbo"].mean(), prog_bar=True, **log)
        self.log("train/rec", terms["rec"].mean(), **log)
        self.log("train/kl", terms["kl"].mean(), prog_bar=True, **log)
        self.log("train/beta", beta, **log)
        self.log("train/lr", lr, **log)
        self.log("train/molecules", float(self.molecules_total), **log)
        return loss

    def _logging_step(self) -> bool:
        """Whether Lightning writes this training step's metrics to the logs (its own rule)."""
        every = self.trainer.log_every_n_steps
        return every > 0 and ((self.global_step + 1) % every == 0 or self.trainer.should_stop)

    def _autoencoder_phase_ended(self) -> bool:
        """Whether the autoencoder warm start is over and its decoder not yet re-initialised."""
        ae = self.objective["ae_warmup_molecules"]
        return self.model.kind == "vae" and ae > 0 and not self.decoder_restarted and self.molecules_total >= ae

    def _restart_decoder(self) -> None:
        """End the autoencoder warm start as Li et al. (2019) do: the encoder trained without the KL
        keeps its weights and the decoder starts afresh, so that it learns to read z rather than
        keeping what it learned of the data without one. Every rank draws the same weights (a fixed
        seed, outside the training stream); the decoder's optimizer state is dropped with them."""
        decoder = self.model.decoder
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(self.hparams.seed * 1_000_003 + 17)
            for module in decoder.modules():
                if module is not decoder and hasattr(module, "reset_parameters"):
                    module.reset_parameters()
        optimizer = self.trainer.optimizers[0] if self.trainer.optimizers else None
        if optimizer is not None:
            for param in decoder.parameters():
                optimizer.state.pop(param, None)  # AdamW starts a fresh state (step 0) for it
        self.decoder_restarted = True

    def usage_bonus_at(self, molecules: int) -> float:
        """Weight of the usage-entropy bonus after ``molecules``: usage_bonus, falling linearly to 0 over the beta warm-up."""
        bonus = float(self.objective["usage_bonus"])
        warmup = self.objective["beta_warmup_molecules"]
        return bonus * max(0.0, 1.0 - molecules / warmup) if warmup > 0 else 0.0

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        """Every restart_every_steps steps, restart components whose usage EMA is below 0.1 / K."""
        every = self.objective["restart_every_steps"]
        if self.model.kind != "vae" or not self.objective["restart_dead_components"] or every <= 0:
            return
        if self.global_step % every != 0 or not self._last_batch:
            return
        usage = self.trainer.strategy.reduce(self.usage_ema.clone(), reduce_op="mean")
        dead = torch.nonzero(usage < 0.1 / len(usage)).flatten().cpu().tolist()
        if dead:
            self._restart_dead(dead, {k: v.cpu() for k, v in self._last_batch.items()}, usage.cpu())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """AdamW with the configured learning rate and weight decay."""
        return torch.optim.AdamW(self.parameters(), lr=self.optim["lr"], weight_decay=self.optim["weight_decay"])

    # ------------------------------------------------------------------ validation
    def _non_finite_weight(self) -> str | None:
        """Name of the first parameter holding a NaN or inf, or None."""
        return next((name for name, p in self.model.named_parameters() if not torch.isfinite(p).all()), None)

    def on_validation_epoch_start(self) -> None:
        bad = self._non_finite_weight()
        if bad is not None:  # on an accelerator the loss is read only at logging steps
            raise MolgenError(
                f"weight {bad} is not finite at step {self.global_step}; stopped, the last checkpoint is the "
                "last good one (lower optim.lr or check the data)"
            )
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
        self.log("step", float(self.global_step - 1), sync_dist=False)  # the step the validation follows
        self.log("epoch", float(self.current_epoch), sync_dist=False)
        self.log("global_step", float(self.global_step), logger=False)  # names the best checkpoint
        if not self.trainer.sanity_checking:
            due = self._validations % self.diag_every == 0 or self.trainer.should_stop  # the last one too
            if self.model.kind == "vae" and due:
                self._diagnose()
            self._validations += 1

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
            self._restart_dead(diag["dead_components"], stats, torch.tensor(diag["mixture_usage"]))
        self.log("diag/restarts", float(self.restarts), sync_dist=False)

    @torch.no_grad()
    def _restart_dead(self, dead: list[int], stats: dict[str, torch.Tensor], usage: torch.Tensor) -> None:
        """Restart dead components: split the most used ones (restart_mode "split") or move them onto
        posterior means of poorly fit molecules (the worst 10% by ELBO, restart_mode "poor").

        Every rank computes the same choice (same weights, data and seed); rank 0's parameters are
        broadcast anyway so the replicas cannot drift. The optimizer moments of the moved rows are reset.
        """
        prior = self.model.prior
        generator = torch.Generator().manual_seed(self.hparams.seed * 1_000_003 + self.global_step)
        dead_t = torch.tensor(dead, dtype=torch.long)
        moved = dead_t
        if self.objective["restart_mode"] == "split":
            parents = prior.split_components(dead_t, usage, generator=generator)
            moved = torch.cat([dead_t, torch.tensor(parents, dtype=torch.long)]).unique()
        else:
            n_poor = min(len(stats["elbo"]), max(len(dead), len(stats["elbo"]) // 10))
            poor = torch.argsort(stats["elbo"])[:n_poor]
            chosen = poor[torch.randperm(n_poor, generator=generator)[: len(dead)]]
            chosen = chosen[torch.arange(len(dead)) % len(chosen)]
            prior.restart_components(dead_t, stats["mu"][chosen])
        self._usage_fresh = True
        for param in prior.parameters():
            param.data.copy_(self.trainer.strategy.broadcast(param.data.clone(), src=0))
        optimizer = self.trainer.optimizers[0] if self.trainer.optimizers else None
        if optimizer is not None:
            for param in (prior.logits, prior.means, prior.log_scales):
                state = optimizer.state.get(param, {})
                for key in ("exp_avg", "exp_avg_sq"):
                    if key in state:
                        state[key][moved.to(state[key].device)] = 0.0
        self.restarts += len(dead)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Keep the restart count across resumes; refuse to write non-finite weights."""
        bad = self._non_finite_weight()
        if bad is not None:
            raise MolgenError(f"weight {bad} is not finite at step {self.global_step}; checkpoint not written")
        checkpoint["molgen"] = {"restarts": self.restarts, "version": VERSION, "molecules": self.molecules_total,
                                "rng_state": torch.get_rng_state(), "decoder_restarted": self.decoder_restarted}  # fmt: skip

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("molgen", {})
        self.restarts = int(state.get("restarts", 0))
        self.molecules_total = int(state.get("molecules", 0))
        self._rng_state = state.get("rng_state")
        # a run that predates the option has no warm start to end
        self.decoder_restarted = bool(state.get("decoder_restarted", True))
        self.fresh_moments = not any(opt.get("state") for opt in checkpoint.get("optimizer_states", []))
