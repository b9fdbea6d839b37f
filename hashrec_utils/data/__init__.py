"""Datasets: parse, validate, compact ids, split. One idea per module:

* :mod:`.core`: :class:`InteractionData` (binary CSR ``train`` / ``valid`` /
  ``test`` over compact ids), built from pairs; the per-user splits and their
  version :data:`SPLIT_VERSION`; user subsets; statistics; synthetic pairs.
* :mod:`.formats`: interaction files: format detection (the rules are in its
  docstring), parsing, header and id checks; writing LightGCN lines.
* :mod:`.sources`: named datasets (:data:`DATASETS`): where each is looked for,
  downloads and their checks, folders of split files, item titles.
* :mod:`.netflix_parse`: the streaming, vectorised parser of Netflix Prize files.
* :mod:`.netflix`: Netflix as a DataFrame (small files) or as memory-lean,
  cached :class:`InteractionData`; LightGCN's memory at that scale.

Imports run one way: ``sources`` -> ``formats`` -> ``netflix`` -> ``netflix_parse``,
and ``core`` under all of them. Every name is re-exported here.
"""
from __future__ import annotations

from .core import (SPLIT_VERSION, InteractionData, dataset_stats, from_pairs, split_per_user, subset_users,
                   synthetic_interactions)
from .formats import FORMATS, detect_format, load_interactions, write_lightgcn_file
from .sources import (DATASETS, Source, dataset_folder, default_root, item_titles, load_dataset, load_split_folder,
                      read_grouplens_zip)

# Private helpers that other modules and tests reach for by this package's name.
from .core import _csr  # noqa: F401
from .sources import _grouplens_zip_to_split, _titles_file  # noqa: F401

__all__ = [
    "InteractionData",
    "DATASETS",
    "load_dataset",
    "load_interactions",
    "load_split_folder",
    "from_pairs",
    "split_per_user",
    "synthetic_interactions",
    "dataset_stats",
    "subset_users",
    "default_root",
    "dataset_folder",
    "item_titles",
    "detect_format",
    "FORMATS",
    "SPLIT_VERSION",
]
