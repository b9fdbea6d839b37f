"""The comparison's asymmetric rows: binary items, real-valued users, the same bytes per item.

Two rows beside the Hamming ones, over the comparison's seeds, on the comparison's validation carve-out:

* the best row's own runs (symmetric codes) scored asymmetrically — ``<a_u, sign a_i>`` with ``a_u`` the
  user's hash-layer pre-activation (:class:`~hashrec_utils.retrieval.AsymmetricIndex`): no retraining,
  the same run folders the table's Hamming row reads;
* the row trained for it (``signswish_asym``: the user side of the objective real-valued) at the best
  row's tuned settings — tuned on validation for the best row, not re-tuned for this one.

Test and validation metrics come from each run's saved arrays (:func:`.comparison.comparison_metrics`);
``python -m hashrec_utils compare --profile full --asymmetric`` writes
``results/<profile>/comparison_asymmetric{,_runs}.{csv,json}`` (means and spreads; one row a seed and
search mode), which the report prints beside the comparison table.
"""
from __future__ import annotations

import pandas as pd

from .comparison import COMPARISON, _rows_of, _summarize, comparison_metrics, comparison_summary
from .rows import tuned_point, variant_run
from .runs import write_table

__all__ = ["asymmetric_rows", "TRAINED_ROWS"]

TRAINED_ROWS = ("signswish_asym",)  # rows trained for asymmetric search, run at the best row's tuned settings
SEARCHES = ("hamming", "asymmetric")


def asymmetric_rows(profile: str, dataset: str = "gowalla", seeds: tuple[int, ...] | None = None,
                    trained: tuple[str, ...] = TRAINED_ROWS,
                    trained_seeds: tuple[int, ...] | None = None) -> dict[str, pd.DataFrame]:
    """Train (or reuse) and score the asymmetric rows of ``dataset``'s comparison (module docstring) over
    ``seeds`` (default: the comparison's), the ``trained`` rows over ``trained_seeds`` (default: ``seeds``);
    returns ``runs`` (a row per run and search mode) and ``table`` (means, spreads and seeds), the rows
    named as the comparison names them (``signswish``: the best row's runs, here also in asymmetric search;
    ``signswish_asym``: trained for it)."""
    from ..settings import train_config
    from ..training.runs import load_run_data

    stage = COMPARISON[profile]
    summary_path, record = comparison_summary(profile, dataset)
    if not record or "best_row" not in record:
        raise ValueError(f"the asymmetric rows follow the comparison's best row: {summary_path} holds none of "
                         f"{dataset} (run compare --profile {profile} first)")
    best, vf = record["best_row"], stage.valid_fraction
    data = load_run_data(train_config(profile, dataset, valid_fraction=vf))
    point = tuned_point(profile, best, dataset)
    rows = []
    seeds = tuple(seeds or stage.seeds)
    for label, at, its_seeds in [(best, None, seeds), *[(t, point, tuple(trained_seeds or seeds)) for t in trained]]:
        for seed in its_seeds:
            _, out = variant_run(profile, label, seed=seed, dataset=dataset, valid_fraction=vf, point=at,
                                 teacher=stage.teacher)
            metrics = comparison_metrics(out, data, stage.ks, stage.candidates)
            scored = {split: {s: m[s] for s in SEARCHES if s in m} if m else None for split, m in metrics.items()
                      if split in ("test", "valid")}
            rows += _rows_of(label, seed, 64, scored, stage.ks, out)
    runs = pd.DataFrame(rows)
    runs.insert(0, "dataset", dataset)
    table = _summarize(runs, stage.ks).assign(dataset=dataset)
    write_table(runs, "comparison_asymmetric_runs", profile)
    write_table(table, "comparison_asymmetric", profile)
    return {"runs": runs, "table": table}
