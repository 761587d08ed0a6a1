"""`molgen evaluate`: held-out likelihood (ELBO, IWAE) and collapse diagnostics of a trained model."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from molgen import __version__
from molgen.device import ieee_fp32, resolve_device
from molgen.files import atomic_open, check_output_path
from molgen.likelihood import likelihood_report
from molgen.model.diagnostics import collapse_diagnostics
from molgen.padding import pad_molecules
from molgen.token_cache import load_tokenized


def evaluate(
    model_path: str | os.PathLike,
    data_path: str | os.PathLike,
    n: int = 2000,
    k: int = 1000,
    seed: int = 0,
    out: str | os.PathLike | None = None,
    plots: str | os.PathLike | None = None,
    smiles_column: str | None = None,
    on_invalid: str = "error",
    device: str | torch.device = "cpu",
) -> dict:
    """Likelihood report + collapse diagnostics on a seeded subset of a held-out file (JSON-ready).

    ``device``: where the network runs ("cpu", "cuda", "cuda:N" or "auto"); the random draws are
    made on the CPU, so every device gives the same figures up to float rounding.
    """
    from molgen.checkpoint import load_model

    start = time.perf_counter()
    device = resolve_device(device)
    if out is not None:
        check_output_path(out)  # fail before the work, not after it
    torch.manual_seed(seed)
    model, tokenizer = load_model(model_path)
    model.to(device).eval()
    _, data = load_tokenized(
        data_path, tokenizer, smiles_column=smiles_column, on_invalid=on_invalid, max_tokens=model.max_len
    )
    report = {
        "model": str(model_path),
        "data": str(data_path),
        "kind": model.kind,
        "constraints": tokenizer.constraints,
        "n_parameters": model.n_parameters(),
    }
    with ieee_fp32(device):
        report["likelihood"] = likelihood_report(model, data, n=n, k=k, seed=seed)
        if model.kind == "vae":
            # the same seeded subset as the likelihood (use n >= 1,000 for stable active units and MI)
            rng = np.random.default_rng(seed)
            index = np.sort(rng.choice(len(data), size=min(n, len(data)), replace=False))
            tokens, lengths = pad_molecules(data, index, model.pad_id)
            report["diagnostics"] = collapse_diagnostics(model, (tokens, lengths), seed=seed)
    report["seconds"] = round(time.perf_counter() - start, 1)
    report["molgen_version"] = __version__
    if out is not None:
        with atomic_open(out, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=1)
    if plots is not None:
        from molgen.plots import evaluation_plots

        Path(plots).mkdir(parents=True, exist_ok=True)
        report["plots"] = evaluation_plots(report, plots)
    return report


def format_report(report: dict) -> str:
    """A readable table of the headline figures."""
    lik = report["likelihood"]
    lines = [f"{report['kind']} model, {lik['n_molecules']} molecules, K = {lik['k']} ({report['constraints']} SELFIES)"]
    lines.append(f"{'':<18}{'nats/molecule':>16}{'bits/token':>14}")
    rows = [("-ELBO", lik["elbo_nll"])] + [(f"-IWAE-{x}", v) for x, v in lik["iwae_curve"].items()]
    for name, v in rows:
        lines.append(f"{name:<18}{v['nats_per_molecule']:>10.3f} ±{v['se']:.3f}{v['bits_per_token']:>11.4f}")
    lines.append(f"{'reconstruction':<18}{lik['reconstruction_nll']:>10.3f}")
    lines.append(f"{'KL':<18}{lik['kl']:>10.3f}")
    diag = report.get("diagnostics")
    if diag:
        lines.append(
            f"active units {diag['active_units']}/{diag['latent_dim']}, I(x;z) {diag['mutual_info']:.2f} nats, "
            f"N_eff {diag['n_eff']:.2f}/{diag['n_components']}, dead components {diag['n_dead']}, "
            f"I(x;k) {diag['mi_x_k']:.2f} nats"
        )
    return "\n".join(lines)
