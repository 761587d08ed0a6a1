"""Typed, validated training configuration: dataclasses <-> YAML, with dotted-key overrides.

Unknown keys and values of the wrong type raise MolgenError naming the key (``model.latent_dim``).
"""
from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from molgen.errors import MolgenError
from molgen.files import atomic_open


@dataclass
class ModelConfig:
    """Network sizes; kind="lm" is the decoder alone (the likelihood baseline)."""

    kind: Literal["vae", "lm"] = "vae"
    emb_dim: int = 128
    enc_hidden: int = 256
    enc_layers: int = 1
    dec_hidden: int = 512
    dec_layers: int = 1
    latent_dim: int = 64
    n_components: int = 10
    word_dropout: float = 0.0
    mu_batchnorm: float = 0.0  # BN-VAE: > 0 batch-normalises the posterior means to this fixed scale (Zhu et al. 2020); 0 = off
    max_len: int | None = None  # token cap incl. <eos>; None: the longest training molecule


@dataclass
class ObjectiveConfig:
    """ELBO options: KL estimator samples, beta warm-up, free bits, mixture-collapse prevention."""

    kl_samples: int = 8
    beta: float = 1.0
    beta_start: float = 0.0
    beta_warmup_molecules: int = 768_000  # molecules, not steps: the schedule survives a change of batch size
    beta_cycle_molecules: int = 0  # > 0: cyclical annealing (Fu et al. 2019) in cycles this long instead of the warm-up
    beta_cycles: int = 4  # cycles before beta stays at objective.beta
    beta_cycle_ramp: float = 0.5  # fraction of each cycle spent rising from beta_start to beta
    ae_warmup_molecules: int = 0  # > 0: autoencoder warm start (Li et al. 2019): beta = 0 this long, then the decoder is re-initialised and the beta schedule starts
    free_bits: float = 0.0  # nats per latent dimension (batch level); 0 = off
    kl_target: float = 12.0  # nats per molecule: below it the batch KL stops pulling the encoder to the prior; 0 = off
    restart_dead_components: bool = True  # the switch for all of mixture-collapse prevention (--no-restart)
    restart_every_steps: int = 50  # check the EMA of batch usage every N steps; 0 = at validation only
    restart_mode: Literal["split", "poor"] = "split"  # split the most used component | move to poorly fit x
    mixture_weights: Literal["learned", "uniform"] = "learned"  # uniform: pi_k = 1/K, not trained
    usage_bonus: float = 0.0  # weight of -H(batch usage) in the loss, annealed to 0 over the beta warm-up


@dataclass
class OptimConfig:
    """AdamW, gradient clipping and the learning rate's cool-down (constant, then falling; in molecules seen)."""

    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float = 5.0
    cooldown_from_molecules: int | None = None  # the lr starts falling here; None: constant lr
    cooldown_molecules: int = 3_000_000  # length of the fall (1 - sqrt shape); lr_final after it
    lr_final: float = 1e-4
    warmup_molecules: int = 0  # the lr ramps up linearly over each stretch's first N molecules (a resume with a larger batch); 0 = off


@dataclass
class DataConfig:
    """Input files and batching."""

    train: str | None = None
    val: str | None = None  # None: hold out val_size molecules of the training file
    val_size: int = 2000
    val_fraction: float = 0.0  # > 0: hold out this fraction of the training file instead of val_size molecules
    smiles_column: str | None = None
    constraints: Literal["strict", "relaxed"] = "strict"
    on_invalid: Literal["error", "skip"] = "error"
    cache_dir: str | None = None
    batch_size: int = 256
    bucket_batches: int = 50  # batches drawn together, then sorted by length
    diag_molecules: int = 2000  # validation molecules used for collapse diagnostics
    num_workers: int = 0


