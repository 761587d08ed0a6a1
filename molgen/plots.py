"""PNG figures for people: property distributions of a generated set against a reference, and a
grid of sample molecules (matplotlib's Agg backend; RDKit's grid drawing)."""
from __future__ import annotations

import os
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from rdkit import Chem  # noqa: E402
from rdkit.Chem import Draw  # noqa: E402

from molgen.files import atomic_path  # noqa: E402

PROPERTY_LABELS = {
    "logP": "Crippen logP",
    "SA": "synthetic accessibility (1 easy - 10 hard)",
    "QED": "QED",
    "weight": "molecular weight (Da)",
    "rings": "rings per molecule",
    "aromatic_rings": "aromatic rings per molecule",
    "aromatic_atom_fraction": "aromatic fraction of heavy atoms",
}


def save_figure(fig: plt.Figure, path: str | os.PathLike, dpi: int = 120) -> None:
    """Lay out ``fig``, write it to ``path`` as PNG (atomically, creating the folder) and close it."""
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)


def plot_property_distributions(
    generated: Mapping[str, np.ndarray],
    reference: Mapping[str, np.ndarray],
    path: str | os.PathLike,
    names: Sequence[str] = ("logP", "SA", "QED", "weight"),
    labels: tuple[str, str] = ("generated", "test"),
) -> None:
    """Overlaid density histograms of each property in ``names``, generated vs reference, as a PNG."""
    cols = 2
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 3.8 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        gen, ref = np.asarray(generated[name]), np.asarray(reference[name])
        both = np.concatenate([gen, ref])
        integer = np.all(both == np.round(both))
        if integer:
            bins = np.arange(both.min() - 0.5, both.max() + 1.5)
        else:
            low, high = np.percentile(both, [0.5, 99.5]) if len(both) else (0.0, 1.0)
            bins = np.linspace(low, high if high > low else low + 1, 60)
        ax.hist(ref, bins=bins, density=True, histtype="stepfilled", alpha=0.35, color="tab:gray", label=labels[1])
        ax.hist(gen, bins=bins, density=True, histtype="step", linewidth=1.8, color="tab:blue", label=labels[0])
        ax.set_xlabel(PROPERTY_LABELS.get(name, name))
        ax.set_ylabel("density")
        ax.set_title(f"{name}: mean {np.mean(gen):.3g} vs {np.mean(ref):.3g}" if len(gen) else name)
        ax.legend(frameon=False)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    save_figure(fig, path, dpi=110)


def plot_molecule_grid(
    smiles: Sequence[str], path: str | os.PathLike, n: int = 24, per_row: int = 6, size: int = 250
) -> None:
    """A PNG grid of the first ``n`` parseable molecules of ``smiles``, each labelled with its SMILES."""
    mols, legends = [], []
    for s in smiles:
        mol = Chem.MolFromSmiles(s)
        if mol is not None:
            mols.append(mol)
            legends.append(s if len(s) <= 40 else s[:37] + "...")
        if len(mols) == n:
            break
    image = Draw.MolsToGridImage(mols, molsPerRow=per_row, subImgSize=(size, size), legends=legends)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def plot_iwae_curve(curve: Mapping[str, Mapping[str, float]], path: str | os.PathLike) -> None:
    """-IWAE-K (nats/molecule, mean ± s.e.) against K on a log axis, from ``likelihood_report``."""
    ks = sorted(int(k) for k in curve)
    mean = np.array([curve[str(k)]["nats_per_molecule"] for k in ks])
    se = np.array([curve[str(k)]["se"] for k in ks])
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.errorbar(ks, mean, yerr=se, marker="o", capsize=3)
    ax.set_xscale("log")
    ax.set_xlabel("importance samples K")
    ax.set_ylabel("-IWAE bound (nats / molecule)")
    ax.set_title("IWAE bound on -log p(x): tighter with K")
    save_figure(fig, path, dpi=120)


def plot_mixture_usage(usage: Sequence[float], weights: Sequence[float], path: str | os.PathLike) -> None:
    """Bar chart of the aggregate posterior's component usage against the prior's mixing weights."""
    k = np.arange(len(usage))
    fig, ax = plt.subplots(figsize=(max(4, 0.45 * len(usage) + 2), 3.5))
    ax.bar(k - 0.2, usage, width=0.4, label="usage ū_k (posterior)")
    ax.bar(k + 0.2, weights, width=0.4, label="prior weight π_k")
    ax.axhline(0.1 / len(usage), color="grey", linestyle="--", linewidth=1, label="dead below 0.1/K")
    ax.set_xlabel("mixture component k")
    ax.set_xticks(k)
    ax.legend(fontsize=8)
    save_figure(fig, path, dpi=120)


def evaluation_plots(report: Mapping, folder: str | os.PathLike) -> list[str]:
    """Write the IWAE-vs-K curve and (for a VAE) the mixture-usage chart of an evaluate report."""
    paths = [os.path.join(folder, "iwae_curve.png")]
    plot_iwae_curve(report["likelihood"]["iwae_curve"], paths[0])
    diag = report.get("diagnostics")
    if diag:
        paths.append(os.path.join(folder, "mixture_usage.png"))
        plot_mixture_usage(diag["mixture_usage"], diag["mixture_weights"], paths[1])
    return paths
