"""BGCH and BiGeaR as their official code runs them, one step at a time, beside the table's rows.

    python scripts/published_budget.py --profile full --dataset gowalla --steps bgch_layers_fixed bgch_layers_trained
    python scripts/published_budget.py --profile full --dataset gowalla --steps bgch_own_budget bigear_own_budget

BGCH. The table's ``bgch_published`` row trains BGCH's loss, its Fourier estimator and bias-free hash
layer on a 64-d, 3-layer LightGCN encoder and codes the encoder's output: 64 bits. BGCH's official
code (github.com/yankai-chen/BGCH, ``src/run_all.py:7``, ``src/parse.py``, ``src/model.py``) differs
in these steps, each a variant here (every other setting the row's, at its tuned point):

``bgch_bits192``         the row itself at 192 bits (its output coded by a 64 → 192 layer): what
                         the bits alone do;
``bgch_layers_fixed``    the official architecture at the row's 64-d: 2 layers, every layer's embedding
                         (the ego layer included) coded on its own with one scale a layer, the codes
                         side by side (3 × 64 = 192 bits, ``LayerConcatLightGCN`` + ``HashLayer(blocks)``),
                         the projection ``W`` left at its random initialisation (the official layer
                         sits outside the optimiser), Gowalla's 4 Fourier terms (``--N 8``) and raw
                         scores ``Σ_l α_u^l α_i^l ⟨b_u^l, b_i^l⟩`` (score scale K: ``γ/K = 1`` at the start);
``bgch_layers_trained``  the same with ``W`` trained (what the paper describes);
``bgch_own_budget``      ``bgch_layers_fixed`` at the official size: 256-d, 768 bits.

BiGeaR (github.com/yankai-chen/BiGeaR, ``src/run_bin.py:10-11``): a full-precision teacher (LightGCN,
2 layers, layer ``l`` weighted ``(l + 1)/3``, side by side) trained first; the student starts from its
ego table, binarises every layer's embedding itself (``hash_layer="identity"``, one scale a layer)
and learns BPR on the codes plus the inference distillation of the teacher's top 100 items on each
layer (objective ``bigear``):

``bigear_layers``        at the row's 64-d: 192 bits;
``bigear_own_budget``    at the official 256-d: 768 bits.

Not reproduced anywhere: BGCH's latent feature dispersion (a random projection drawn afresh at every
forward pass, evaluation included) and the official schedules (1,000 epochs of 2,048- or 4,096-pair
batches at lr 1e-3, ~180-360 k steps on Gowalla; every variant keeps the table's large-batch cosine
schedule of the published recipes, as every row does). Each variant (and BiGeaR's teacher) trains on
the validation carve-out and is read like the rows: its kept epoch chosen on validation, test read
once. Results go to ``results/<profile>/published_budget.json`` (atomically; a variant already there
is kept unless ``--retrain``).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace

# variant -> (encoder, dim, layers, bits, hash parameters over the row's; "scale": the score scale K, so
# raw official scores, γ/K = 1 at the start). Every variant starts from the table row ROW's settings.
ROW = "bgch_published"
LAYERS = 2  # both official codes' default depth (BGCH src/parse.py:8, BiGeaR src/parse.py:17)
_BGCH = {"hash_layer": "fixed_nobias", "estimator": {"n_terms": 4}, "scale": True}
_BIGEAR = {"objective": "bigear", "hash_layer": "identity", "cont_weight": 0.0, "n_negatives": 1,
           "distill": 0.0, "estimator": {}, "scale": True}
VARIANTS = {
    "bgch_bits192": ("lightgcn", 64, 3, 192, {}),
    "bgch_layers_fixed": ("lightgcn_layers", 64, LAYERS, 192, _BGCH),
    "bgch_layers_trained": ("lightgcn_layers", 64, LAYERS, 192, {**_BGCH, "hash_layer": "linear_nobias"}),
    "bgch_own_budget": ("lightgcn_layers", 256, LAYERS, 768, _BGCH),
    "bigear_layers": ("lightgcn_layers_weighted", 64, LAYERS, 192, _BIGEAR),
    "bigear_own_budget": ("lightgcn_layers_weighted", 256, LAYERS, 768, _BIGEAR),
}
METRICS = ("recall@20", "recall@50", "recall@100", "ndcg@50", "ndcg@100")


def _carve_out(profile: str) -> tuple[float, str]:
    """The comparison's validation carve-out of ``profile`` and its folder tag (``0.1``, ``"_v10"``)."""
    from hashrec_utils.experiments.comparison import COMPARISON
    from hashrec_utils.experiments.runs import valid_tag

    vf = COMPARISON[profile].valid_fraction
    return vf, valid_tag(vf)


