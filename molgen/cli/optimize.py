"""`molgen optimize`: latent-space CMA-ES for a property, beside random sampling with the same budget."""
from __future__ import annotations

import argparse
import json

from molgen.device import DEVICE_HELP, resolve_device
from molgen.errors import MolgenError


def add_args(parser: argparse.ArgumentParser) -> None:
    """Register the `optimize` options."""
    parser.add_argument("--model", default=None, help="checkpoint (default: the shipped MOSES model in checkpoints/)")
    parser.add_argument("--objective", default=None,
                        help="built-in objective: qed (RDKit QED), logp (penalised logP = logP - SA - ring penalty, "
                             "un-normalised), sa (the value is -SA: higher is easier to make)")  # fmt: skip
    parser.add_argument("--train-property", metavar="FILE", default=None,
                        help="instead of --objective: a CSV/TSV of molecules with measured values; a ridge regressor "
                             "on the latent means is fit to --column and its prediction is optimised")  # fmt: skip
    parser.add_argument("--column", default=None, help="the value column of --train-property")
    parser.add_argument("--smiles-column", default=None, help="the SMILES column of --train-property (default: found by name)")
    parser.add_argument("--minimize", action="store_true", help="with --train-property: lower predictions are better")
    parser.add_argument("--holdout", type=float, default=0.2, help="held-out fraction of --train-property (default 0.2)")
    parser.add_argument("--budget", type=int, required=True,
                        help="property evaluations (decoded molecules scored), for the optimiser and for random sampling each")
    parser.add_argument("--out", required=True, help="best molecules: .csv, .smi or .sdf (written complete or not at all)")
    parser.add_argument("--top", type=int, default=100, help="distinct molecules per method in --out (default 100)")
    parser.add_argument("--plot", default=None, metavar="FILE.png", help="best value so far against evaluations, both methods")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-random", action="store_true", help="skip the random-sampling baseline")
    parser.add_argument("--popsize", type=int, default=None, help="CMA-ES population (default 4 + 3 ln D)")
    parser.add_argument("--sigma0", type=float, default=None, help="CMA-ES initial step size in latent units (default 0.3)")
    parser.add_argument("--n-init", type=int, default=None, help="prior draws that pick the starts, part of the budget (default 50)")
    parser.add_argument("--starts", type=int, default=None,
                        help="CMA-ES runs one after the other, from the best start draws (default 5, fewer below 90 evaluations a run)")
    parser.add_argument("--centre-at", choices=("posterior", "draw"), default="posterior",
                        help="centre each CMA-ES run on the posterior mean E[z|x] of its best molecule, moving to every "
                             "better one (default), or on the prior draw that decoded to it")  # fmt: skip
    parser.add_argument("--decodes", type=int, default=1, help="decodes per candidate z, each one evaluation (default 1)")
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="decoder softmax temperature for both methods (default 1: the model's distribution)")
    parser.add_argument("--prior-weight", type=float, default=None, help="weight of the prior-density penalty (default 1; 0: off)")
    parser.add_argument("--constraints", choices=("strict", "relaxed"), default=None,
                        help="decode with these SELFIES constraints instead of the model's saved setting")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--device", default="auto", help=f"where the network runs: {DEVICE_HELP}")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def _rounded(value):
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def run(args: argparse.Namespace) -> int:
    """Optimise, write the best molecules (and the plot), print a one-line JSON summary."""
    from molgen.files import check_output_path
    from molgen.formats import output_format
    from molgen.optimize import check_budget, check_seed

    check_budget(args.budget, "--budget")
    check_seed(args.seed, "--seed")
    if (args.objective is None) == (args.train_property is None):
        raise MolgenError("give either --objective NAME (qed, logp, sa) or --train-property FILE --column NAME")
    if args.train_property is not None and args.column is None:
        raise MolgenError("--train-property needs --column NAME, the column of measured values to learn")
    if args.train_property is None and (args.column or args.smiles_column or args.minimize):
        raise MolgenError("--column, --smiles-column and --minimize go with --train-property")
    if args.top <= 0 or args.threads <= 0:
        raise MolgenError(f"--top and --threads must be positive, not {args.top} and {args.threads}")
    output_format(args.out)
    check_output_path(args.out)
    if args.plot is not None:
        if not args.plot.lower().endswith(".png"):
            raise MolgenError(f"--plot {args.plot}: the plot is a PNG; give a .png file name")
        check_output_path(args.plot)

    import torch

    from molgen import objectives, optimize
    from molgen.formats import write_molecules
    from molgen.sample import Generator

    objective = objectives.builtin_objective(args.objective) if args.objective is not None else None
    device = resolve_device(args.device)
    torch.set_num_threads(args.threads)
    generator = Generator.load(args.model, constraints=args.constraints, device=device)
    if objective is None:
        objective = objectives.learned_objective(
            generator, args.train_property, args.column, args.smiles_column, args.holdout, args.seed, not args.minimize
        )
        if not args.quiet:
            from molgen.progress import say

            r = objective.report
            say(f"ridge regression of {args.column} on E[z|x]: held-out R² {r['held_out_r2']:.3f}, RMSE "
                f"{r['held_out_rmse']:.4g} on {r['held_out']} of {r['rows']} molecules")  # fmt: skip
    tuning = {"popsize": args.popsize, "sigma0": args.sigma0, "n_init": args.n_init, "prior_weight": args.prior_weight,
              "starts": args.starts}  # fmt: skip
    result = optimize.optimize(
        generator, objective, args.budget, seed=args.seed, decodes=args.decodes, temperature=args.temperature, centre_at=args.centre_at,
        baseline=not args.no_random, progress=not args.quiet,
        **{k: v for k, v in tuning.items() if v is not None},
    )  # fmt: skip
    written = write_molecules(args.out, result.rows(args.top), ["SMILES", "value", "objective", "evaluation", "method"])
    if args.plot is not None:
        optimize.plot_progress(result, args.plot)
    summary = {"out": args.out, "written": written["written"], **({"plot": args.plot} if args.plot else {}),
               **result.summary(), "settings": result.settings}  # fmt: skip
    print(json.dumps(_rounded(summary)))
    return 0
