"""A distilled searcher: the item codes, the query transform, and search in each mode; saved and loaded.

The query side is a function of a user's embedding from the same model, so a user who took no part in
distillation is served like any other: the hash layer's pre-activation ``a = W e_u + b`` (``K``
reals). Search modes (:data:`MODES`):

``hamming``       ``sign(a)`` packed, items ranked by Hamming distance (popcount), score ``⟨sign(a), b_i⟩``;
``asymmetric``    the user's embedding ``e_u`` itself against the items' additive codes (``K/8`` bytes an item,
                  :mod:`hashrec_utils.hashing.additive`), ``⟨e_u, Σ_m C_m[c_im]⟩`` by table lookups
                  (:class:`~hashrec_utils.retrieval.additive.AdditiveCodeIndex`); the default. A searcher
                  without additive codes scores ``a`` against the ±1 codes instead
                  (:class:`~hashrec_utils.retrieval.AsymmetricIndex`);
``hierarchical``  the top-``C`` of ``asymmetric`` re-ranked by the model's own ``⟨e_u, e_i⟩``; needs the item
                  embeddings, kept only when distilled with ``keep_float`` (``--keep-float``).

``hamming`` is meaningful for codes whose bits are signs of one projection each (a trained student);
a student kept at its transform-code start (:mod:`hashrec_utils.hashing.transform`: several bits an
axis, weighted unequally) is searched by the modes that score the real query, ``asymmetric`` and
``hierarchical``.

A folder holds ``searcher.npz`` (``weight (K, d)``, ``bias (K,)``, ``item_codes (n_items, K/8)``
packed ``np.uint8``, ``item_additive (n_items, K/8) np.uint8`` and ``codebooks (K/8, 256, d)``, optionally
``item_emb (n_items, d)``) and, written last, ``searcher.json``
(:data:`FORMAT_VERSION`, bits, dim, items, which arrays). Both are written atomically; :func:`load`
refuses another format version or arrays whose shapes disagree with the manifest, naming them.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..hashing.codes import pack_codes
from ..retrieval import AsymmetricIndex, HammingIndex, HierarchicalIndex
from ..retrieval.additive import AdditiveCodeIndex
from ..retrieval.indexes import rerank_candidates
from ..utils import atomic_write, read_json, write_json
from .inputs import MANIFEST, _check_matrix, check_interactions

__all__ = ["Searcher", "load", "MODES", "FORMAT_VERSION", "ARRAYS"]

MODES = ("hamming", "asymmetric", "hierarchical")
# bump when what a folder holds, or how search reads it, changes: load() refuses other versions
# (2: hierarchical search re-ranks the asymmetric scan's candidates, no longer Hamming's;
#  3: asymmetric search scores the user's embedding against additive item codes)
FORMAT_VERSION = 3
ARRAYS = "searcher.npz"


class Searcher:
    """Top-``k`` items for user embeddings of a model, from 64-bit (``bits``) item codes.

    ``Searcher(weight (K, d), bias (K,), item_codes (n, K/8) uint8, item_emb=None, additive=None,
    candidates=100)`` (``additive``: the pair ``(codes (n, K/8) uint8, codebooks (K/8, 256, d))``);
    :meth:`search` answers ``(scores float32 (nq, k), ids int64 (nq, k))`` best first (module docstring).
    """

    def __init__(self, weight: np.ndarray, bias: np.ndarray, item_codes: np.ndarray, item_emb: np.ndarray | None = None,
                 additive: tuple | None = None, *, candidates: int = 100, threads: int | None = None,
                 info: dict | None = None):
        self.weight = np.ascontiguousarray(weight, dtype=np.float32)
        self.bias = np.ascontiguousarray(bias, dtype=np.float32)
        self.item_codes = np.ascontiguousarray(item_codes, dtype=np.uint8)
        self.bits, self.dim = self.weight.shape
        if self.bias.shape != (self.bits,) or self.item_codes.ndim != 2 or self.item_codes.shape[1] * 8 != self.bits:
            raise ValueError(f"weight {self.weight.shape}, bias {self.bias.shape} and item_codes {self.item_codes.shape} "
                             f"disagree: need (K, d), (K,) and (n_items, K/8)")
        self.item_emb = None if item_emb is None else np.ascontiguousarray(item_emb, dtype=np.float32)
        if self.item_emb is not None and self.item_emb.shape != (len(self.item_codes), self.dim):
            raise ValueError(f"item_emb must have shape {(len(self.item_codes), self.dim)}; got {self.item_emb.shape}")
        self.additive = None
        if additive is not None:
            codes, books = (np.ascontiguousarray(additive[0], dtype=np.uint8),
                            np.ascontiguousarray(additive[1], dtype=np.float32))
            if codes.shape != (len(self.item_codes), self.bits // 8) or books.shape != (self.bits // 8, 256, self.dim):
                raise ValueError(f"additive codes {codes.shape} and codebooks {books.shape} disagree: need "
                                 f"{(len(self.item_codes), self.bits // 8)} and {(self.bits // 8, 256, self.dim)}")
            self.additive = (codes, books)
        self.candidates, self.threads, self.info = int(candidates), threads, dict(info or {})
        self._indexes: dict = {}

    @property
    def n_items(self) -> int:
        return len(self.item_codes)

    @property
    def modes(self) -> tuple[str, ...]:
        """The modes this searcher answers (``hierarchical`` only with the item embeddings)."""
        return MODES if self.item_emb is not None else MODES[:2]

    def _user(self, user_emb) -> np.ndarray:
        """User embeddings ``(nq, d)`` checked (finite floats of this searcher's dim) as float32."""
        user = _check_matrix(user_emb, "user_emb")
        if user.shape[1] != self.dim:
            raise ValueError(f"user_emb has dim {user.shape[1]}; this searcher was distilled from dim {self.dim}")
        return user

    def query(self, user_emb) -> np.ndarray:
        """``a = W e_u + b`` (float32 ``(nq, K)``) of user embeddings ``(nq, d)``."""
        return self._preact(self._user(user_emb))

    def _preact(self, user: np.ndarray) -> np.ndarray:
        return user @ self.weight.T + self.bias

    def query_codes(self, user_emb) -> np.ndarray:
        """``sign(W e_u + b)`` packed, ``np.uint8 (nq, K/8)``."""
        return pack_codes(self.query(user_emb))

    def _index(self, mode: str):
        if mode not in self._indexes:
            if mode == "hamming":
                self._indexes[mode] = HammingIndex(self.bits, self.threads).build(self.item_codes)
            elif mode == "asymmetric" and self.additive is not None:
                self._indexes[mode] = AdditiveCodeIndex(self.threads).build(self.additive)
            elif mode == "asymmetric":
                self._indexes[mode] = AsymmetricIndex(self.bits, self.threads).build(self.item_codes)
            else:
                self._indexes[mode] = HierarchicalIndex(self.bits, self.candidates, self.threads,
                                                        source="asymmetric").build((self.item_codes, self.item_emb))
        return self._indexes[mode]

    def search(self, user_emb, k: int, exclude=None, mode: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items of each user embedding: ``(scores, ids)``, best first, ``exclude`` (a CSR of seen
        items, one row per query) never returned, ties by the smaller id, padding ``-inf`` / ``-1``.

        ``mode``: ``asymmetric`` (default), ``hamming`` (scores: the code inner product ``K − 2·distance``)
        or ``hierarchical`` (scores: ``⟨e_u, e_i⟩``; needs the item embeddings)."""
        mode = "asymmetric" if mode is None else mode
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
        if mode == "hierarchical" and self.item_emb is None:
            raise ValueError("mode 'hierarchical' re-ranks with the item embeddings, which this searcher does not hold: "
                             "distill with keep_float=True (--keep-float)")
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or k <= 0:
            raise ValueError(f"k must be a positive integer; got {k!r}")
        if k > self.n_items:
            raise ValueError(f"k = {k} exceeds the {self.n_items} items of this searcher")
        user = self._user(user_emb)
        if exclude is not None:
            exclude = check_interactions(exclude, len(user), self.n_items, "exclude")
        if mode == "hamming":
            dist, ids = self._index(mode).search(pack_codes(self._preact(user)), k, exclude)
            scores = np.where(ids >= 0, self.bits - 2.0 * dist, -np.inf).astype(np.float32)
            return scores, ids
        if self.additive is None:  # ±1 codes alone: both other modes score the student's query a
            a = self._preact(user)
            return self._index(mode).search(a if mode == "asymmetric" else (a, user), k, exclude)
        if mode == "asymmetric":
            return self._index(mode).search(user, k, exclude)
        _, cand = self._index("asymmetric").search(user, max(k, self.candidates), exclude)
        return rerank_candidates(cand, user, self.item_emb, k)

    # ---- files ----------------------------------------------------------------------------------

    def save(self, out: str | os.PathLike) -> Path:
        """Write ``searcher.npz`` then ``searcher.json`` into ``out`` (atomically, the manifest last)."""
        out = Path(out)
        arrays = {"weight": self.weight, "bias": self.bias, "item_codes": self.item_codes}
        if self.additive is not None:
            arrays["item_additive"], arrays["codebooks"] = self.additive
        if self.item_emb is not None:
            arrays["item_emb"] = self.item_emb
        with atomic_write(out / ARRAYS, "wb") as fh:
            np.savez(fh, **arrays)
        write_json(out / MANIFEST, {"format_version": FORMAT_VERSION, "bits": self.bits, "dim": self.dim,
                                    "n_items": self.n_items, "candidates": self.candidates,
                                    "arrays": {k: list(v.shape) for k, v in arrays.items()}, "info": self.info})
        return out


def load(folder: str | os.PathLike, *, threads: int | None = None) -> Searcher:
    """The :class:`Searcher` saved in ``folder``; one clear error for a missing or foreign folder,
    another format version, or arrays whose shapes disagree with the manifest."""
    folder = Path(folder)
    manifest = folder / MANIFEST
    if not manifest.is_file():
        raise FileNotFoundError(f"{folder} holds no {MANIFEST}: not a distilled searcher (or its writing did not finish)")
    meta = read_json(manifest)
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{folder} was written in searcher format {meta.get('format_version')!r}; this code reads "
                         f"format {FORMAT_VERSION}: distill again")
    with np.load(folder / ARRAYS, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    expected = {k: tuple(v) for k, v in meta["arrays"].items()}
    have = {k: v.shape for k, v in arrays.items()}
    if expected != have:
        raise ValueError(f"{folder}/{ARRAYS} does not match {MANIFEST}: arrays {have}, manifest {expected}")
    if (meta["bits"], meta["dim"]) != arrays["weight"].shape or meta["n_items"] != len(arrays["item_codes"]):
        raise ValueError(f"{folder}: weight {arrays['weight'].shape} and {len(arrays['item_codes'])} item codes disagree "
                         f"with the manifest's bits {meta['bits']}, dim {meta['dim']}, items {meta['n_items']}")
    additive = (arrays["item_additive"], arrays["codebooks"]) if "item_additive" in arrays else None
    return Searcher(arrays["weight"], arrays["bias"], arrays["item_codes"], arrays.get("item_emb"), additive,
                    candidates=meta.get("candidates", 100), threads=threads, info=meta.get("info"))

