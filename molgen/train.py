"""Python API for training: ``train(config) -> summary``; ``molgen train`` is a thin layer over it.

A run directory holds ``config.yaml``, ``metrics.csv``, ``checkpoints/last.ckpt`` and the best
checkpoint by validation ELBO, ``model.pt`` (final weights, small, weights-only) and ``summary.json``.
A fine-tune (``config.finetune.init_from``, ``molgen.finetune``) also writes ``rejects.csv`` and puts
the before/after comparison of samples in the summary's ``finetune``.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import signal
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins import TorchCheckpointIO
from pytorch_lightning.callbacks import Callback, EarlyStopping, ModelCheckpoint, TQDMProgressBar

from molgen.checkpoint import load_model, save_model
from molgen.config import TrainConfig, save_config
from molgen.datamodule import MoleculeDataModule
from molgen.errors import MolgenError
from molgen.files import atomic_open, atomic_path
from molgen.model.lightning import VAEModule
from molgen.monitor import SampleFCD
from molgen.progress import say
from molgen.readers import write_rejects
from molgen.run_metrics import RunMetrics
from molgen.run_metrics import trim as trim_metrics
from molgen.training_state import CONFIG_KEY, METRICS_KEY, read_checkpoint, unpacked

CHECKPOINT_DIR = "checkpoints"
LAST = "last.ckpt"
METRICS = "metrics.csv"


class _ValidateAtEnd(Callback):
    """Stop (and so validate and checkpoint) on the final step, which max_steps alone would skip."""

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        loop = trainer.fit_loop
        last_step = trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps
        last_epoch = (
            trainer.max_epochs is not None
            and trainer.max_epochs > 0
            and trainer.current_epoch + 1 >= trainer.max_epochs
            and loop.epoch_loop.batch_progress.is_last_batch
        )
        if last_step or last_epoch:
            trainer.should_stop = True


class _StopOnInterrupt(Callback):
    """First Ctrl+C (SIGINT): finish the step, validate, write last.ckpt and stop; a second one stops at once."""

    def __init__(self) -> None:
        self.requested = False
        self.stopped_at: int | None = None
        self._previous: Any = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        requested = self.requested
        if trainer.world_size > 1:  # a signal sent to one rank stops them all at the same step
            requested = trainer.strategy.reduce_boolean_decision(requested, all=False)
        if requested and self.stopped_at is None:
            self.stopped_at = trainer.global_step
            trainer.should_stop = True  # Lightning then validates, and the last-checkpoint callback saves

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


class StretchBudget(Callback):
    """Stop (validate, checkpoint) once this process has trained for ``seconds``: a budget per stretch.

    Lightning's own ``max_time`` Timer is restored from the checkpoint, so it counts every earlier
    stretch of the run too; a run resumed on another machine should get its full allotment."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.start: float | None = None
        self.stopped = False

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.start = time.monotonic()

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        over = self.start is not None and time.monotonic() - self.start >= self.seconds
        if trainer.world_size > 1:
            over = trainer.strategy.reduce_boolean_decision(over, all=False)
        if over:
            self.stopped = trainer.should_stop = True


class _SayValidation(Callback):
    """A line per validation on stderr (a fine-tune's progress when no bar is shown)."""

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero and not trainer.sanity_checking and pl_module.last_val:
            limit = f" of {trainer.max_steps}" if trainer.max_steps > 0 else ""
            say(f"fine-tune: step {trainer.global_step}{limit}, val ELBO {pl_module.last_val['elbo']:.2f} nats/molecule")


class _RunConfig(Callback):
    """Write the run's config into every checkpoint, so that a packed state resumes with it elsewhere."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config.to_dict()

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        checkpoint[CONFIG_KEY] = self.config


class _SaveMetricsWithCheckpoints(Callback):
    """metrics.csv holds every step up to each checkpoint, so a resume finds them all."""

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        for logger in trainer.loggers:
            logger.save()


class _AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints go to a temporary name beside the target, then are renamed (Lightning's pass through /tmp)."""

    def save_checkpoint(self, checkpoint: dict, path: Any, storage_options: Any = None) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)


