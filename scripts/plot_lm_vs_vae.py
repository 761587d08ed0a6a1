"""The VAE against the LM baseline at equal training molecules: NLL and FCD curves, and a table.

    python scripts/plot_lm_vs_vae.py --lm-metrics runs/lm/metrics.csv --lm-figures out/lm-baseline \\
        [--update-lm-history] checkpoints/card/lm_vs_vae.png

Curves (every validation, 2,000 held-out training molecules): the LM's exact NLL and the VAE's
−ELBO (an upper bound on its NLL), and val/fcd of 2,000 strict samples of each against the MOSES
test split. Points: at the VAE's shipped checkpoints (`checkpoints/card/vae_history.csv`, figures of
`scripts/model_card.sh` at the commit named there) and the LM's snapshots at the same step
(`scripts/lm_baseline.sh`), −IWAE-1000 (VAE) and exact NLL (LM) on the same 200 test molecules, and
FCD/Test of 30,000 samples decoded relaxed with invalid draws redrawn. The LM's points are those
of `checkpoints/card/lm_history.csv` (kept, since the LM run and its snapshots are not) with the
figures in --lm-figures added or replacing them; --update-lm-history writes the merged rows back.
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from molgen.plots import save_figure  # noqa: E402
from molgen.run_metrics import series  # noqa: E402
from molgen.training_state import state_metrics  # noqa: E402

KEYS = ("val/elbo", "val/fcd")


def molecules_at(step: int, counted: list[tuple[int, float]]) -> float:
    """Training molecules after ``step`` steps, interpolated between logged (steps, molecules) rows."""
    below = [(s, m) for s, m in counted if s <= step]
    above = [(s, m) for s, m in counted if s > step]
    if not below:
        return float("nan")
    (s0, m0), (s1, m1) = below[-1], above[0] if above else below[-1]
    if s1 == s0:  # past the last row: at that row's mean batch
        return m0 + (step - s0) * m0 / s0
    return m0 + (step - s0) * (m1 - m0) / (s1 - s0)


LM_HISTORY_FIELDS = ("step", "molecules", "nll", "se", "fcd", "valid_raw")


def lm_points(folder: Path, counted: list[tuple[int, float]]) -> list[dict]:
    """The LM snapshots' test figures: step, molecules, exact NLL (± se), FCD/Test and raw relaxed validity."""
    points = []
    for path in sorted(folder.glob("eval-step*.json"), key=lambda p: int(p.stem.split("step")[1])):
        step = int(path.stem.split("step")[1])
        score, sample = folder / f"score-step{step}.json", folder / f"sample-step{step}.json"
        nll = json.loads(path.read_text())["likelihood"]["iwae_nll"]
        fcd = json.loads(score.read_text())["FCD/Test"] if score.is_file() else float("nan")
        valid = json.loads(sample.read_text())["valid_fraction"] if sample.is_file() else float("nan")
        points.append({"step": step, "molecules": molecules_at(step, counted),
                       "nll": nll["nats_per_molecule"], "se": nll["se"], "fcd": fcd, "valid_raw": valid})  # fmt: skip
    return points


def read_lm_history(path: Path) -> list[dict]:
    """Rows of ``lm_history.csv`` as numbers (none when the file is missing)."""
    if not path.is_file():
        return []
    return [{k: int(r[k]) if k == "step" else float(r[k]) for k in LM_HISTORY_FIELDS} for r in csv.DictReader(open(path))]


def merge_points(history: list[dict], new: list[dict]) -> list[dict]:
    """``history`` with ``new`` added, a new point replacing a kept one at the same step; by step."""
    by_step = {p["step"]: p for p in history} | {p["step"]: p for p in new}
    return [by_step[s] for s in sorted(by_step)]


