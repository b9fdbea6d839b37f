"""The explorer behind notebook 06: one user's train items and the top-20 of each search mode.

Continuous (exact inner product of LightGCN's embeddings), Hamming (the hash
model's codes) and hierarchical (Hamming top-C re-ranked by the hash model's
continuous embeddings), side by side, with held-out hits marked and the
query time of each.

Item ids are the raw ids of the dataset's split files. With the offline mirror
those are the mirror's 0-based ids, not MovieLens movie ids; titles are shown
only where a GroupLens ``movies.dat`` beside the dataset names every item
(:func:`hashrec_utils.data.item_titles`). :attr:`Explorer.items_note` says which.
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .data import _titles_file, dataset_folder, item_titles
from .experiments import RetrievalSetup, retrieval_setup
from .metrics import rank_topk
from .retrieval import hamming_topk, hierarchical_topk

__all__ = ["Explorer"]


class Explorer:
    """Recommendations for one user at a time from a :class:`~hashrec_utils.experiments.RetrievalSetup`."""

    def __init__(self, setup: RetrievalSetup, k: int = 20, candidates: int = 100, folder: str | os.PathLike | None = None):
        """``folder``: where the dataset's split files (and a ``movies.dat``) are; default: the
        folder :func:`~hashrec_utils.data.load_dataset` reads ``setup.data`` from."""
        self.setup, self.k, self.candidates = setup, k, candidates
        if folder is None:
            folder = dataset_folder(re.sub(r"\[:\d+\]$", "", setup.data.name))  # "ml-1m[:600]" -> "ml-1m"
        self.folder = Path(folder) if folder is not None else None
        self.titles: dict[int, str] | None = item_titles(setup.data, self.folder)
        self.items_note = _items_note(self.folder, self.titles is not None)

    @classmethod
    def for_profile(cls, profile: str, **kwargs) -> "Explorer":
        return cls(retrieval_setup(profile), **kwargs)

    @property
    def users(self) -> np.ndarray:
        """Raw ids of the users that can be explored (those with held-out items)."""
        return self.setup.data.user_ids[self.setup.users]

    def _row(self, raw_user: int) -> int:
        hit = np.flatnonzero(self.users == raw_user)
        if not len(hit):
            raise ValueError(f"user {raw_user} has no held-out items (or is not in the data); pick one of explorer.users")
        return int(hit[0])

    def train_items(self, raw_user: int) -> np.ndarray:
        """Raw ids of the items the user trained on."""
        r = self._row(raw_user)
        return self.setup.data.item_ids[self.setup.exclude[r].indices]

    def title(self, raw_item: int) -> str:
        """The item's title where the data has titles, else ``""``."""
        return self.titles.get(int(raw_item), "") if self.titles is not None else ""

    def recommend(self, raw_user: int) -> tuple[pd.DataFrame, dict[str, float]]:
        """Top-``k`` of each search mode (raw item ids, ``✓`` for a held-out hit, a title column per mode
        where titles exist; see :attr:`items_note`) and milliseconds per query."""
        s, r = self.setup, self._row(raw_user)
        exclude = s.exclude[r : r + 1]
        searches = {
            "continuous": lambda: rank_topk(s.user_emb[r : r + 1], s.item_emb, self.k, exclude=exclude),
            "hamming": lambda: hamming_topk(s.user_codes[r : r + 1], s.item_codes, self.k, exclude, threads=1),
            "hierarchical": lambda: hierarchical_topk(s.user_codes[r : r + 1], s.item_codes, s.hash_user_emb[r : r + 1],
                                                      s.hash_item_emb, self.k, self.candidates, exclude, threads=1),
        }
        held_out = set(s.data.test[s.users[r]].indices)
        table, times = {"rank": np.arange(1, self.k + 1)}, {}
        for name, search in searches.items():
            search()  # warm (JIT, caches)
            t = time.perf_counter()
            ids = search()[0]
            times[name] = (time.perf_counter() - t) * 1e3
            table[name] = [int(s.data.item_ids[i]) if i >= 0 else -1 for i in ids]
            table[f"{name} hit"] = ["✓" if i in held_out else "" for i in ids]
            if self.titles is not None:
                table[f"{name} title"] = [self.title(table[name][j]) for j in range(len(ids))]
        return pd.DataFrame(table), times

    def summary(self, raw_user: int) -> str:
        frame, times = self.recommend(raw_user)
        hits = {m: int((frame[f"{m} hit"] == "✓").sum()) for m in ("continuous", "hamming", "hierarchical")}
        parts = [f"{m}: {hits[m]} hits in {times[m]:.2f} ms" for m in hits]
        return f"user {raw_user} ({len(self.train_items(raw_user))} train items) — " + "; ".join(parts) + "\n" + self.items_note


def _items_note(folder: Path | None, have_titles: bool) -> str:
    """One sentence saying which ids the item columns hold and where titles come from."""
    if folder is None:
        return "item ids: the dataset's raw item ids; no dataset folder, so no titles"
    titles = _titles_file(folder)
    if have_titles:
        return f"item ids: MovieLens movie ids of {folder}, titles from {titles}"
    mirror = os.environ.get("HASHREC_DATA_DIR")
    if mirror and Path(mirror).resolve() in (folder.resolve(), *folder.resolve().parents):
        which = (f"item ids of the LightGCN-format split in {folder} (0-based, as in the offline mirror; "
                 "not MovieLens movie ids)")
    else:
        which = f"item ids as written in the split files of {folder}"
    if titles is not None:
        return f"{which}; {titles} does not name every one of these ids, so no titles are shown"
    return f"{which}; no titles file found (movies.dat in {folder} or {folder.parent})"