def teacher_plan(profile: str, dataset: str, dim: int, seed: int = 0):
    """``(TrainConfig, run folder)`` of BiGeaR's full-precision teacher: the profile's LightGCN settings
    on the carve-out with the layers side by side, weighted ``(l + 1)/(L + 1)``, at ``dim``."""
    from hashrec_utils.config import runs_dir
    from hashrec_utils.settings import train_config

    vf, tag = _carve_out(profile)
    config = train_config(profile, dataset, model="lightgcn_layers_weighted", dim=dim, n_layers=LAYERS, seed=seed,
                          valid_fraction=vf)
    return config, runs_dir(profile) / f"lightgcn_layers_weighted_{dataset}_d{dim}_L{LAYERS}_s{seed}{tag}"


def variant_plan(profile: str, dataset: str, name: str, seed: int = 0, eval_every: int | None = None):
    """``(TrainConfig, run folder)`` of variant ``name``: its row's config at the row's tuned point with
    the variant's encoder, size, bits and hash parameters (BiGeaR's: warm-started from its teacher)."""
    from hashrec_utils.config import runs_dir
    from hashrec_utils.experiments.rows import variant_plan as row_plan

    encoder, dim, layers, bits, params = VARIANTS[name]
    vf, tag = _carve_out(profile)
    config, _ = row_plan(profile, ROW, seed=seed, bits=64, dataset=dataset, valid_fraction=vf)
    base, params = dict(config.hash_params), dict(params)
    method = "bigear" if params.get("objective") == "bigear" else config.hash_method
    hp = {**base, **{k: v for k, v in params.items() if k not in ("scale", "estimator")},
          "estimator": {**(base.get("estimator", {}) if method == config.hash_method else {}), **params.get("estimator", {})}}
    if params.get("scale"):
        hp["scale"] = float(bits)
    if method == "bigear":
        hp["warm_start"] = str(teacher_plan(profile, dataset, dim, seed)[1])
    config = replace(config, model=encoder, dim=dim, n_layers=layers, bits=bits, hash_method=method, hash_params=hp,
                     eval_every=eval_every or config.eval_every)
    return config, runs_dir(profile) / f"hash_{dataset}{tag}_{encoder}_{method}_b{bits}_s{seed}_{name}"


def _numbers(metrics: dict, search: str) -> dict:
    """Test and validation numbers of one search mode from :func:`comparison_metrics`' result."""
    test, valid = metrics["test"][search], (metrics.get("valid") or {}).get(search, {})
    return {**{m: test[m] for m in METRICS if m in test}, **{f"valid_{m}": valid[m] for m in METRICS if m in valid}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="full", choices=("quick", "default", "full"))
    parser.add_argument("--dataset", default="gowalla")
    parser.add_argument("--steps", nargs="+", default=["bgch_layers_fixed", "bgch_layers_trained"], choices=sorted(VARIANTS))
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

    path = results_dir(args.profile) / "published_budget.json"

    def read_record() -> dict:
        # read afresh before each write: another invocation may have recorded its steps meanwhile
        return read_json(path) if path.exists() else {"dataset": args.dataset, "variants": {}}

    done = read_record()["variants"]
    for name in args.steps:
        key = f"{name}_s{args.seed}"
        if key in done and not args.retrain:
            print(f"{key}: in {path}, kept")
            continue
        config, out = variant_plan(args.profile, args.dataset, name, args.seed, args.eval_every)
        teacher = {}
        if config.hash_params.get("warm_start") is not None:  # BiGeaR's teacher first
            t_config, t_out = teacher_plan(args.profile, args.dataset, config.dim, args.seed)
            t_metrics = run(t_config, t_out, progress=True, retrain=True)
            teacher[t_out.name] = {"dim": t_config.dim, "n_layers": t_config.n_layers,
                                   "kept_epoch": t_metrics.get("kept_epoch"), "recall@20": t_metrics.get("recall@20"),
                                   "train_seconds": t_metrics.get("train_seconds")}
        trained = run(config, out, progress=True, retrain=True)
        if data is None:  # the row's carve-out, scored at the comparison's cut-offs as its rows are
            data = load_run_data(train_config(args.profile, args.dataset, valid_fraction=config.valid_fraction))
        metrics = comparison_metrics(out, data, stage.ks, stage.candidates)
        record = read_record()
        record["variants"][key] = {
            "variant": name, "method": config.hash_method, "seed": args.seed, "run": out.name, "bits": config.bits, "dim": config.dim,
            "n_layers": config.n_layers, "hash_layer": config.hash_params.get("hash_layer"),
            "eval_every": config.eval_every, "epochs": config.epochs, "kept_epoch": trained.get("kept_epoch"),
            "train_seconds": trained.get("train_seconds"),
            **{s: _numbers(metrics, s) for s in ("hamming", "hierarchical")}}
        if teacher:
            record.setdefault("teachers", {}).update(teacher)
        write_json(path, record)
        h = record["variants"][key]["hamming"]
        print(f"{key}: {config.bits} bits, Hamming test recall@50 {h['recall@50']:.4f} (valid {h.get('valid_recall@50', float('nan')):.4f}), "
              f"kept epoch {trained.get('kept_epoch')}, {trained.get('train_seconds', 0) / 60:.1f} min")
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
