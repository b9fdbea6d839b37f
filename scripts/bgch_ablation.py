"""BGCH as its official code runs it, one step at a time: which step moves the published recipe's row.

    python scripts/bgch_ablation.py --profile full --dataset gowalla [--steps layers_fixed layers_trained]
    python scripts/bgch_ablation.py --profile full --dataset gowalla --steps own_budget   # 256-d, 768 bits

The table's ``bgch_published`` row trains BGCH's loss, its Fourier estimator and bias-free hash
layer on a 64-d, 3-layer LightGCN encoder and codes the encoder's output: 64 bits. BGCH's official
code (github.com/yankai-chen/BGCH, ``src/run_all.py:7``, ``src/parse.py``, ``src/model.py``) differs
in these steps, each a variant here (every other setting the row's, at its tuned point):

``layers_fixed``    the official architecture at the row's 64-d: 2 layers, every layer's embedding
                    (the ego layer included) coded on its own with one scale a layer, the codes
                    side by side (3 × 64 = 192 bits, ``LayerConcatLightGCN`` + ``HashLayer(blocks)``),
                    the projection ``W`` left at its random initialisation (the official layer sits
                    outside the optimiser), Gowalla's 4 Fourier terms (``--N 8``) and raw scores
                    ``Σ_l α_u^l α_i^l ⟨b_u^l, b_i^l⟩`` (score scale K, so ``γ/K = 1`` at the start);
``layers_trained``  the same with ``W`` trained (what the paper describes);
``own_budget``      ``layers_fixed`` at the official size: 256-d, 768 bits.

Not reproduced anywhere: the latent feature dispersion (a random projection drawn afresh at every
forward pass, evaluation included) and the schedule (1,000 epochs of 4,096-pair batches at lr 1e-3,
~178 k steps on Gowalla; every variant keeps the row's large-batch cosine schedule, as every row of
the table does). Each variant trains on the validation carve-out and is read like the row: its kept
epoch chosen on validation, test read once. Results go to ``results/<profile>/bgch_ablation.json``
(atomically; a variant already there is kept unless ``--retrain``), with the row's recorded numbers
beside them.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace

# variant -> (encoder, dim, layers, bits, hash parameters over the row's)
_OFFICIAL = {"hash_layer": "fixed_nobias", "estimator": {"n_terms": 4}}
VARIANTS = {
    "layers_fixed": ("lightgcn_layers", 64, 2, 192, _OFFICIAL),
    "layers_trained": ("lightgcn_layers", 64, 2, 192, {**_OFFICIAL, "hash_layer": "linear_nobias"}),
    "own_budget": ("lightgcn_layers", 256, 2, 768, _OFFICIAL),
}
ROW = "bgch_published"
METRICS = ("recall@20", "recall@50", "recall@100", "ndcg@50", "ndcg@100")


def variant_plan(profile: str, dataset: str, name: str, seed: int = 0, eval_every: int | None = None):
    """``(TrainConfig, run folder)`` of ablation variant ``name``: the row's config at its tuned point
    with the variant's encoder, size, bits and hash parameters."""
    from hashrec_utils.experiments.rows import variant_plan as row_plan

    encoder, dim, layers, bits, params = VARIANTS[name]
    config, out = row_plan(profile, ROW, seed=seed, bits=64, dataset=dataset, valid_fraction=0.1)
    hp = {**dict(config.hash_params), **params, "scale": float(bits),
          "estimator": {**dict(config.hash_params).get("estimator", {}), **params["estimator"]}}
    config = replace(config, model=encoder, dim=dim, n_layers=layers, bits=bits, hash_params=hp,
                     eval_every=eval_every or config.eval_every)
    return config, out.with_name(out.name.replace("_lightgcn_bgch_b64_", f"_{encoder}_bgch_b{bits}_") + f"_{name}")


def _numbers(metrics: dict, search: str) -> dict:
    """Test and validation numbers of one search mode from :func:`comparison_metrics`' result."""
    test, valid = metrics["test"][search], (metrics.get("valid") or {}).get(search, {})
    return {**{m: test[m] for m in METRICS if m in test}, **{f"valid_{m}": valid[m] for m in METRICS if m in valid}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="full", choices=("quick", "default", "full"))
    parser.add_argument("--dataset", default="gowalla")
    parser.add_argument("--steps", nargs="+", default=["layers_fixed", "layers_trained"], choices=sorted(VARIANTS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-every", type=int, default=None, help="validation period in epochs (default: the row's)")
    parser.add_argument("--retrain", action="store_true", help="train a variant the record already holds")
    args = parser.parse_args(argv)

    from hashrec_utils.config import results_dir
    from hashrec_utils.experiments.comparison import COMPARISON, comparison_metrics
    from hashrec_utils.settings import train_config
    from hashrec_utils.training.runs import load_run_data, run
    from hashrec_utils.utils import read_json, write_json

    stage = COMPARISON[args.profile]
    data = None

    path = results_dir(args.profile) / "bgch_ablation.json"
    record = read_json(path) if path.exists() else {"dataset": args.dataset, "variants": {}}
    for name in args.steps:
        key = f"{name}_s{args.seed}"
        if key in record["variants"] and not args.retrain:
            print(f"{key}: in {path}, kept")
            continue
        config, out = variant_plan(args.profile, args.dataset, name, args.seed, args.eval_every)
        trained = run(config, out, progress=True, retrain=True)
        if data is None:  # the row's carve-out, scored at the comparison's cut-offs as its rows are
            data = load_run_data(train_config(args.profile, args.dataset, valid_fraction=config.valid_fraction))
        metrics = comparison_metrics(out, data, stage.ks, stage.candidates)
        record["variants"][key] = {
            "variant": name, "seed": args.seed, "run": out.name, "bits": config.bits, "dim": config.dim,
            "n_layers": config.n_layers, "hash_layer": config.hash_params.get("hash_layer"),
            "eval_every": config.eval_every, "epochs": config.epochs, "kept_epoch": trained.get("kept_epoch"),
            "train_seconds": trained.get("train_seconds"),
            **{s: _numbers(metrics, s) for s in ("hamming", "hierarchical")}}
        write_json(path, record)
        h = record["variants"][key]["hamming"]
        print(f"{key}: {config.bits} bits, Hamming test recall@50 {h['recall@50']:.4f} (valid {h.get('valid_recall@50', float('nan')):.4f}), "
              f"kept epoch {trained.get('kept_epoch')}, {trained.get('train_seconds', 0) / 60:.1f} min")
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
