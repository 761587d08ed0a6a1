"""Print the model card's tables (markdown) from the JSON files scripts/model_card.sh writes.

    python scripts/model_card_table.py [out/model-card]
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

KEYS = ["valid", "unique@10000", "FCD/Test", "FCD/TestSF", "SNN/Test", "Frag/Test", "Scaf/Test", "IntDiv", "Filters", "Novelty"]


def main() -> None:
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "out/model-card")
    print("| model | " + " | ".join(KEYS) + " | aromatic-atom fraction |")
    print("|---" * (len(KEYS) + 2) + "|")
    for name in ("strict", "relaxed", "relaxed-redrawn"):
        path = folder / f"score-{name}.json"
        if path.exists():
            report = json.loads(path.read_text())
            cells = [f"{report[k]:.3f}" if isinstance(report.get(k), (int, float)) else "–" for k in KEYS]
            aromatic = report.get("structure", {}).get("aromatic_atom_fraction", {})
            cells.append(f"{aromatic['set']:.3f} (test {aromatic['test']:.3f})" if aromatic else "–")
            print(f"| molgen ({name} decoding) | " + " | ".join(cells) + " |")
    print()
    print("| model | -ELBO (nats/mol) | -IWAE-K (nats/mol) | bits/token (IWAE) | KL | active units | N_eff |")
    print("|---|---|---|---|---|---|---|")
    for name in ("vae", "vae-raw", "lm"):
        path = folder / f"eval-{name}.json"
        if not path.exists():
            continue
        report = json.loads(path.read_text())
        lik, diag = report["likelihood"], report.get("diagnostics", {})
        elbo, iwae = lik["elbo_nll"], lik["iwae_nll"]
        au = f"{diag['active_units']}/{diag['latent_dim']}" if diag else "–"
        neff = f"{diag['n_eff']:.2f}/{diag['n_components']}" if diag else "–"
        print(
            f"| {name} (n={lik['n_molecules']}, K={lik['k']}) | {elbo['nats_per_molecule']:.2f} ± {elbo['se']:.2f} | "
            f"{iwae['nats_per_molecule']:.2f} ± {iwae['se']:.2f} | {iwae['bits_per_token']:.4f} | {lik['kl']:.2f} | {au} | {neff} |"
        )


if __name__ == "__main__":
    main()
