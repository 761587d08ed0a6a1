"""Training curves of a run against molecules seen: validation -ELBO, KL, active units, N_eff, val/fcd.

    python scripts/plot_training.py runs/moses/metrics.csv checkpoints/card/training.png
    python scripts/plot_training.py --state checkpoints/molgen-moses.state.pt --table 1000000   # the curves as numbers

Reads a run's metrics.csv (or the one inside a packed state with --state FILE) and draws one panel
per quantity; the x axis is training molecules (the `train/molecules` column, matched by step).
With --table N it prints instead the mean of each quantity over consecutive windows of N molecules
(and the learning rate at each window's end): whether and how fast the curves still fall.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from molgen.plots import save_figure  # noqa: E402
from molgen.run_metrics import series  # noqa: E402

PANELS = (("val/elbo", "validation −ELBO (nats/molecule)", -1.0), ("val/kl", "validation KL (nats)", 1.0),
          ("diag/active_units", "active units", 1.0), ("diag/n_eff", "N_eff (mixture)", 1.0),
          ("val/fcd", "val/fcd (2,000 samples vs MOSES test)", 1.0), ("val/exact", "exact reconstruction", 1.0))  # fmt: skip


def curves(text: str) -> dict[str, list[tuple[float, float]]]:
    """(molecules seen, value) per panel key from metrics.csv text."""
    data = series(text, [key for key, _, _ in PANELS])
    return {key: [(x, sign * y) for x, y in data[key]] for key, _, sign in PANELS}


def window_means(text: str, window: float) -> list[tuple[float, dict[str, float]]]:
    """(window start, {key: mean}) per ``window`` molecules for every panel's quantity, and the
    learning rate at the window's end (``train/lr``); keys without a value in a window are left out."""
    data = {**curves(text), **series(text, ["train/lr"])}
    end = max((x for points in data.values() for x, _ in points), default=0.0)
    rows = []
    for start in [i * window for i in range(int(end // window) + 1)]:
        row = {}
        for key, points in data.items():
            values = [y for x, y in points if start <= x < start + window]
            if values:
                row[key] = values[-1] if key == "train/lr" else sum(values) / len(values)
        rows.append((start, row))
    return rows


def table(text: str, window: float) -> str:
    """``window_means`` as a text table, molecules in millions."""
    keys = [key for key, _, _ in PANELS] + ["train/lr"]
    lines = ["molecules (M)   " + "  ".join(f"{key:>17}" for key in keys)]
    for start, row in window_means(text, window):
        cells = [f"{row[key]:>17.4g}" if key in row else " " * 17 for key in keys]
        lines.append(f"{start / 1e6:7.2f}-{(start + window) / 1e6:<7.2f} " + "  ".join(cells))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("metrics", type=Path, nargs="?", help="a run's metrics.csv")
    parser.add_argument("out", type=Path, nargs="?", help="figure to write (not with --table)")
    parser.add_argument("--state", type=Path, help="read the metrics from a packed training state instead")
    parser.add_argument("--table", type=float, metavar="N", help="print window means per N molecules instead of drawing")
    args = parser.parse_args()
    if args.state is not None and args.out is None:  # with --state the one positional is the figure
        args.out, args.metrics = args.metrics, None
    if args.out is None and args.table is None:
        parser.error("give the figure to write, or --table N")
    if args.state is not None:
        from molgen.training_state import state_metrics

        text = state_metrics(args.state)
    else:
        text = args.metrics.read_text(encoding="utf-8")
    if args.table is not None:
        print(table(text, args.table))
        return
    data = curves(text)
    fig, axes = plt.subplots(2, 3, figsize=(14, 7))
    for ax, (key, label, _) in zip(axes.flat, PANELS):
        points = data[key]
        if points:
            ax.plot([p[0] / 1e6 for p in points], [p[1] for p in points], marker="o", ms=3)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("training molecules (millions)")
        ax.grid(alpha=0.3)
    save_figure(fig, args.out, dpi=90)
    print(f"{args.out}: {sum(len(v) for v in data.values())} points")


if __name__ == "__main__":
    main()
