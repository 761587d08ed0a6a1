"""Latent-space optimisation: CMA-ES over z, each candidate scored on the molecule it decodes to.

What is searched: the model's latent space (D = 64 for the shipped model) with CMA-ES (the ``cma``
package, Hansen's reference implementation). A candidate z is decoded with every token drawn from
the decoder as always in molgen (``Generator.decode(mode="sample")``), and the decoded molecule is
scored by the objective (``molgen.objectives``): that is one **property evaluation**. The budget
counts them, including the prior draws that pick the starting points and every repeat of a molecule
already seen; the random baseline gets the same number. The molecules and values reported are
exactly those decoded and scored.

The search: ``n_init`` prior draws are decoded and scored; then ``starts`` CMA-ES runs, one after the
other with equal shares of the rest of the budget, each start at one of the best of those draws
(distinct molecules). Several short runs rather than one long one because the decoder draws most
of a molecule's information from its own tokens, not from z (I(x;z) is 5.3 nats for the shipped
model, ``checkpoints/README.md``): one run concentrates on one region, where the mean value rises
but the best few molecules do not, while the best molecules of random sampling come from many
regions (measured in ``benchmarks/RESULTS.md``). Each run is centred on the **posterior mean** of its
best molecule, E[z|x], not on the z that happened to decode to it: most of a decoded molecule comes
from its token draws, so the prior draw behind a good molecule says little about it, while E[z|x] is
the latent that explains that molecule; whenever the run decodes a better molecule, CMA-ES starts
again at that one's posterior mean (and when CMA-ES stops, at the current best's).

What CMA-ES minimises for a candidate is ``-(value - prior_weight * scale * excess(z))``: ``excess``
is how far log p(z) lies below the ``prior_quantile`` quantile of log p over draws from the prior,
in standard deviations of that log p (0 inside), and ``scale`` the objective's typical spread. It
keeps the search where the prior, and so the decoder's training, puts mass: far outside it the
decoder was never trained and its molecules drift off the data. An invalid decode (possible with
relaxed constraints) scores the objective's ``worst``. CMA-ES ranks candidates, so only the order
of these numbers matters.

The baseline ``random_baseline`` draws z from the prior and decodes, with the same budget of
evaluations. Both are deterministic for a seed: every random stream of a run (random's z and
tokens, the start draws, each CMA-ES instance and its tokens, the penalty's reference draws) has
its own seed derived from ``seed`` with numpy's ``SeedSequence``, so the streams are independent
(note that ``cma`` seeds numpy's global generator).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from molgen.errors import MolgenError
from molgen.objectives import Objective
from molgen.progress import bar, say
from molgen.sample import Generator

SIGMA0 = 0.3  # CMA-ES initial step size, in latent units (the prior's component scales average 0.6)
N_INIT = 50  # prior draws decoded to pick the starts
STARTS = 5  # CMA-ES runs, one after the other, from the best start draws of distinct molecules
RUN_MIN = 90  # evaluations per run at least (about 5 generations): a smaller budget gets fewer runs
PRIOR_WEIGHT = 1.0
PRIOR_QUANTILE = 0.05
PRIOR_DRAWS = 4096  # draws that set the prior penalty's threshold and spread
METHODS = ("cma-es", "random")
CENTRES = ("posterior", "draw")  # where a CMA-ES run is centred: a molecule's posterior mean, or its prior draw
# the random streams of a run, each seeded by _seed(seed, stream, ...)
RANDOM_Z, RANDOM_TOKENS, START_Z, CMA_TOKENS, CMA_SEARCH, PENALTY_Z = range(6)


def _seed(seed: int, *stream: int) -> int:
    """A 63-bit seed for one random stream of the run seeded ``seed`` (independent of the others)."""
    return int(np.random.SeedSequence([seed, *stream]).generate_state(1, np.uint64)[0] >> np.uint64(1))


@dataclass
class Trace:
    """Every property evaluation of one method, in order: the decoded SMILES (None if invalid) and value (NaN)."""

    method: str
    smiles: list[str | None] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    def add(self, smiles: list[str | None], values: np.ndarray) -> None:
        """Append a batch of evaluations."""
        self.smiles.extend(smiles)
        self.values.extend(float(v) for v in values)

    @property
    def evaluations(self) -> int:
        """Number of property evaluations."""
        return len(self.values)

    def best_so_far(self) -> np.ndarray:
        """Best value after each evaluation (NaN until the first valid molecule)."""
        values = np.asarray(self.values, dtype=float)
        running = np.maximum.accumulate(np.where(np.isnan(values), -np.inf, values))
        return np.where(np.isinf(running), np.nan, running)

    def top(self, k: int | None = None) -> list[dict]:
        """The ``k`` best distinct molecules (canonical SMILES), best first, each with the evaluation
        (1-based) where it was first found; all distinct molecules when ``k`` is None."""
        first: dict[str, tuple[float, int]] = {}
        for i, (s, v) in enumerate(zip(self.smiles, self.values), start=1):
            if s and not np.isnan(v) and s not in first:
                first[s] = (v, i)
        ranked = sorted(first.items(), key=lambda item: (-item[1][0], item[1][1]))[:k]
        return [{"SMILES": s, "value": v, "evaluation": i, "method": self.method} for s, (v, i) in ranked]

    def best_mean(self, k: int = 3) -> float:
        """Mean value of the ``k`` best distinct molecules (NaN if fewer were found)."""
        best = self.top(k)
        return float(np.mean([row["value"] for row in best])) if len(best) == k else float("nan")

    def summary(self) -> dict:
        """Best value, best-3 mean, mean value of the valid evaluations, evaluations, valid and distinct molecules."""
        values = np.asarray(self.values, dtype=float)
        valid = ~np.isnan(values)
        return {
            "best": float(values[valid].max()) if valid.any() else None,
            "best3_mean": None if np.isnan(self.best_mean(3)) else self.best_mean(3),
            "mean": float(values[valid].mean()) if valid.any() else None,
            "evaluations": self.evaluations,
            "valid": int(valid.sum()),
            "unique": len({s for s in self.smiles if s}),
        }


@dataclass
class OptimizationResult:
    """What ``optimize`` found: the optimiser's trace, the random baseline's (or None), timings and settings."""

    objective: Objective
    budget: int
    seed: int
    optimizer: Trace
    random: Trace | None
    seconds: dict
    settings: dict

    def rows(self, k: int | None = 100) -> list[dict]:
        """The ``k`` best distinct molecules of each method, best value first, with the objective's name."""
        rows = self.optimizer.top(k) + (self.random.top(k) if self.random is not None else [])
        label = f"predicted:{self.objective.name}" if self.objective.predicted else self.objective.name
        return [{**row, "objective": label} for row in sorted(rows, key=lambda r: -r["value"])]

    def summary(self) -> dict:
        """The JSON summary: per method best value, best-3 mean, evaluations and seconds."""
        out = {"objective": self.objective.name, "predicted": self.objective.predicted, "budget": self.budget,
               "seed": self.seed, "optimizer": {**self.optimizer.summary(), "seconds": self.seconds["optimizer"]}}  # fmt: skip
        if self.random is not None:
            out["random"] = {**self.random.summary(), "seconds": self.seconds["random"]}
            a, b = out["optimizer"]["best3_mean"], out["random"]["best3_mean"]
            out["optimizer_beats_random"] = bool(a > b) if a is not None and b is not None else None
        if self.objective.report:
            out["regressor"] = self.objective.report
        return out


