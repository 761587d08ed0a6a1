"""LightningDataModule over cached token tensors, with length-bucketed batches sharded per rank.

The loaders yield only molecule indices (``IndexBatch``); ``on_after_batch_transfer`` gathers the
padded tokens from a ``TokenTable`` held on the training device, so a GPU step needs no host padding.
"""
from __future__ import annotations

from typing import Any, Iterator, NamedTuple

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from molgen.config import DataConfig
from molgen.errors import MolgenError
from molgen.padding import TokenTable, pad_molecules
from molgen.token_cache import TokenizedSet, load_tokenized, subset
from molgen.tokenizer import SelfiesTokenizer


class IndexBatch(NamedTuple):
    """A batch before the gather: which molecules of which set (the index is moved to the device by
    Lightning), and the batch's longest length."""

    index: torch.Tensor
    width: int
    split: str  # "train" or "val"


class _Indices(Dataset):
    """range(n) as a Dataset: the batch sampler chooses the molecules, the collate only records them."""

    def __init__(self, lengths: np.ndarray, split: str) -> None:
        self.lengths, self.split = lengths, split

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i: int) -> int:
        return i

    def collate(self, index: list[int]) -> IndexBatch:
        return IndexBatch(torch.tensor(index, dtype=torch.long), int(self.lengths[index].max()), self.split)