@dataclass
class TrainerConfig:
    """Lightning Trainer settings."""

    max_steps: int = 20000
    max_time: str | None = None  # DD:HH:MM:SS
    max_epochs: int | None = None
    val_every_steps: int = 500
    precision: str = "bf16-mixed"
    accelerator: str = "auto"
    devices: Union[int, str] = 1
    num_nodes: int = 1
    strategy: str = "auto"
    log_every_n_steps: int = 50
    progress_bar: bool = True
    seed: int = 0
    threads: int | None = None  # torch intra-op threads per process; None: torch default
    fcd_samples: int = 2000  # molecules sampled at every validation for val/fcd; 0 = off
    fcd_reference: str | None = None  # SMILES file whose ChemNet statistics val/fcd is against; None: the validation set
    early_stopping_patience: int = 0  # stop after this many validations without a better val/elbo; 0 = off
    diag_every: int = 1  # collapse diagnostics and val/fcd at every N-th validation of a stretch (its first included)


@dataclass
class FinetuneConfig:
    """Fine-tuning a trained model on a small set (``molgen train --init-from``); off while init_from is None."""

    init_from: str | None = None  # a model file, a training .ckpt, a run folder (its model.pt) or "shipped"
    restore_best: bool = True  # the final weights are those of the best validation step
    refit_prior: bool = True  # EM refit of the prior to the training molecules' encodings at the end
    refit_draws: int = 20  # z draws per training molecule for the refit (at most 50,000 in all)
    eval_samples: int = 1000  # molecules drawn from the base and the fine-tuned model for the comparison; 0 = none
    eval_seed: int = 0
    eval_constraints: Literal["strict", "relaxed"] | None = None  # decoding for the comparison; None: the model's own
    eval_valid_only: bool = False  # redraw invalid molecules (useful with relaxed constraints)
    base_train: str | None = None  # the base model's training file (novelty); None: MOSES train for the shipped model


