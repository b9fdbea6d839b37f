"""The golden cases: tiny deterministic computations of every versioned component, and their outputs.

Each case names the components it exercises (``{component: version}``, the same names a run's
identity uses, :mod:`hashrec_utils.training.identity`) and returns a dict of numbers. The
committed file ``tests/training/golden/expected.json`` holds each case's components and outputs; the golden
test (``tests/training/test_golden.py``) recomputes every case and fails when an output moved while the
versions of its components did not, naming the component to bump and where it lives.

Cases, smallest first, so a failure points at one component:

* ``estimator.<name>``: forward, backward and codes of each estimator on a fixed tensor;
* ``encoder.<name>``: LightGCN's and GraphSAGE's embeddings and loss on a fixed small graph;
* ``objective.<name>``: each objective's loss and gradient through a :class:`HashModel` on a table;
* ``split``: the per-user split and the validation carve-out of a synthetic matrix;
* ``untrained.<name>``: LSH and sign codes of fixed embeddings;
* ``evaluation``: every search mode's metrics on fixed arrays;
* ``run.<recipe>``: a whole tiny run (a few epochs on a small graph) of each encoder, estimator
  and objective, through :func:`hashrec_utils.training.run`: the loss history and the metrics.

After bumping a version (or adding a case): ``python tests/training/golden_cases.py --update`` rewrites
the expected file; commit it with the change.
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

EXPECTED = Path(__file__).resolve().parent / "golden" / "expected.json"


def _r(x) -> float:
    return float(np.float64(x))


def _tensor_summary(t: torch.Tensor) -> list[float]:
    t = t.detach().double()
    return [_r(t.sum()), _r(t.square().sum()), _r(t.flatten()[: 5].sum()), _r(t.abs().max())]


def _codes_digest(packed: np.ndarray) -> int:
    """The packed codes as one number: a position-weighted sum of their bytes (exact, order-sensitive)."""
    flat = np.asarray(packed, dtype=np.int64).ravel()
    return int(((np.arange(len(flat)) % 9973 + 1) * flat).sum())


def estimator_case(name: str):
    from hashrec_utils.hashing import ESTIMATORS, make_estimator, pack_codes

    gen = torch.Generator().manual_seed(7)
    a = torch.randn(6, 16, generator=gen, dtype=torch.float32).requires_grad_(True)
    w = torch.randn(6, 16, generator=gen)
    est = make_estimator(name)
    torch.manual_seed(11)  # the stochastic estimators (guided STE, Gumbel) draw from torch's global generator
    out = {}
    for t in (0.0, 0.5, 1.0):
        a.grad = None
        h = est(a, t)
        (h * w).sum().backward()
        out[f"t{t}"] = _tensor_summary(h) + _tensor_summary(a.grad)
        out[f"state{t}"] = {k: _r(v) for k, v in est.state(t).items()}
    out["codes"] = _codes_digest(pack_codes(est.codes(a.detach())))
    return {f"estimator.{name}": ESTIMATORS[name].version}, out


def _graph():
    from hashrec_utils.data import load_dataset

    return load_dataset("synthetic", n_users=40, n_items=30, n_interactions=400, seed=3, valid_fraction=0.0)


def encoder_case(name: str):
    from hashrec_utils.graph import build_graph
    from hashrec_utils.models import ENCODERS, make_encoder

    data = _graph()
    torch.manual_seed(5)
    enc = make_encoder(name, data.n_users, data.n_items, dim=8)
    g = build_graph(data.train)
    users, items = enc.embeddings(g)
    u = torch.arange(10)
    loss, _ = enc.loss(g, u, torch.arange(10) % data.n_items, (torch.arange(10) + 7) % data.n_items)
    loss.backward()
    grads = [p.grad for p in enc.parameters() if p.grad is not None]
    return {f"encoder.{name}": ENCODERS[name].version}, {
        "users": _tensor_summary(users), "items": _tensor_summary(items), "loss": _r(loss.detach()),
        "grad": [_r(sum(x.double().square().sum() for x in grads))]}


def objective_case(name: str):
    from hashrec_utils.hashing import ESTIMATORS, OBJECTIVES, HashLayer, HashModel, TableEncoder, make_estimator

    rng = np.random.default_rng(2)
    u0, i0 = rng.standard_normal((12, 8)).astype(np.float32), rng.standard_normal((20, 8)).astype(np.float32)
    torch.manual_seed(4)
    model = HashModel(TableEncoder(u0, i0), 16, make_estimator("ste"), objective=name, distill=0.5,
                      continuous="init", n_negatives=None if name != "recall" else 8)
    model.set_total_steps(10)
    if name == "bigear":  # its teacher's top items (a warm-started run computes them from its teacher)
        model.teacher_top = torch.from_numpy(np.argsort(-(u0 @ i0.T), axis=1, kind="stable")[:, None, :7].copy())
    users, pos = torch.tensor([0, 1, 1, 5, 7, 11]), torch.tensor([3, 4, 9, 0, 19, 2])
    neg = torch.tensor([5, 6, 1, 2, 3, 4])
    loss, logs = model.loss(None, users, pos, neg, step=3)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    comps = {f"objective.{name}": OBJECTIVES[name].version, "hash_model": HashModel.version,
             "hash_layer": HashLayer.version, "encoder.table": TableEncoder.version, "estimator.ste": ESTIMATORS["ste"].version}
    return comps, {"loss": _r(loss.detach()), **{k: _r(v) for k, v in sorted(logs.items())},
                   "grad": _r(sum(x.double().square().sum() for x in grads))}


def split_case():
    from hashrec_utils.data import SPLIT_VERSION, load_dataset, subset_users

    data = load_dataset("synthetic", n_users=60, n_items=50, n_interactions=900, seed=1, valid_fraction=0.2)
    sub = subset_users(data, 25)

    def digest(m: sp.csr_matrix) -> int:
        coo = m.tocoo()
        return int(((coo.row.astype(np.int64) * 131 + coo.col) * (np.arange(coo.nnz) % 97 + 1)).sum())

    return {"split": SPLIT_VERSION}, {name: [int(getattr(d, name).nnz), digest(getattr(d, name))]
                                      for d in (data,) for name in ("train", "valid", "test")} | {
        "subset": [int(sub.n_users), int(sub.train.nnz), digest(sub.test)]}


def untrained_case(name: str):
    from hashrec_utils.hashing import UNTRAINED_VERSIONS, untrained_codes

    rng = np.random.default_rng(9)
    u, i = rng.standard_normal((10, 16)).astype(np.float32), rng.standard_normal((14, 16)).astype(np.float32)
    cu, ci = untrained_codes(name, u, i, 16, seed=3)
    return {f"untrained.{name}": UNTRAINED_VERSIONS[name]}, {"users": _codes_digest(cu), "items": _codes_digest(ci)}


def evaluation_case():
    from hashrec_utils.evaluation import evaluate_arrays, evaluation_components
    from hashrec_utils.hashing import pack_codes

    rng = np.random.default_rng(4)
    n_users, n_items = 30, 80
    u, i = rng.standard_normal((n_users, 16)).astype(np.float32), rng.standard_normal((n_items, 16)).astype(np.float32)
    arrays = {"user": u, "item": i, "user_codes": pack_codes(u @ rng.standard_normal((16, 24)).astype(np.float32)),
              "item_codes": pack_codes(i @ rng.standard_normal((16, 24)).astype(np.float32))}
    exclude = sp.random(n_users, n_items, density=0.1, random_state=1, format="csr")
    target = sp.random(n_users, n_items, density=0.1, random_state=2, format="csr")
    target = ((target - target.multiply(exclude > 0)) > 0).astype(np.float32).tocsr()
    exclude.data[:] = 1
    plain = evaluate_arrays({"user": u, "item": i}, target, exclude, ks=(5, 10))
    hashed = evaluate_arrays(arrays, target, exclude, ks=(5, 10), candidates=20)
    scaled = evaluate_arrays({**arrays, "item_scales": rng.uniform(0.5, 2, n_items).astype(np.float32)}, target, exclude,
                             ks=(5, 10), candidates=20)
    return evaluation_components(), {"plain": plain, "hashed": hashed, "scaled": scaled}


# Whole tiny runs: (name, TrainConfig overrides). Every encoder, estimator and objective appears.
RUNS = {
    "lightgcn": {},
    "table_softmax_signswish": {"hash_method": "signswish", "init": True,
                                "hash_params": {"objective": "softmax", "distill": 1.0, "continuous": "init",
                                                "n_negatives": 0, "cont_weight": 0.0}},
    "table_softmax_signswish_asymmetric": {"hash_method": "signswish", "init": True,
                                           "hash_params": {"objective": "softmax", "distill": 1.0, "continuous": "init",
                                                           "n_negatives": 0, "cont_weight": 0.0, "asymmetric": True}},
    "table_bpr_ste": {"hash_method": "ste", "init": True, "hash_params": {"objective": "bpr"}},
    "table_recall_guided_ste": {"hash_method": "guided_ste", "init": True,
                                "hash_params": {"objective": "recall", "n_negatives": 16}},
    "table_bpr_hashnet_frozen": {"hash_method": "hashnet_sp", "init": True, "hash_params": {}},
    "table_softmax_gumbel": {"hash_method": "gumbel", "init": True, "hash_params": {"objective": "softmax"}},
    "lightgcn_bgch_bgch": {"hash_method": "bgch", "hash_params": {"objective": "bgch", "hash_layer": "linear_nobias"}},
    "lightgcn_layers_bgch_fixed": {"model": "lightgcn_layers", "n_layers": 2, "hash_method": "bgch", "bits": 48,
                                   "hash_params": {"objective": "bgch", "hash_layer": "fixed_nobias"}},
    "table_bpr_bigear": {"hash_method": "bigear", "init": True, "hash_params": {"hash_layer": "identity"}, "bits": 16},
    "hashgnn": {"model": "hashgnn", "hash_method": "guided_ste", "hash_params": {}},
    "lsh": {"hash_method": "lsh", "init": True, "hash_params": {}},
    "sign": {"hash_method": "sign", "init": True, "hash_params": {}, "bits": 16},
}
RUN_SETTINGS = {"epochs": 3, "eval_every": 1, "batch_size": 256, "lr": 0.01, "patience": 0, "dim": 16}


def _folder(root: Path) -> Path:
    from hashrec_utils.data import load_dataset, write_lightgcn_file

    d = load_dataset("synthetic", n_users=80, n_items=60, n_interactions=1500, seed=0, valid_fraction=0.0)
    folder = root / "syn"
    if not folder.exists():
        folder.mkdir()
        write_lightgcn_file(folder / "train.txt", d.train, d.user_ids, d.item_ids)
        write_lightgcn_file(folder / "test.txt", d.test, d.user_ids, d.item_ids)
    return folder


def run_case(name: str, root: Path):
    """One whole tiny run through :func:`hashrec_utils.training.run` (the ``init`` teacher: the
    ``lightgcn`` case's run)."""
    import pandas as pd

    from hashrec_utils.settings import train_config
    from hashrec_utils.training import run, training_components

    folder = _folder(root)
    spec = dict(RUNS[name])
    uses_init = spec.pop("init", False)
    if uses_init and not (root / "lightgcn" / "metrics.json").exists():
        run_case("lightgcn", root)
    if uses_init:
        spec["hash_params"] = {**spec["hash_params"], "init": str(root / "lightgcn")}
    spec.setdefault("bits", 16 if spec.get("hash_method") else 64)
    config = train_config("quick", str(folder), device="cpu", **RUN_SETTINGS, **spec)
    metrics = run(config, root / name, progress=False)
    history = pd.read_csv(root / name / "history.csv") if (root / name / "history.csv").exists() else None
    sections = {k: v for k, v in metrics.items() if isinstance(v, dict) and k not in ("valid", "evaluation")}
    out = {"test": sections or {k: v for k, v in metrics.items() if "@" in k},
           "loss": [] if history is None else [_r(x) for x in history["loss"]]}
    comps = {k: v for k, v in training_components(config).items() if not k.startswith("init.")}
    return comps, out


def all_cases(root: Path) -> dict[str, tuple[dict, dict]]:
    """Every case: ``{name: (components, outputs)}``."""
    from hashrec_utils.hashing import ESTIMATORS, OBJECTIVES, UNTRAINED_VERSIONS
    from hashrec_utils.models import ENCODERS

    torch.set_num_threads(1)
    cases = {f"estimator.{n}": estimator_case(n) for n in ESTIMATORS}
    cases.update({f"encoder.{n}": encoder_case(n) for n in ENCODERS})
    cases.update({f"objective.{n}": objective_case(n) for n in OBJECTIVES})
    cases["split"] = split_case()
    cases.update({f"untrained.{n}": untrained_case(n) for n in UNTRAINED_VERSIONS})
    cases["evaluation"] = evaluation_case()
    cases.update({f"run.{n}": run_case(n, root) for n in RUNS})
    return cases


def _moved(want, got, path: str = "") -> list[str]:
    """Where ``got`` differs from ``want`` (floats to a relative 1e-5: bit-level noise of another
    CPU's kernels is not a change; integers and codes exactly)."""
    if isinstance(want, dict) and isinstance(got, dict):
        out = [f"{path}.{k} (only one side)" for k in sorted(set(want) ^ set(got))]
        return out + [m for k in sorted(set(want) & set(got)) for m in _moved(want[k], got[k], f"{path}.{k}")]
    if isinstance(want, list) and isinstance(got, list) and len(want) == len(got):
        return [m for i, (a, b) in enumerate(zip(want, got)) for m in _moved(a, b, f"{path}[{i}]")]
    if isinstance(want, int) and isinstance(got, int) and not isinstance(want, bool):
        return [] if want == got else [f"{path}: {want} → {got}"]
    if isinstance(want, (int, float)) and isinstance(got, (int, float)):
        return [] if np.isclose(got, want, rtol=1e-5, atol=1e-8) else [f"{path}: {want!r} → {got!r}"]
    return [] if want == got else [f"{path}: {want!r} → {got!r}"]


def check(cases: dict[str, tuple[dict, dict]], expected: dict) -> list[str]:
    """What is wrong with ``cases`` against the committed ``expected``: one line per case whose
    outputs moved while its components' versions did not (naming the components and where each
    version lives), whose versions changed without the file being rewritten, or that is new."""
    from hashrec_utils.training.identity import where_versioned

    update = "then run `python tests/training/golden_cases.py --update` and commit tests/training/golden/expected.json"
    problems = []
    for name, (comps, out) in cases.items():
        if name not in expected:
            problems.append(f"{name}: a new golden case: {update}")
            continue
        if expected[name]["components"] != comps:
            problems.append(f"{name}: component versions changed ({expected[name]['components']} → {comps}): {update}")
            continue
        moved = _moved(expected[name]["outputs"], out)
        if moved:
            names = ", ".join(f"{c} (version {v})" for c, v in sorted(comps.items()))
            problems.append(f"{name}: outputs moved ({'; '.join(moved[:3])}) while its components kept their versions: "
                            f"{names}. Bump the version of the component whose computation changed — "
                            + "; ".join(where_versioned(c) for c in sorted(comps)) + f" — {update}")
    return problems


def main(argv: list[str]) -> int:
    if argv != ["--update"]:
        print("usage: python tests/training/golden_cases.py --update   (rewrites tests/training/golden/expected.json)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        cases = all_cases(Path(tmp))
    EXPECTED.parent.mkdir(exist_ok=True)
    EXPECTED.write_text(json.dumps({n: {"components": c, "outputs": o} for n, (c, o) in cases.items()}, indent=1,
                                   sort_keys=True) + "\n")
    print(f"wrote {len(cases)} cases to {EXPECTED}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    sys.exit(main(sys.argv[1:]))