class EpochShuffle(Sampler[int]):
    """A permutation of range(n) seeded by (seed, epoch); Lightning calls ``set_epoch`` every epoch."""

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True) -> None:
        self.n, self.seed, self.shuffle, self.epoch = n, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the permutation for ``epoch``."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.n))
        return iter(np.random.default_rng([self.seed, self.epoch]).permutation(self.n).tolist())

    def __len__(self) -> int:
        return self.n


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of similar length: take ``bucket_batches`` batches' worth of the (shuffled) order, sort
    them by length, cut into batches, shuffle the batch order; then keep every ``num_replicas``-th
    batch for this ``rank`` (training: the same number of batches on every rank)."""

    def __init__(
        self,
        lengths: np.ndarray,
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        bucket_batches: int = 50,
        num_replicas: int = 1,
        rank: int = 0,
        even: bool = True,
    ) -> None:
        self.lengths = np.asarray(lengths)
        self.batch_size, self.bucket_batches = batch_size, bucket_batches
        self.num_replicas, self.rank, self.even, self.shuffle = num_replicas, rank, even, shuffle
        self.sampler = EpochShuffle(len(self.lengths), seed, shuffle)
        self.skip: tuple[int, int] | None = None  # (epoch, batches): resume in the middle of that epoch

    def _all_batches(self) -> list[np.ndarray]:
        order = np.fromiter(iter(self.sampler), dtype=np.int64, count=len(self.lengths))
        if not self.shuffle:
            order = np.argsort(self.lengths, kind="stable")
            return [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        span = self.batch_size * self.bucket_batches
        batches = []
        for start in range(0, len(order), span):
            chunk = order[start : start + span]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches.extend(chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size))
        rng = np.random.default_rng([self.sampler.seed, self.sampler.epoch, 1])
        return [batches[i] for i in rng.permutation(len(batches))]

    def _shard(self, batches: list[np.ndarray]) -> list[np.ndarray]:
        if self.even:
            batches = batches[: len(batches) - len(batches) % self.num_replicas] or batches[:1] * self.num_replicas
        return batches[self.rank :: self.num_replicas]

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._shard(self._all_batches())
        if self.skip is not None and self.skip[0] == self.sampler.epoch:
            batches = batches[self.skip[1] :]
        self.skip = None
        return (b.tolist() for b in batches)

    def __len__(self) -> int:
        n_batches = -(-len(self.lengths) // self.batch_size)
        if self.even:
            return max(1, n_batches // self.num_replicas)
        return len(range(self.rank, n_batches, self.num_replicas))


class MoleculeDataModule(pl.LightningDataModule):
    """Training and validation molecules as cached id arrays; batches are (tokens[B, L], lengths[B])."""

    def __init__(
        self,
        train: TokenizedSet,
        val: TokenizedSet,
        batch_size: int = 256,
        seed: int = 0,
        bucket_batches: int = 50,
        diag_molecules: int = 2000,
        num_workers: int = 0,
        pad_id: int = 0,
    ) -> None:
        super().__init__()
        self.train_set, self.val_set = train, val
        self.batch_size, self.seed, self.bucket_batches = batch_size, seed, bucket_batches
        self.diag_molecules, self.num_workers, self.pad_id = diag_molecules, num_workers, pad_id
        self._resume_at: tuple[int, int] | None = None
        self._tables: dict[str, TokenTable] = {}

    @classmethod
    def from_config(
        cls, cfg: DataConfig, seed: int = 0, tokenizer: SelfiesTokenizer | None = None, max_len: int | None = None
    ) -> tuple["MoleculeDataModule", SelfiesTokenizer]:
        """Load (or reuse the cache of) the training file and the validation file or held-out split."""
        if cfg.train is None:
            raise MolgenError("no training data: give --data FILE (data.train)")
        load = dict(smiles_column=cfg.smiles_column, on_invalid=cfg.on_invalid, cache_dir=cfg.cache_dir, max_tokens=max_len)
        tok, train = load_tokenized(cfg.train, tokenizer, cfg.constraints, **load)
        if cfg.val is not None:
            _, val = load_tokenized(cfg.val, tok, **load)
        else:
            n_val = max(1, round(cfg.val_fraction * len(train))) if cfg.val_fraction > 0 else cfg.val_size
            if cfg.val_fraction > 0 and len(train) < 2:
                raise MolgenError(f"{cfg.train}: {len(train)} molecule is too few to hold out a validation slice")
            if cfg.val_fraction == 0 and (len(train) < 2 * cfg.val_size or cfg.val_size == 0):
                raise MolgenError(
                    f"{cfg.train}: {len(train)} molecules is too few to hold out data.val_size={cfg.val_size} "
                    "for validation; give --val FILE, a smaller data.val_size or data.val_fraction (e.g. 0.1)"
                )
            perm = np.random.default_rng(seed).permutation(len(train))
            val, train = subset(train, np.sort(perm[:n_val])), subset(train, np.sort(perm[n_val:]))
        dm = cls(train, val, cfg.batch_size, seed, cfg.bucket_batches, cfg.diag_molecules, cfg.num_workers, tok.pad_id)
        return dm, tok

    def _world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    def _loader(self, split: str) -> DataLoader:
        world, rank = self._world()
        shuffle = split == "train"
        lengths = self._set(split).lengths
        sampler = BucketBatchSampler(
            lengths, self.batch_size, self.seed, shuffle, self.bucket_batches, world, rank, even=shuffle
        )
        indices = _Indices(lengths, split)
        return DataLoader(
            indices,
            batch_sampler=sampler,
            collate_fn=indices.collate,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def _set(self, split: str) -> TokenizedSet:
        return self.train_set if split == "train" else self.val_set

    def _table(self, split: str) -> TokenTable:
        if split not in self._tables:
            self._tables[split] = TokenTable(self._set(split), self.pad_id)
        return self._tables[split]

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """An IndexBatch on the device becomes (tokens LongTensor[B, width], lengths LongTensor[B])."""
        if not isinstance(batch, IndexBatch):
            return batch
        return self._table(batch.split).batch(batch.index, batch.width)

    def train_dataloader(self) -> DataLoader:
        """Shuffled, length-bucketed training batches (this rank's shard)."""
        loader = self._loader("train")
        loader.batch_sampler.skip, self._resume_at = self._resume_at, None
        return loader

    def state_dict(self) -> dict:
        """Epoch and batches done in it, saved in checkpoints so a resume continues the same epoch order."""
        trainer = self.trainer
        if trainer is None:
            return {}
        done = trainer.fit_loop.epoch_loop.batch_progress.current.completed
        return {"epoch": trainer.current_epoch, "batches_done": done, "batch_size": self.batch_size}

    def load_state_dict(self, state: dict) -> None:
        """Skip the batches of the checkpoint's epoch that were already trained on (counted in
        molecules when the run resumes with another batch size)."""
        done = int(state.get("batches_done") or 0)
        saved_batch = int(state.get("batch_size") or self.batch_size)
        if saved_batch != self.batch_size:
            done = done * saved_batch // self.batch_size
        if done:
            self._resume_at = (int(state["epoch"]), done)

    def val_dataloader(self) -> DataLoader:
        """Validation batches sorted by length (this rank's shard)."""
        return self._loader("val")

    def diagnostic_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``diag_molecules`` validation molecules sorted by length (the same on every rank)."""
        n = min(self.diag_molecules, len(self.val_set))
        order = np.argsort(self.val_set.lengths[:n], kind="stable")
        return pad_molecules(self.val_set, order, self.pad_id)