@dataclass
class TrainConfig:
    """Everything a training run needs; written to ``<out>/config.yaml``."""

    out: str | None = None
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)

    def to_dict(self) -> dict:
        """Plain nested dict (YAML/JSON ready)."""
        return dataclasses.asdict(self)

    def validate(self) -> "TrainConfig":
        """Check value ranges; raise MolgenError naming the key. Returns self."""
        positive = {
            "model.emb_dim": self.model.emb_dim, "model.enc_hidden": self.model.enc_hidden,
            "model.enc_layers": self.model.enc_layers, "model.dec_hidden": self.model.dec_hidden,
            "model.dec_layers": self.model.dec_layers, "model.latent_dim": self.model.latent_dim,
            "model.n_components": self.model.n_components, "objective.kl_samples": self.objective.kl_samples,
            "optim.lr": self.optim.lr, "data.batch_size": self.data.batch_size,
            "data.bucket_batches": self.data.bucket_batches, "data.diag_molecules": self.data.diag_molecules,
            "trainer.val_every_steps": self.trainer.val_every_steps, "trainer.num_nodes": self.trainer.num_nodes,
            "trainer.log_every_n_steps": self.trainer.log_every_n_steps, "trainer.diag_every": self.trainer.diag_every,
        }  # fmt: skip
        for key, value in positive.items():
            if value <= 0:
                raise MolgenError(f"config {key} must be > 0, got {value}")
        non_negative = {
            "objective.beta": self.objective.beta, "objective.beta_start": self.objective.beta_start,
            "objective.beta_warmup_molecules": self.objective.beta_warmup_molecules,
            "objective.beta_cycle_molecules": self.objective.beta_cycle_molecules,
            "objective.ae_warmup_molecules": self.objective.ae_warmup_molecules,
            "objective.kl_target": self.objective.kl_target,
            "objective.free_bits": self.objective.free_bits, "objective.usage_bonus": self.objective.usage_bonus,
            "objective.restart_every_steps": self.objective.restart_every_steps, "optim.weight_decay": self.optim.weight_decay,
            "optim.grad_clip": self.optim.grad_clip, "optim.warmup_molecules": self.optim.warmup_molecules,
            "data.val_size": self.data.val_size,
            "trainer.fcd_samples": self.trainer.fcd_samples,
            "data.num_workers": self.data.num_workers,
            "trainer.early_stopping_patience": self.trainer.early_stopping_patience,
            "finetune.refit_draws": self.finetune.refit_draws, "finetune.eval_samples": self.finetune.eval_samples,
        }  # fmt: skip
        for key, value in non_negative.items():
            if value < 0:
                raise MolgenError(f"config {key} must be >= 0, got {value}")
        cooldown = self.optim.cooldown_from_molecules
        if cooldown is not None and cooldown < 0:
            raise MolgenError(f"config optim.cooldown_from_molecules must be >= 0 (or null: no cool-down), got {cooldown}")
        if cooldown is not None and self.optim.cooldown_molecules <= 0:
            raise MolgenError(f"config optim.cooldown_molecules must be > 0, got {self.optim.cooldown_molecules}")
        if cooldown is not None and not 0 < self.optim.lr_final <= self.optim.lr:
            raise MolgenError(
                f"config optim.lr_final must be in (0, optim.lr = {self.optim.lr}], got {self.optim.lr_final}"
            )
        if not 0 <= self.data.val_fraction < 1:
            raise MolgenError(f"config data.val_fraction must be in [0, 1), got {self.data.val_fraction}")
        if self.finetune.eval_samples == 1:
            raise MolgenError("config finetune.eval_samples must be 0 (no comparison) or at least 2, got 1")
        if self.objective.beta_cycle_molecules > 0 and self.objective.beta_cycles < 1:
            raise MolgenError(f"config objective.beta_cycles must be >= 1 with cyclical annealing, got {self.objective.beta_cycles}")
        if not 0 < self.objective.beta_cycle_ramp <= 1:
            raise MolgenError(f"config objective.beta_cycle_ramp must be in (0, 1], got {self.objective.beta_cycle_ramp}")
        if self.model.mu_batchnorm < 0:
            raise MolgenError(f"config model.mu_batchnorm must be >= 0 (0 = off), got {self.model.mu_batchnorm}")
        if not 0 <= self.model.word_dropout < 1:
            raise MolgenError(f"config model.word_dropout must be in [0, 1), got {self.model.word_dropout}")
        if self.model.max_len is not None and self.model.max_len < 2:
            raise MolgenError(f"config model.max_len must be >= 2, got {self.model.max_len}")
        if self.trainer.max_time is not None and not re.fullmatch(r"\d+:\d\d:\d\d:\d\d", self.trainer.max_time):
            raise MolgenError(f"config trainer.max_time must look like DD:HH:MM:SS, got {self.trainer.max_time!r}")
        if self.trainer.max_steps <= 0 and self.trainer.max_steps != -1:
            raise MolgenError("config trainer.max_steps must be > 0 (or -1 for no step limit)")
        if self.trainer.max_steps == -1 and self.trainer.max_time is None and self.trainer.max_epochs is None:
            raise MolgenError("config sets no limit: give trainer.max_steps, trainer.max_time or trainer.max_epochs")
        if isinstance(self.trainer.devices, int) and self.trainer.devices < 1 and self.trainer.devices != -1:
            raise MolgenError(f"config trainer.devices must be >= 1, -1 or 'auto', got {self.trainer.devices}")
        if self.trainer.threads is not None and self.trainer.threads < 1:
            raise MolgenError(f"config trainer.threads must be >= 1, got {self.trainer.threads}")
        return self


#: What ``molgen train --init-from`` changes in the defaults (``configs/finetune.yaml`` is the result):
#: a small set wants a lower constant learning rate, small random batches, a held-out slice with
#: early stopping, beta at 1 from the first step (the base model is past its warm-up) and no
#: component restarts (a focused set uses few of the components; the EM refit at the end places
#: all of them on its encodings).
FINETUNE_OVERRIDES: dict[str, Any] = {
    "optim.lr": 3e-4,
    "data.batch_size": 64,
    "data.bucket_batches": 1,
    "data.val_fraction": 0.1,
    "trainer.max_steps": 300,
    "trainer.val_every_steps": 25,
    "trainer.early_stopping_patience": 4,
    "trainer.log_every_n_steps": 10,
    "trainer.fcd_samples": 0,
    "objective.beta_warmup_molecules": 0,
    "objective.restart_dead_components": False,
}


