"""The table of scripts/collapse_defences.sh: one row per setting, the choice marked.

    python scripts/defences_table.py out/collapse-defences [--molecules 3000000]

Reads each setting's eval.json (`molgen evaluate`), score.json (`molgen score`), sample.json (the
sampler's summary) and the last val/exact of its metrics.csv. The choice is the lowest −IWAE among
the defences whose KL is at least --min-kl nats (10): an ELBO or NLL bought by a collapsed latent
does not count. Other folders (the no_restart ablation) are listed but never chosen.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

DEFENCES = ("plain", "kl_target", "free_bits", "word_dropout", "bn_vae", "cyclical", "ae_warm")


def last_value(metrics: Path, key: str) -> float:
    """The last non-empty ``key`` of a run's metrics.csv (nan when there is none)."""
    if not metrics.is_file():
        return math.nan
    values = [r[key] for r in csv.DictReader(open(metrics, encoding="utf-8")) if r.get(key)]
    return float(values[-1]) if values else math.nan


def setting_row(run: Path) -> dict | None:
    """One setting's figures, or None when it has not been measured."""
    if not (run / "eval.json").is_file() or not (run / "score.json").is_file():
        return None
    report = json.loads((run / "eval.json").read_text())
    lik, diag = report["likelihood"], report.get("diagnostics", {})
    score = json.loads((run / "score.json").read_text())
    sample = json.loads((run / "sample.json").read_text()) if (run / "sample.json").is_file() else {}
    return {
        "setting": run.name,
        "iwae": lik["iwae_nll"]["nats_per_molecule"], "se": lik["iwae_nll"]["se"], "k": lik["k"], "kl": lik["kl"],
        "active": diag.get("active_units", math.nan), "dims": diag.get("latent_dim", math.nan),
        "mi": diag.get("mutual_info", math.nan), "n_eff": diag.get("n_eff", math.nan),
        "dead": diag.get("n_dead", math.nan), "mi_k": diag.get("mi_x_k", math.nan),
        "exact": last_value(run / "metrics.csv", "val/exact"),
        "fcd": score.get("FCD/Test", math.nan), "valid_raw": sample.get("valid_fraction", math.nan),
    }  # fmt: skip


def choose(rows: list[dict], min_kl: float) -> str | None:
    """The defence with the lowest −IWAE among those with KL >= min_kl."""
    kept = [r for r in rows if r["kl"] >= min_kl and r["setting"] in DEFENCES]
    return min(kept, key=lambda r: r["iwae"])["setting"] if kept else None


def table(rows: list[dict], chosen: str | None) -> str:
    """The rows as a markdown table, the chosen setting in bold."""
    lines = ["| setting | −IWAE-K (nats) | KL | active units | I(x;z) | N_eff | dead components | I(x;k) | val exact | FCD/Test | raw relaxed validity |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        name = f"**{r['setting']}**" if r["setting"] == chosen else r["setting"]
        lines.append(f"| {name} | {r['iwae']:.2f} ± {r['se']:.2f} (K = {r['k']}) | {r['kl']:.2f} | {r['active']}/{r['dims']} | "
                     f"{r['mi']:.2f} | {r['n_eff']:.2f} | {r['dead']} | {r['mi_k']:.2f} | {r['exact']:.3f} | {r['fcd']:.3f} | "
                     f"{r['valid_raw']:.3f} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="the OUT of scripts/collapse_defences.sh")
    parser.add_argument("--molecules", type=int, help="the training molecules of each setting (for the heading)")
    parser.add_argument("--min-kl", type=float, default=10.0, help="the KL a setting must keep to be chosen (10 nats)")
    args = parser.parse_args()
    rows = [row for run in sorted(p for p in args.folder.iterdir() if p.is_dir()) if (row := setting_row(run))]
    if not rows:
        raise SystemExit(f"{args.folder}: no measured setting (eval.json and score.json) in its folders")
    chosen = choose(rows, args.min_kl)
    budget = f" after {args.molecules:,} training molecules each" if args.molecules else ""
    print(f"Collapse defences{budget} (same data, seed and batch):\n")
    print(table(rows, chosen))
    print(f"\nchosen (lowest −IWAE with KL >= {args.min_kl:g} nats): {chosen or 'none keeps that KL'}")


if __name__ == "__main__":
    main()
