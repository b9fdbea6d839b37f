"""Large catalogues with a trained model's geometry and no duplicates: a Gaussian mixture of its items.

A speed study needs catalogues of 10^5 ... 10^7 items that behave like a trained model's, which no
public dataset has. Copies of real items plus a little noise (:func:`hashrec_utils.catalogue.resample_catalogue`)
make clumps of near-duplicates whose exact top-20 is a coin toss among copies, so "share of the exact
top-20 found" then scores tie-breaking. Here each item is *sampled* from a model of the trained items:

* the joint vector of a trained item is ``z_i = [e_i, t_i]`` — its continuous embedding (what exact
  search and the re-rank score) and its row of the hash model's table (what the hash layer codes),
  so that a sampled item's code relates to its embedding as a trained item's does;
* a Gaussian mixture fits those vectors: ``k``-means (Faiss) into ``n / items_per_component``
  components (enough to hold the clusters, about 50 items each so that none memorises one item),
  each with the weight, mean and covariance of its members, the covariance shrunk toward its
  diagonal (``(1 - s) S + s diag(S)``, ``s = 0.1``: 128 dimensions from ~50 points is otherwise
  singular; more shrinkage weakens the embedding-table correlation the codes depend on);
* a catalogue item draws a component by weight, then ``z ~ N(mu_c, Sigma_c)``; its code is
  ``sign(W t + b)`` through the trained hash layer, packed like ``np.packbits(x >= 0, axis=1)``.

Every item is distinct (continuous draws), and :func:`near_duplicate_share` measures how many are
nearly so: the share of a sample of catalogue items whose nearest other catalogue item (Euclidean,
in the embedding space exact search ranks) is nearer than the 1st percentile of the real items'
nearest-neighbour distances. Queries stay the real users. What it can show: how each search's
speed and its agreement with exact search scale with the catalogue, on a geometry like the trained
model's. What it cannot: recommendation accuracy (sampled items have no interactions), nor the
codes' accuracy on real items: sampled at the real catalogue's size, the codes find a smaller share
of the exact top-20 than on the real items (``catalogue_sweep``'s ``fidelity`` records both), so the
sampled catalogues understate the codes against float indexes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ItemMixture", "fit_item_mixture", "near_duplicate_share"]


@dataclass(frozen=True)
class ItemMixture:
    """A fitted mixture of a trained model's item vectors ``[embedding, table row]`` and its hash layer."""

    weights: np.ndarray   # (C,) component probabilities
    means: np.ndarray     # (C, 2d)
    chol: np.ndarray      # (C, 2d, 2d) Cholesky factors of the shrunk covariances
    weight: np.ndarray    # (K, d) the hash layer
    bias: np.ndarray      # (K,)
    dim: int              # d: the embedding's (and the table row's) dimension

    @property
    def components(self) -> int:
        return len(self.weights)

    def sample(self, n_items: int, *, seed: int = 0, chunk: int = 65_536) -> tuple[np.ndarray, np.ndarray]:
        """``n_items`` sampled items: ``(embeddings float32 (n, d), packed codes uint8 (n, K/8))``.

        Deterministic in ``seed``: the draws come in fixed streams of ``chunk`` rows (one
        ``SeedSequence`` child each). Memory: the outputs, ``n (4 d + K/8)`` bytes, plus a chunk's work."""
        if isinstance(n_items, bool) or not isinstance(n_items, (int, np.integer)) or n_items < 0:
            raise ValueError(f"n_items must be a non-negative integer; got {n_items!r}")
        n_items, d = int(n_items), self.dim
        bits = self.weight.shape[0]
        emb = np.empty((n_items, d), np.float32)
        codes = np.empty((n_items, bits // 8), np.uint8)
        w_t = np.ascontiguousarray(self.weight.T, dtype=np.float32)
        streams = np.random.SeedSequence(seed).spawn(-(-n_items // chunk)) if n_items else []
        for s, r0 in enumerate(range(0, n_items, chunk)):
            r1 = min(r0 + chunk, n_items)
            rng = np.random.default_rng(streams[s])
            comp = rng.choice(self.components, size=r1 - r0, p=self.weights)
            eps = rng.standard_normal((r1 - r0, 2 * d))
            z = np.empty((r1 - r0, 2 * d))
            for c in np.unique(comp):
                rows = comp == c
                z[rows] = self.means[c] + eps[rows] @ self.chol[c].T
            emb[r0:r1] = z[:, :d]
            codes[r0:r1] = np.packbits(z[:, d:].astype(np.float32) @ w_t + self.bias >= 0, axis=1)
        return emb, codes


def fit_item_mixture(item_emb, item_table, weight, bias, *, items_per_component: int = 50, shrinkage: float = 0.1,
                     seed: int = 0) -> ItemMixture:
    """Fit :class:`ItemMixture` to a trained model's items (module docstring).

    ``item_emb (n, d)``, ``item_table (n, d)``: the continuous embeddings and the hash table's item
    rows; ``weight (K, d)``, ``bias (K,)``: the hash layer. ``items_per_component``: items per
    k-means component on average; ``shrinkage`` in ``[0, 1]``: the covariance's pull to its diagonal.
    """
    import faiss

    item_emb = np.asarray(item_emb, np.float64)
    item_table = np.asarray(item_table, np.float64)
    if item_emb.ndim != 2 or item_emb.shape != item_table.shape:
        raise ValueError(f"item_emb and item_table must be (n, d) of one shape; got {item_emb.shape} and "
                         f"{np.shape(item_table)}")
    if not 0 <= shrinkage <= 1:
        raise ValueError(f"shrinkage must be in [0, 1]; got {shrinkage!r}")
    if items_per_component < 2:
        raise ValueError(f"items_per_component must be at least 2; got {items_per_component!r}")
    n, d = item_emb.shape
    z = np.hstack([item_emb, item_table])
    k = max(1, n // int(items_per_component))
    km = faiss.Kmeans(2 * d, k, niter=25, seed=int(seed), min_points_per_centroid=1, max_points_per_centroid=n)
    km.train(np.ascontiguousarray(z, dtype=np.float32))
    assign = km.index.search(np.ascontiguousarray(z, dtype=np.float32), 1)[1][:, 0]
    floor = 1e-6 * z.var(axis=0).mean()  # keeps a one-member component's covariance positive definite
    weights, means, chol = [], [], []
    for c in range(k):
        members = z[assign == c]
        if len(members) == 0:
            continue
        mu = members.mean(axis=0)
        cov = np.cov(members, rowvar=False) if len(members) > 1 else np.zeros((2 * d, 2 * d))
        cov = (1 - shrinkage) * cov + shrinkage * np.diag(np.diag(cov)) + floor * np.eye(2 * d)
        weights.append(len(members))
        means.append(mu)
        chol.append(np.linalg.cholesky(cov))
    w = np.asarray(weights, np.float64)
    return ItemMixture(w / w.sum(), np.asarray(means), np.asarray(chol), np.asarray(weight, np.float32),
                       np.asarray(bias, np.float32), d)


def near_duplicate_share(real_emb, catalogue_emb, *, sample: int = 10_000, percentile: float = 1.0,
                         seed: int = 0) -> dict:
    """How near-duplicated a sampled catalogue is (module docstring): ``share`` of ``sample`` catalogue
    items whose nearest other catalogue item is nearer than ``threshold``, the ``percentile``-th
    percentile of the real items' nearest-neighbour distances (Euclidean, Faiss exact search)."""
    import faiss

    real = np.ascontiguousarray(real_emb, dtype=np.float32)
    cat = np.ascontiguousarray(catalogue_emb, dtype=np.float32)
    index = faiss.IndexFlatL2(real.shape[1])
    index.add(real)
    real_nn = np.sqrt(np.maximum(index.search(real, 2)[0][:, 1], 0))
    threshold = float(np.percentile(real_nn, percentile))
    rows = np.random.default_rng(seed).choice(len(cat), size=min(int(sample), len(cat)), replace=False)
    index = faiss.IndexFlatL2(cat.shape[1])
    index.add(cat)
    dist, ids = index.search(cat[rows], 2)
    # the nearest *other* item: the first hit that is not the query itself
    other = np.where(ids[:, 0] == rows, dist[:, 1], dist[:, 0])
    nearest = np.sqrt(np.maximum(other, 0))
    return {"share": float(np.mean(nearest < threshold)), "threshold": threshold, "sample": int(len(rows)),
            "percentile": float(percentile), "median_nearest": float(np.median(nearest)),
            "median_nearest_real": float(np.median(real_nn))}