def finetune_config() -> "TrainConfig":
    """The built-in defaults with ``FINETUNE_OVERRIDES``: the base config of ``molgen train --init-from``."""
    return apply_overrides(TrainConfig(), FINETUNE_OVERRIDES)


#: PyYAML reads YAML 1.1, where ``1e-4`` (no dot) is a string, not a float.
_YAML11_EXPONENT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Return ``value`` checked against type ``tp`` (ints accepted for floats), else raise MolgenError."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, key)
            except MolgenError:
                continue
    elif origin is Literal:
        if value in typing.get_args(tp):
            return value
    elif dataclasses.is_dataclass(tp):
        if isinstance(value, dict):
            return from_dict(tp, value, key)
    elif tp is type(None):
        if value is None:
            return None
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and _YAML11_EXPONENT.fullmatch(value.strip()):
            value = float(value)
        if isinstance(value, float) and value.is_integer():  # 3e6 molecules
            return int(value)
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _YAML11_EXPONENT.fullmatch(value.strip()):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    raise MolgenError(f"config {key}: expected {_type_name(tp)}, got {value!r}")


def from_dict(cls: type, data: dict, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a nested dict, rejecting unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise MolgenError(f"config {prefix or 'file'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            raise MolgenError(f"config: unknown key {dotted!r} (known: {', '.join(names)})")
        kwargs[key] = _coerce(value, hints[key], dotted)
    return cls(**kwargs)


def load_config(path: str | os.PathLike) -> TrainConfig:
    """Read a YAML config file (missing sections take their defaults)."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except FileNotFoundError:
        raise MolgenError(f"{path}: no such config file") from None
    except OSError as err:
        raise MolgenError(f"{path}: cannot read config file: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise MolgenError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        raise MolgenError(f"{path}{where}: not valid YAML: {getattr(err, 'problem', None) or err}") from None
    try:
        return from_dict(TrainConfig, data or {}).validate()
    except MolgenError as err:
        raise MolgenError(f"{path}: {err}") from None


def config_from_dict(data: dict, source: str | os.PathLike = "config") -> TrainConfig:
    """A validated TrainConfig from a plain nested dict (e.g. the one saved in a training state)."""
    try:
        return from_dict(TrainConfig, data).validate()
    except MolgenError as err:
        raise MolgenError(f"{source}: {err}") from None


def apply_overrides(config: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """Return a copy with dotted keys set (``{"model.latent_dim": 32}``), validated."""
    data = config.to_dict()
    for dotted, value in overrides.items():
        node = data
        parts = dotted.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise MolgenError(f"config: unknown key {dotted!r}")
            node = node[part]
        if parts[-1] not in node:
            raise MolgenError(f"config: unknown key {dotted!r}")
        node[parts[-1]] = value
    return from_dict(TrainConfig, data).validate()


def parse_override(text: str) -> tuple[str, Any]:
    """``"model.latent_dim=32"`` -> ("model.latent_dim", 32); the value is read as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise MolgenError(f"--set expects KEY=VALUE (e.g. model.latent_dim=32), got {text!r}")
    try:
        return key.strip(), yaml.safe_load(raw)
    except yaml.YAMLError:
        raise MolgenError(f"--set {key}: cannot read value {raw!r}") from None


def save_config(config: TrainConfig, path: str | os.PathLike) -> None:
    """Write the config as YAML (atomically)."""
    with atomic_open(Path(path), "w", encoding="utf-8") as handle:
        yaml.safe_dump(config.to_dict(), handle, sort_keys=False)