def write_lm_history(path: Path, points: list[dict]) -> None:
    """Write the LM's points as ``lm_history.csv`` (molecules as integers, figures rounded as reported)."""
    digits = {"nll": 2, "se": 2, "fcd": 3, "valid_raw": 3}
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(LM_HISTORY_FIELDS)
        for p in points:
            writer.writerow([p["step"], f"{p['molecules']:.0f}"] + [f"{p[k]:.{digits[k]}f}" for k in LM_HISTORY_FIELDS[2:]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--lm-metrics", type=Path, required=True, help="the LM run's metrics.csv")
    parser.add_argument("--lm-figures", type=Path, required=True, help="folder of scripts/lm_baseline.sh")
    parser.add_argument("--vae-state", type=Path, default=Path("checkpoints/molgen-moses.state.pt"))
    parser.add_argument("--vae-history", type=Path, default=Path("checkpoints/card/vae_history.csv"))
    parser.add_argument("--lm-history", type=Path, default=Path("checkpoints/card/lm_history.csv"))
    parser.add_argument("--update-lm-history", action="store_true", help="write the merged LM points to --lm-history")
    parser.add_argument("--vae-eval", type=Path, help="`molgen evaluate` JSON of the VAE at the history's last step: "
                        "prints the paired difference against the LM there, molecule by molecule")  # fmt: skip
    args = parser.parse_args()
    lm_text = args.lm_metrics.read_text(encoding="utf-8")
    curves = {"VAE": series(state_metrics(args.vae_state), KEYS), "LM": series(lm_text, KEYS)}
    counted = sorted((int(r["step"]) + 1, float(r["train/molecules"]))  # a row's step counts from 0
                     for r in csv.DictReader(lm_text.splitlines()) if r.get("train/molecules"))  # fmt: skip
    vae = [{k: float(v) for k, v in r.items() if k != "commit"} for r in csv.DictReader(open(args.vae_history))]
    lm = merge_points(read_lm_history(args.lm_history), lm_points(args.lm_figures, counted))
    if args.update_lm_history:
        write_lm_history(args.lm_history, lm)

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, colour in (("VAE", "C0"), ("LM", "C1")):
        nll = curves[name]["val/elbo"]
        label = "VAE val −ELBO (bound)" if name == "VAE" else "LM val NLL (exact)"
        left.plot([x / 1e6 for x, _ in nll], [-y for _, y in nll], color=colour, alpha=0.6, lw=1, label=label)
        fcd = curves[name]["val/fcd"]
        right.plot([x / 1e6 for x, _ in fcd], [y for _, y in fcd], color=colour, alpha=0.6, lw=1,
                   label=f"{name} val/fcd (2k strict samples)")  # fmt: skip
    left.errorbar([p["molecules"] / 1e6 for p in vae], [p["iwae1000_nll"] for p in vae], [p["iwae1000_se"] for p in vae],
                  fmt="o", color="C0", label="VAE test −IWAE-1000 (200 molecules)")  # fmt: skip
    left.errorbar([p["molecules"] / 1e6 for p in lm], [p["nll"] for p in lm], [p["se"] for p in lm],
                  fmt="s", color="C1", label="LM test NLL (same 200)")  # fmt: skip
    right.plot([p["molecules"] / 1e6 for p in vae], [p["fcd_test"] for p in vae], "o", color="C0",
               label="VAE FCD/Test (30k, relaxed, redrawn)")  # fmt: skip
    right.plot([p["molecules"] / 1e6 for p in lm], [p["fcd"] for p in lm], "s", color="C1",
               label="LM FCD/Test (30k, relaxed, redrawn)")  # fmt: skip
    left.set_ylabel("nats per molecule")
    left.set_ylim(top=min(30.0, left.get_ylim()[1]))
    right.set_yscale("log")
    right.set_ylabel("FCD")
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xlabel("training molecules (millions)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    save_figure(fig, args.out, dpi=90)
    print(f"{args.out}")
    print("| training molecules | VAE −IWAE-1000 | LM NLL | VAE FCD/Test | LM FCD/Test | LM raw relaxed validity |")
    print("|---|---|---|---|---|---|")
    by_step = {p["step"]: p for p in lm}
    for p in vae:
        q = by_step.get(int(p["step"]))
        lm_cells = f"{q['nll']:.2f} ± {q['se']:.2f} | " if q else "– | "
        lm_fcd = f"{q['fcd']:.3f} | {q['valid_raw']:.3f}" if q else "– | –"
        print(f"| {p['molecules'] / 1e6:.2f} M (step {int(p['step']):,}) | {p['iwae1000_nll']:.2f} ± {p['iwae1000_se']:.2f} | "
              f"{lm_cells}{p['fcd_test']:.3f} | {lm_fcd} |")
    if args.vae_eval is not None:
        step = int(vae[-1]["step"])
        print(paired(args.vae_eval, args.lm_figures / f"eval-step{step}.json"))


def paired(vae_eval: Path, lm_eval: Path) -> str:
    """VAE −IWAE minus LM NLL, molecule by molecule on the same subset: mean ± standard error."""
    a, b = (json.loads(p.read_text())["likelihood"].get("per_molecule") for p in (vae_eval, lm_eval))
    if not a or not b or a["smiles"] != b["smiles"]:
        return f"no paired difference: {vae_eval} and {lm_eval} do not hold the same molecules one by one"
    diff = [x - y for x, y in zip(a["iwae_nll"], b["iwae_nll"])]
    n = len(diff)
    mean = sum(diff) / n
    se = (sum((d - mean) ** 2 for d in diff) / (n - 1) / n) ** 0.5
    return f"paired (VAE −IWAE) − (LM NLL) over {n} test molecules: {mean:+.2f} ± {se:.2f} nats (VAE lower on {sum(d < 0 for d in diff)})"


if __name__ == "__main__":
    main()