def _check_run_folder(out: Path) -> None:
    """Fail before any work if the run folder cannot be created or written."""
    if out.exists() and not out.is_dir():
        raise MolgenError(f"{out}: exists and is not a folder; choose another --out")
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise MolgenError(f"{out}: cannot create the run folder: {parent} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise MolgenError(f"{out}: cannot create the run folder: {parent} is not writable")


def _loggers(out: Path) -> list:
    loggers: list = [RunMetrics(out / METRICS)]
    try:
        from pytorch_lightning.loggers import TensorBoardLogger

        import tensorboard  # noqa: F401  (only to test that it is installed)

        loggers.append(TensorBoardLogger(save_dir=str(out), name="tensorboard", version=""))
    except ImportError:
        pass
    return loggers


def _quiet_lightning() -> None:
    for name in ("pytorch_lightning.utilities.rank_zero", "pytorch_lightning.accelerators.cuda", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in (
        ".*does not have many workers.*",
        ".*Checkpoint directory .* exists and is not empty.*",
        ".*Experiment logs directory .* exists and is not empty.*",
        ".*is an invalid version and will not be supported.*",
        ".*your dataloader is not resumable.*",  # MoleculeDataModule.state_dict resumes the epoch's batch order
        ".*`isinstance\\(treespec, LeafSpec\\)` is deprecated.*",
        ".*is smaller than the logging interval.*",  # a small fine-tuning set has few batches per epoch
        # val/* are reduced over ranks before logging and diag/* come from the same molecules on every rank
        ".*when logging on epoch level in distributed setting to accumulate the metric across devices.*",
    ):
        warnings.filterwarnings("ignore", message=pattern)


def model_hparams(config: TrainConfig, vocab_size: int, max_len: int) -> dict:
    """Plain-type MoleculeVAE constructor arguments for this config and vocabulary."""
    m = config.model
    return dict(
        vocab_size=vocab_size, pad_id=0, bos_id=1, eos_id=2, max_len=max_len, emb_dim=m.emb_dim,
        enc_hidden=m.enc_hidden, enc_layers=m.enc_layers, dec_hidden=m.dec_hidden, dec_layers=m.dec_layers,
        latent_dim=m.latent_dim, n_components=m.n_components, word_dropout=m.word_dropout, kind=m.kind,
        mu_batchnorm=m.mu_batchnorm,
    )  # fmt: skip


def sync_batchnorm(config: TrainConfig) -> bool:
    """Whether BN-VAE's batch statistics are taken over the whole batch of all ranks (SyncBatchNorm):
    for a GPU run on several devices. torch's SyncBatchNorm has no CPU kernel, so CPU ranks normalise
    their own share of the batch."""
    tc = config.trainer
    gpu = tc.accelerator in ("gpu", "cuda") or (tc.accelerator == "auto" and torch.cuda.is_available())
    several = tc.num_nodes > 1 or tc.devices not in (1, "1", [0])
    return config.model.mu_batchnorm > 0 and gpu and several


def seconds(dhms: str) -> int:
    """``DD:HH:MM:SS`` -> seconds."""
    days, hours, minutes, secs = (int(x) for x in dhms.split(":"))
    return ((days * 24 + hours) * 60 + minutes) * 60 + secs


def train(
    config: TrainConfig,
    resume: bool = False,
    callbacks: list[Callback] | None = None,
    resume_from: str | os.PathLike | None = None,
) -> dict:
    """Train a model as ``config`` says; return the summary (also written to ``<out>/summary.json``).

    With ``resume=True`` the run continues from ``<out>/checkpoints/last.ckpt`` (same global step,
    optimizer state, molecules seen, restart count and random stream). ``resume_from`` continues
    the run saved in a training checkpoint or packed state (``molgen.training_state``) into a new
    ``<out>``, with ``config`` (usually that state's config with some overrides: batch size,
    learning rate, precision, budget). ``trainer.max_time`` is this call's budget, not the run's.
    Under DDP every rank calls this; only rank 0 writes files.
    """
    if resume and resume_from is not None:
        raise MolgenError("give --resume (continue the run in --out) or --resume-from FILE, not both")
    if resume_from is None:
        return _train(config, resume, callbacks, None)
    with unpacked(resume_from) as checkpoint:  # a packed state becomes a full checkpoint for Lightning
        return _train(config, resume, callbacks, checkpoint, source=Path(resume_from))


def _train(
    config: TrainConfig, resume: bool, callbacks: list[Callback] | None, resume_from: Path | None, source: Path | None = None
) -> dict:
    """``resume_from`` is the checkpoint Lightning reads (a temporary file for a packed state), ``source`` the user's file."""
    config.validate()
    if config.out is None:
        raise MolgenError("no output folder: give --out DIR")
    out = Path(config.out)
    _check_run_folder(out)
    last = out / CHECKPOINT_DIR / LAST
    if resume and not last.is_file():
        raise MolgenError(f"{out}: nothing to resume ({last} does not exist)")
    if not resume and last.exists():
        raise MolgenError(f"{out} already holds a run ({last}); use --resume to continue it or choose another --out")
    start_from = last if resume else Path(resume_from) if resume_from is not None else None
    reference = config.trainer.fcd_reference
    if config.trainer.fcd_samples > 0 and reference is not None and not Path(reference).is_file():
        # a state packed on one machine names its paths there; found out at the first validation, the
        # steps before it would be lost
        raise MolgenError(
            f"trainer.fcd_reference {reference} does not exist; give --set trainer.fcd_reference=FILE "
            "(e.g. data/moses/test.csv.gz) or --set trainer.fcd_samples=0"
        )
    base = rejects = None
    if config.finetune.init_from is not None:  # the base model's architecture and vocabulary, every molecule readable
        from molgen import finetune

        base = finetune.load_base(config)
        config, ignored = finetune.adopt_architecture(config, base.model)
        if ignored and is_rank_zero():
            say(f"fine-tune: the architecture is the base model's; ignored {', '.join(ignored)}")
        d = config.data
        if d.train is None:
            raise MolgenError("no training data: give --data FILE (data.train), the set to fine-tune on")
        rejects = finetune.check_molecules(
            d.train, base.tokenizer, base.model.max_len, d.smiles_column, d.on_invalid, d.cache_dir
        )
    state = read_checkpoint(start_from) if start_from is not None else None
    _quiet_lightning()
    tc = config.trainer
    if tc.threads is not None:
        torch.set_num_threads(tc.threads)
    pl.seed_everything(tc.seed, workers=True, verbose=False)

    tokenizer = load_model(start_from)[1] if start_from is not None else base.tokenizer if base is not None else None
    data_config = dataclasses.replace(config.data, on_invalid="skip") if base is not None else config.data  # checked above
    dm, tokenizer = MoleculeDataModule.from_config(data_config, tc.seed, tokenizer, config.model.max_len)
    max_len = config.model.max_len or int(max(dm.train_set.lengths.max(), dm.val_set.lengths.max()))
    hparams = model_hparams(config, len(tokenizer), max_len)
    module = VAEModule(
        hparams,
        tokenizer.to_dict(),
        config.to_dict()["objective"],
        config.to_dict()["optim"],
        seed=tc.seed,
    )
    module.diag_every = tc.diag_every
    if base is not None and start_from is None:
        module.model.load_state_dict(base.model.state_dict())

    checkpoint = ModelCheckpoint(
        dirpath=str(out / CHECKPOINT_DIR),
        filename="best-step{global_step:.0f}",
        monitor="val/elbo",
        mode="max",
        save_top_k=1,
        auto_insert_metric_name=False,
    )
    # last.ckpt at every validation: save_last=True above would only copy improvements of val/elbo
    last_checkpoint = ModelCheckpoint(
        dirpath=str(out / CHECKPOINT_DIR), filename=Path(LAST).stem, save_top_k=1, enable_version_counter=False
    )
    interrupt = _StopOnInterrupt()
    cbs: list[Callback] = [checkpoint, last_checkpoint, _ValidateAtEnd(), _SaveMetricsWithCheckpoints(), interrupt,
                           _RunConfig(config), *(callbacks or [])]  # fmt: skip
    if tc.max_time is not None:
        cbs.append(StretchBudget(seconds(tc.max_time)))
    if base is not None and not tc.progress_bar:
        cbs.append(_SayValidation())
    if tc.early_stopping_patience > 0:
        cbs.append(EarlyStopping(monitor="val/elbo", mode="max", patience=tc.early_stopping_patience))
    if tc.fcd_samples > 0:
        cbs.append(SampleFCD(tc.fcd_samples, tokenizer, tc.fcd_reference, dm.val_set.smiles or [], tc.diag_every))
    if tc.progress_bar:
        cbs.append(TQDMProgressBar(refresh_rate=10))
    trainer = pl.Trainer(
        accelerator=tc.accelerator,
        devices=tc.devices,
        num_nodes=tc.num_nodes,
        strategy=tc.strategy,
        precision=tc.precision,
        max_steps=tc.max_steps,
        max_epochs=tc.max_epochs if tc.max_epochs is not None else -1,
        val_check_interval=tc.val_every_steps,
        check_val_every_n_epoch=None,
        log_every_n_steps=tc.log_every_n_steps,
        gradient_clip_val=config.optim.grad_clip or None,
        sync_batchnorm=sync_batchnorm(config),
        logger=_loggers(out) if is_rank_zero() else False,
        callbacks=cbs,
        enable_progress_bar=tc.progress_bar,
        enable_model_summary=False,
        use_distributed_sampler=False,
        num_sanity_val_steps=0,
        default_root_dir=str(out),
        plugins=[_AtomicCheckpointIO()],
    )
    start = time.perf_counter()
    start_step = int(state.get("global_step", 0)) if state is not None else 0
    if start_from is not None and 0 <= tc.max_steps <= start_step:
        raise MolgenError(
            f"{source or start_from}: the run is at step {start_step} already; --max-steps {tc.max_steps} "
            "leaves nothing to train (raise it, or -1 for no limit)"
        )
    history = state.get(METRICS_KEY) if state is not None else None
    del state
    if trainer.is_global_zero:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise MolgenError(f"{out}: cannot create the run folder: {err.strerror}") from None
        save_config(config, out / "config.yaml")
        if resume_from is not None and isinstance(history, str) and not (out / METRICS).exists():
            with atomic_open(out / METRICS, "w", encoding="utf-8") as handle:
                handle.write(history)  # the earlier stretches' curves continue in this run folder
        trim_metrics(out / METRICS, start_step)
        if rejects is not None:
            write_rejects(out / "rejects.csv", rejects)  # written even when empty: no stale list remains
    trainer.fit(module, datamodule=dm, ckpt_path=str(start_from) if start_from is not None else None)
    elapsed = time.perf_counter() - start
    if trainer.interrupted or interrupt.stopped_at is not None:
        raise KeyboardInterrupt(f"stopped at step {trainer.global_step}; {last} holds it, continue with --resume")
    summary = _summary(config, trainer, module, checkpoint, elapsed, trainer.global_step - start_step)
    if trainer.is_global_zero:
        extra = {"global_step": trainer.global_step, "val": module.last_val}
        if base is not None:
            reference = (dm.train_set.smiles or []) + (dm.val_set.smiles or [])
            summary["finetune"] = finetune.finish(module.model, tokenizer, dm.train_set, reference, config, base,
                                                  checkpoint.best_model_path or None)  # fmt: skip
            summary["finetune"]["rejects"] = {"file": str(out / "rejects.csv"), "count": len(rejects or [])}
            extra["finetune"] = {k: summary["finetune"][k] for k in ("init_from", "restored_from", "prior_refit")}
        save_model(out / "model.pt", module.model, tokenizer, extra=extra)
        with atomic_open(out / "summary.json", "w", encoding="utf-8") as handle:
            json.dump(summary, handle, indent=1)
    return summary


def is_rank_zero() -> bool:
    """Whether this process is global rank 0 by its environment (usable before and after the Trainer exists)."""
    return int(os.environ.get("LOCAL_RANK", "0")) == 0 and int(os.environ.get("NODE_RANK", "0")) == 0


def _summary(
    config: TrainConfig, trainer: pl.Trainer, module: VAEModule, checkpoint: ModelCheckpoint, elapsed: float, steps: int
) -> dict:
    molecules = module.molecules_seen * trainer.world_size  # this rank's count times the number of ranks
    out = Path(config.out)
    return {
        "global_step": int(trainer.global_step),
        "epoch": int(trainer.current_epoch),
        "steps_this_run": int(steps),
        "molecules_this_run": int(molecules),
        "seconds_this_run": round(elapsed, 1),
        "molecules_per_second": round(molecules / elapsed, 1) if elapsed > 0 else None,
        "model_kind": config.model.kind,
        "parameters": module.model.n_parameters(),
        "val": module.last_val,
        "diagnostics": module.last_diagnostics,
        "component_restarts": module.restarts,
        "best_checkpoint": checkpoint.best_model_path or None,
        "best_val_elbo": float(checkpoint.best_model_score) if checkpoint.best_model_score is not None else None,
        "last_checkpoint": str(out / CHECKPOINT_DIR / LAST),
        "model_file": str(out / "model.pt"),
        "precision": config.trainer.precision,
        "world_size": int(trainer.world_size),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "threads": torch.get_num_threads()},
    }  # fmt: skip
