"""The study that the notebooks call, in these modules:

- :mod:`.runs`: run management: every compared run's settings, resolved once
  (:data:`HASH_STAGE`, :func:`hash_overrides`), and the run folders (:func:`lightgcn_run`,
  :func:`hash_run`, :func:`write_table`, :func:`collect_runs`);
- :mod:`.rows`: the tables' rows: what each is (:data:`EXTRA_VARIANTS`, :func:`row_spec`,
  :func:`row_family`), its tuning-grid point (:class:`GridPoint`, :func:`tuned_point`) and its run
  (:func:`variant_run`);
- :mod:`.stages`: notebooks 01-03 (data, the LightGCN baseline, the hashing table and sweeps);
- :mod:`.tuning`: the equal validation grid of every table row (``make tune``);
- :mod:`.teacher_size`: the comparison's teacher size, chosen on validation (``teacher-size``);
- :mod:`.speed`: notebook 04 (every index's accuracy against throughput, the scaled catalogue);
- :mod:`.tradeoff`: notebook 05 (accuracy at a fixed throughput: one model per dataset, full
  frontiers, both protocols, latency);
- :mod:`.comparison`: notebook 07 (the seed paper's table on a published split, every row run by
  hashrec under the one protocol, beside the published numbers; the bits sweep), and
  :mod:`.committed`, its committed record read in place of absent run folders.

A stage writes its numbers to ``results/<profile>/`` (atomic CSV/JSON, the files the report reads)
and its figures to ``figures/<profile>/``; the notebook only shows what the stage returns.
``from hashrec_utils.experiments import hashing_stage`` (or any name below) keeps working.
"""
from __future__ import annotations

from .runs import (CURVE_ESTIMATORS, HASH_STAGE, HASH_TRAIN, HASHGNN_TRAIN, SAMPLED_POOL, SAMPLED_POOL_EPOCHS,
                   SCHEDULES, TABLE_OBJECTIVE, HashStage, collect_runs, default_init, environment, hash_overrides, hash_plan,
                   hash_run, lightgcn_plan,
                   hash_run_name, lightgcn_run, lightgcn_run_name, load_profile_datasets, train_default_init, valid_tag,
                   write_table)
from .rows import (EXTRA_VARIANTS, PAIRWISE_ESTIMATORS, PUBLISHED_ROWS, ROWS, TUNED_FILE, GridPoint, Row, popcount_searchable,
                   row_family, row_spec, tuned_point, variant_run, variant_run_name)
from .speed import (RETRIEVAL_FAMILIES, RETRIEVAL_STAGE, SCALING_LARGE, RetrievalSetup, RetrievalStage,
                    faiss_stage, ivf_nlist, pq_nbits, retrieval_setup, retrieval_sweeps, scaling_table)
from .tradeoff import EXACT_METHODS, fixed_throughput, headline, latency_table, tradeoff_models, tradeoff_stage
from .tuning import OWN_SCHEDULE, TUNING_GRID, TuningGrid, own_alternatives, tune, tune_row
from .comparison import (COMPARISON, ComparisonStage, comparison_best_row, comparison_metrics, comparison_stage,
                         comparison_view, published_rows)
from .stages import (LAYER_SWEEP, LAYER_SWEEP_EPOCHS, _estimator_table, _sections,
                     _untrained_rows, _valid_columns, best_estimator, candidates_sweep, data_prep,
                     hashing_stage, lightgcn_stage, summarize)

__all__ = [
    "CURVE_ESTIMATORS", "EXTRA_VARIANTS", "HASH_STAGE", "HASH_TRAIN", "HASHGNN_TRAIN", "PUBLISHED_ROWS",
    "SAMPLED_POOL", "SAMPLED_POOL_EPOCHS", "SCHEDULES", "TABLE_OBJECTIVE", "HashStage", "collect_runs",
    "default_init", "train_default_init", "hash_plan", "lightgcn_plan", "environment", "hash_overrides", "hash_run", "lightgcn_run", "load_profile_datasets", "popcount_searchable",
    "row_family", "variant_run", "write_table", "hash_run_name", "lightgcn_run_name", "variant_run_name",
    "RETRIEVAL_FAMILIES", "RETRIEVAL_STAGE", "SCALING_LARGE",
    "RetrievalSetup", "RetrievalStage", "faiss_stage", "retrieval_setup", "retrieval_sweeps", "scaling_table",
    "ivf_nlist", "pq_nbits", "EXACT_METHODS", "fixed_throughput", "headline", "latency_table", "tradeoff_models",
    "tradeoff_stage",
    "LAYER_SWEEP", "LAYER_SWEEP_EPOCHS", "best_estimator", "candidates_sweep", "data_prep", "hashing_stage",
    "lightgcn_stage", "summarize",
    "GridPoint", "TUNED_FILE", "tuned_point", "row_spec", "PAIRWISE_ESTIMATORS", "ROWS", "Row", "table_row",
    "OWN_SCHEDULE", "TUNING_GRID", "TuningGrid", "own_alternatives", "tune", "tune_row", "valid_tag",
    "COMPARISON", "ComparisonStage", "comparison_best_row", "comparison_metrics", "comparison_stage",
    "comparison_view", "published_rows",
]