class PriorPenalty:
    """How far log p(z) lies below the ``quantile`` of log p over prior draws, in its standard deviations."""

    def __init__(self, generator: Generator, quantile: float = PRIOR_QUANTILE, seed: int = 0) -> None:
        prior = generator.model.prior
        with torch.no_grad():
            z, _ = prior.sample(PRIOR_DRAWS, generator=torch.Generator().manual_seed(_seed(seed, PENALTY_Z)))
            log_p = prior.log_prob(z).double().cpu().numpy()
        self.prior = prior
        self.threshold = float(np.quantile(log_p, quantile))
        self.spread = float(log_p.std())

    def __call__(self, z: np.ndarray) -> np.ndarray:
        """Excess [N] (>= 0) for latents z [N, D]."""
        with torch.no_grad():
            log_p = self.prior.log_prob(torch.as_tensor(z, dtype=torch.float32, device=self.prior.means.device))
        return np.maximum(0.0, (self.threshold - log_p.double().cpu().numpy()) / self.spread)


def _check_latent(generator: Generator) -> None:
    if not generator.is_vae:
        raise MolgenError("this model is a language model (kind='lm'): it has no latent space to optimise in")


def check_seed(seed: int, flag: str = "seed") -> int:
    """``seed`` if it is a whole number >= 0, else a MolgenError naming ``flag``."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise MolgenError(f"{flag} must be a whole number >= 0, not {seed!r}")
    return int(seed)


def check_budget(budget: int, flag: str = "budget") -> int:
    """``budget`` if it is a usable number of property evaluations, else a MolgenError naming ``flag``."""
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 10:
        raise MolgenError(f"{flag} must be a whole number of property evaluations, at least 10, not {budget!r}")
    return int(budget)


def _evaluate(
    generator: Generator, objective: Objective, z: np.ndarray | torch.Tensor, seed: int, temperature: float = 1.0
) -> tuple[list, np.ndarray]:
    """Decode z [N, D] (tokens drawn with ``seed``) and score each molecule: (SMILES or None, values)."""
    z = torch.as_tensor(z, dtype=torch.float32)
    smiles = generator.decode(z, mode="sample", temperature=temperature, seed=seed)
    values = np.asarray(objective.score(smiles), dtype=float)
    if values.shape != (len(smiles),):
        raise MolgenError(f"objective {objective.name!r} gave {values.shape} values for {len(smiles)} molecules")
    return smiles, values


def random_baseline(
    generator: Generator,
    objective: Objective,
    budget: int,
    seed: int = 0,
    batch_size: int = 256,
    progress: bool = True,
    temperature: float = 1.0,
) -> Trace:
    """Random search with the same budget: ``budget`` z drawn from the prior, each decoded once and scored."""
    budget, seed = check_budget(budget), check_seed(seed)
    _check_latent(generator)
    trace = Trace("random")
    rng = torch.Generator().manual_seed(_seed(seed, RANDOM_Z))
    with bar(budget, f"random {objective.name}", unit="eval", enabled=progress, quiet_below=1) as update:
        for start in range(0, budget, batch_size):
            z, _ = generator.model.prior.sample(min(batch_size, budget - start), generator=rng)
            trace.add(*_evaluate(generator, objective, z.cpu(), _seed(seed, RANDOM_TOKENS, start), temperature))
            update(len(z))
    return trace


def optimize(
    generator: Generator,
    objective: Objective,
    budget: int,
    seed: int = 0,
    popsize: int | None = None,
    sigma0: float = SIGMA0,
    n_init: int | None = None,
    prior_weight: float = PRIOR_WEIGHT,
    prior_quantile: float = PRIOR_QUANTILE,
    starts: int | None = None,
    decodes: int = 1,
    temperature: float = 1.0,
    centre_at: str = "posterior",
    baseline: bool = True,
    progress: bool = True,
) -> OptimizationResult:
    """CMA-ES in latent space for ``budget`` property evaluations (module docstring), and the random
    baseline with the same budget unless ``baseline=False``.

    ``n_init`` prior draws (part of the budget; None: ``N_INIT``, at most a fifth of the budget) are
    decoded first; the rest of the budget is split between ``starts`` CMA-ES runs, one after the
    other, each started at one of the best start draws (distinct molecules; None: ``STARTS``, fewer
    when a run would get under ``RUN_MIN`` evaluations). ``popsize`` is CMA-ES's (None: its default,
    4 + 3 ln D, 16 for D = 64); each candidate z is decoded ``decodes`` times (each one evaluation)
    and CMA-ES ranks it by the mean; ``temperature`` is the decoder's, for both methods.
    ``centre_at="posterior"`` centres each run on the posterior mean of its best molecule so far and
    starts it again there whenever it finds a better one; ``"draw"`` on the prior draw it came from.
    """
    budget, seed = check_budget(budget), check_seed(seed)
    _check_latent(generator)
    n_init = min(N_INIT, budget // 5) if n_init is None else n_init
    starts = max(1, min(STARTS, (budget - n_init) // RUN_MIN)) if starts is None else starts
    if not 0 < n_init < budget:
        raise MolgenError(f"n_init must be between 1 and budget - 1 ({budget - 1}), not {n_init}")
    if not sigma0 > 0:
        raise MolgenError(f"sigma0 must be positive, not {sigma0}")
    if not 1 <= starts <= n_init:
        raise MolgenError(f"starts must be between 1 and n_init ({n_init}), not {starts}")
    if decodes < 1:
        raise MolgenError(f"decodes per z must be at least 1, not {decodes}")
    if centre_at not in CENTRES:
        raise MolgenError(f"centre_at must be one of {', '.join(CENTRES)}, not {centre_at!r}")
    if popsize is not None and popsize < 2:
        raise MolgenError(f"popsize must be at least 2, not {popsize}")
    if prior_weight < 0 or not 0 < prior_quantile < 1:
        raise MolgenError(f"prior_weight must be >= 0 and prior_quantile in (0, 1), not {prior_weight}, {prior_quantile}")
    import cma

    start = time.perf_counter()
    penalty = PriorPenalty(generator, prior_quantile, seed)
    trace = Trace("cma-es")
    runs, generation = 0, 0  # CMA-ES instances started, generations decoded

    def fitness_of(z: np.ndarray, values: np.ndarray) -> np.ndarray:
        value = np.where(np.isnan(values), objective.worst, values)
        return -(value - prior_weight * objective.scale * penalty(z))

    with bar(budget, f"optimize {objective.name}", unit="eval", enabled=progress, quiet_below=1) as update:
        z0, _ = generator.model.prior.sample(n_init, generator=torch.Generator().manual_seed(_seed(seed, START_Z)))
        z0 = z0.double().cpu().numpy()
        smiles, values = _evaluate(generator, objective, z0, _seed(seed, START_Z, 1), temperature)
        trace.add(smiles, values)
        update(n_init)
        fitness = fitness_of(z0, values)
        options = {"verbose": -9, "verb_log": 0, "verb_disp": 0, **({"popsize": popsize} if popsize else {})}

        def new_search(x0: np.ndarray) -> "cma.CMAEvolutionStrategy":
            nonlocal runs
            runs += 1  # each instance its own seed (cma reads 0 as "from the clock")
            return cma.CMAEvolutionStrategy(x0.tolist(), sigma0, {**options, "seed": 1 + _seed(seed, CMA_SEARCH, runs) % (2**32 - 2)})

        def centre(z: np.ndarray, molecule: str | None) -> np.ndarray:
            """Where a search around a molecule starts: its posterior mean, or the z it was decoded from."""
            if centre_at == "posterior" and molecule:
                return generator.encode([molecule])[0][0].double().numpy()
            return z

        firsts = _distinct_best(smiles, fitness, starts)
        for k, i in enumerate(firsts):
            end = n_init + (k + 1) * (budget - n_init) // len(firsts)
            best_z, best_fitness, best_smiles = z0[i], fitness[i], smiles[i]
            es = new_search(centre(best_z, best_smiles))
            while trace.evaluations < end:
                if es.stop():  # converged or stalled: again from the best molecule of this run
                    es = new_search(centre(best_z, best_smiles))
                candidates = np.asarray(es.ask())
                z = np.repeat(candidates, decodes, axis=0)[: end - trace.evaluations]
                generation += 1
                smiles_g, values_g = _evaluate(generator, objective, z, _seed(seed, CMA_TOKENS, generation), temperature)
                trace.add(smiles_g, values_g)
                update(len(z))
                if len(z) < len(candidates) * decodes:
                    break  # the budget ended inside this generation
                per_z = fitness_of(z, values_g).reshape(len(candidates), decodes)
                fitness_g = per_z.mean(1)
                if fitness_g.min() < best_fitness:
                    j = int(np.argmin(fitness_g))
                    best_z, best_fitness = candidates[j], float(fitness_g.min())
                    best_smiles = smiles_g[j * decodes + int(np.argmin(per_z[j]))]  # its best decode
                    if centre_at == "posterior":  # a better molecule: search around it from now on
                        es = new_search(centre(best_z, best_smiles))
                        continue
                es.tell(list(candidates), fitness_g.tolist())
    seconds = {"optimizer": round(time.perf_counter() - start, 2)}
    random = None
    if baseline:
        start = time.perf_counter()
        random = random_baseline(generator, objective, budget, seed, progress=progress, temperature=temperature)
        seconds["random"] = round(time.perf_counter() - start, 2)
    settings = {"popsize": es.popsize, "sigma0": sigma0, "n_init": n_init, "prior_weight": prior_weight,
                "prior_quantile": prior_quantile, "starts": len(firsts), "decodes": decodes, "temperature": temperature, "centre_at": centre_at, "generations": generation, "cma_runs": runs}  # fmt: skip
    if progress:
        say(f"optimize {objective.name}: best {trace.summary()['best']:.4f} after {budget} evaluations"
            + (f" (random sampling: {random.summary()['best']:.4f})" if random is not None else ""))  # fmt: skip
    return OptimizationResult(objective, budget, seed, trace, random, seconds, settings)


def _distinct_best(smiles: list[str | None], fitness: np.ndarray, k: int) -> list[int]:
    """Indices of the ``k`` best (lowest fitness) draws that decoded to distinct molecules."""
    chosen, seen = [], set()
    for i in np.argsort(fitness, kind="stable"):
        if smiles[i] not in seen:
            seen.add(smiles[i])
            chosen.append(int(i))
        if len(chosen) == k:
            break
    return chosen


def plot_progress(result: OptimizationResult, path: str | os.PathLike, window: int = 50) -> None:
    """PNG: best value so far (solid) and best-3 mean of distinct molecules so far (dashed) against
    property evaluations, the optimiser and random sampling on one axis; beside it, the running mean
    of the values over ``window`` evaluations (where each method is searching)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from molgen.files import atomic_path

    name = ("predicted " if result.objective.predicted else "") + result.objective.name
    fig, (ax, ax_mean) = plt.subplots(1, 2, figsize=(11, 4))
    for trace, colour in ((result.optimizer, "tab:blue"), (result.random, "tab:gray")):
        if trace is None:
            continue
        x = np.arange(1, trace.evaluations + 1)
        label = "CMA-ES" if trace.method == "cma-es" else "random from the prior"
        best = trace.best_so_far()
        ax.plot(x, best, color=colour, linewidth=1.8,
                label=f"{label}: best {np.nanmax(best):.3f}, best-3 mean {trace.best_mean(3):.3f}")  # fmt: skip
        ax.plot(x, _best3_so_far(trace), color=colour, linewidth=1.2, linestyle="--")
        values = np.asarray(trace.values, dtype=float)
        valid = np.where(np.isnan(values), 0.0, values).cumsum()
        count = (~np.isnan(values)).cumsum()
        w = min(window, len(values))
        running = (valid[w - 1 :] - np.concatenate([[0.0], valid[:-w]])) / np.maximum(
            count[w - 1 :] - np.concatenate([[0], count[:-w]]), 1
        )
        ax_mean.plot(x[w - 1 :], running, color=colour, linewidth=1.5, label=label)
    early = [_best3_so_far(t)[max(0, t.evaluations // 10 - 1)] for t in (result.optimizer, result.random) if t is not None]
    top = np.nanmax([np.nanmax(t.best_so_far()) for t in (result.optimizer, result.random) if t is not None])
    if np.isfinite(np.nanmin(early)) and top > np.nanmin(early):  # zoom on what follows the first 10% of the budget
        ax.set_ylim(np.nanmin(early), top + 0.05 * (top - np.nanmin(early)))
    ax.set_xlabel("property evaluations (decoded molecules scored)")
    ax.set_ylabel(f"best {name} so far (dashed: best-3 mean)")
    ax.legend(frameon=False, loc="lower right", fontsize=8)
    ax_mean.set_xlabel("property evaluations")
    ax_mean.set_ylabel(f"mean {name} of the last {window} evaluations")
    ax_mean.legend(frameon=False, loc="lower right", fontsize=8)
    for a in (ax, ax_mean):
        a.grid(alpha=0.3)
    fig.suptitle(f"{name}: latent-space CMA-ES vs random sampling, {result.budget} evaluations each, seed {result.seed}")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def _best3_so_far(trace: Trace) -> np.ndarray:
    """Mean of the 3 best distinct molecules after each evaluation (NaN until there are 3)."""
    seen: set[str] = set()
    top: list[float] = []
    out = np.full(trace.evaluations, np.nan)
    for i, (s, v) in enumerate(zip(trace.smiles, trace.values)):
        if s and not np.isnan(v) and s not in seen:
            seen.add(s)
            top = sorted(top + [v], reverse=True)[:3]
        if len(top) == 3:
            out[i] = np.mean(top)
    return out
