"""The explorer behind notebook 06: one user's train items and the top-20 of each search mode.

Continuous (exact inner product of LightGCN's embeddings), Hamming (the hash
model's codes) and hierarchical (Hamming top-C re-ranked by the hash model's
continuous embeddings), side by side, with held-out hits marked and the
query time of each.
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd

from .experiments import RetrievalSetup, retrieval_setup
from .metrics import rank_topk
from .retrieval import hamming_topk, hierarchical_topk

__all__ = ["Explorer"]


class Explorer:
    """Recommendations for one user at a time from a :class:`~hashrec_utils.experiments.RetrievalSetup`."""

    def __init__(self, setup: RetrievalSetup, k: int = 20, candidates: int = 100):
        self.setup, self.k, self.candidates = setup, k, candidates

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

    def recommend(self, raw_user: int) -> tuple[pd.DataFrame, dict[str, float]]:
        """Top-``k`` of each search mode (raw item ids, ``✓`` for a held-out hit) and milliseconds per query."""
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
        return pd.DataFrame(table), times

    def summary(self, raw_user: int) -> str:
        frame, times = self.recommend(raw_user)
        hits = {m: int((frame[f"{m} hit"] == "✓").sum()) for m in ("continuous", "hamming", "hierarchical")}
        parts = [f"{m}: {hits[m]} hits in {times[m]:.2f} ms" for m in hits]
        return f"user {raw_user} ({len(self.train_items(raw_user))} train items) — " + "; ".join(parts)
