"""Retrieval: exact Hamming top-k, hierarchical search, and Faiss indexes behind one interface.

Every index answers ``build(items)`` then ``search(queries, k, exclude=None) -> (D, I)``:
``D``, ``I`` of shape ``(n_queries, k)``, best first; ``exclude`` an optional
CSR ``(n_queries, n_items)`` of items never to return (train items); rows
with fewer than ``k`` admissible items are padded with ``I = -1`` and the
worst value in ``D`` (``bits + 1`` for Hamming distances, ``-inf`` for inner
products). ``memory_bytes()`` is what the index holds.
:class:`HierarchicalIndex` takes both representations as pairs:
``build((codes, emb))``, ``search((codes, emb), k, exclude)``.

Binary codes travel packed: ``np.uint8`` rows from ``np.packbits`` (Faiss's
layout), ``K/8`` bytes per row; the Hamming distance of codes ``x, y`` is
``popcount(x XOR y)``.

:class:`HammingIndex` is hashrec's own exact kernel (numba). Faiss's
``IndexBinaryFlat`` spends, per item and query, a load, an XOR and a scalar
``popcnt`` per 64-bit word, then a heap comparison. Ours

* stores the codes byte-sliced in blocks of 32 items, so that one 32-byte
  vector holds the same code byte of 32 items;
* turns each query byte ``c`` into two 16-entry tables,
  ``popcount(c XOR x) = T_lo[x & 15] + T_hi[x >> 4]``, looked up 32 at a time
  by AVX2's ``pshufb``: per code byte, 32 items cost two lookups and two byte
  additions per query, and the nibble split of the items is shared by a group
  of 8 queries whose running sums stay in registers (CPUs without AVX2 get
  LLVM's vector ``ctpop`` of ``x XOR c`` instead: the same results);
* walks a task of 16 queries over one L2-sized tile of items at a time;
* selects the top k by counting. Distances are integers ``0..K``: a
  histogram of the first few hundred distances gives the initial k-th
  distance ``t`` at once, and from then on a block is looked at only if one
  of its 32 x 8 sums is below its query's ``t`` (one compare per query and
  block); a histogram of the accepted distances keeps ``t`` the running
  k-th distance. The final ranking is a counting sort.

Ties are broken by the smaller item id, exactly: items arrive in id order, and
an item that only ties the k-th distance can never displace a smaller id.
``tests/retrieval/test_retrieval.py`` checks distances against Faiss and ids against a
brute-force reference; ``benchmarks/bench_retrieval.py`` times it against
Faiss.
"""
from __future__ import annotations

from types import MappingProxyType

from . import asymmetric, exact, fused, indexes, kernel
from .asymmetric import AsymmetricIndex, asymmetric_scores, asymmetric_topk
from .exact import ExactIndex, exact_topk
from .faiss import (FAISS_INDEXES, FaissIndex, IndexBinaryFlat, IndexBinaryHNSW, IndexBinaryIVF,
                    IndexBinaryMultiHash, IndexFlatIP, IndexHNSWFlat, IndexIVFFlat, IndexIVFPQ, IndexNSGFlat)
from .rabitq import (RABITQ_INDEXES, IndexHNSWRaBitQ, IndexIVFRaBitQ, IndexIVFRaBitQFastScan, IndexRaBitQ,
                     IndexRaBitQFastScan)
from .indexes import HammingIndex, HierarchicalIndex, continuous_topk, hierarchical_topk
from .ivf_asymmetric import IVFAsymmetricIndex
from .scaled_asymmetric import ScaledAsymmetricIndex
from .kernel import hamming_candidates, hamming_distances, hamming_topk

__all__ = [
    "exact_topk",
    "ExactIndex",
    "hamming_distances",
    "hamming_topk",
    "hamming_candidates",
    "hierarchical_topk",
    "continuous_topk",
    "HammingIndex",
    "HierarchicalIndex",
    "AsymmetricIndex",
    "asymmetric_topk",
    "IVFAsymmetricIndex",
    "ScaledAsymmetricIndex",
    "asymmetric_scores",
    "FaissIndex",
    "IndexFlatIP",
    "IndexHNSWFlat",
    "IndexNSGFlat",
    "IndexIVFFlat",
    "IndexIVFPQ",
    "IndexBinaryFlat",
    "IndexBinaryHNSW",
    "IndexBinaryIVF",
    "IndexBinaryMultiHash",
    "make_index",
    "INDEXES",
    "FAISS_INDEXES",
    "RABITQ_INDEXES",
    "IndexRaBitQ",
    "IndexRaBitQFastScan",
    "IndexIVFRaBitQ",
    "IndexIVFRaBitQFastScan",
    "IndexHNSWRaBitQ",
    "KERNEL_VERSIONS",
]

# The version of each kernel that evaluation's search modes call (part of a run's evaluation
# identity, :func:`hashrec_utils.evaluation.evaluation_components`); each lives beside its code.
KERNEL_VERSIONS = MappingProxyType({"exact": exact.VERSION, "hamming": kernel.VERSION,
                                    "hierarchical": indexes.VERSION, "fused": fused.VERSION,
                                    "asymmetric": asymmetric.VERSION})

INDEXES = ("exact", "hamming", "asymmetric", "ivf_asymmetric", "hierarchical", *FAISS_INDEXES, *RABITQ_INDEXES)


def make_index(name: str, *, bits: int = 64, threads: int | None = None, **params):
    """An index by name.

    ``exact`` -> :class:`ExactIndex` (exact float search by GEMM, ``memory_mb``);
    ``hamming`` -> :class:`HammingIndex` (``bits``); ``asymmetric`` -> :class:`AsymmetricIndex`
    (``bits``; float queries against packed codes); ``ivf_asymmetric`` -> :class:`IVFAsymmetricIndex`
    (``bits``, ``nlist``, ``nprobe``, ``candidates``: an inverted file over the embeddings whose lists
    are scanned asymmetrically, re-ranked by the float inner product when ``candidates`` is set);
    ``scaled_asymmetric`` -> :class:`ScaledAsymmetricIndex` (``bits``; items are pairs of codes and a
    positive scale each, kept as a log-scale byte); ``hierarchical`` ->
    :class:`HierarchicalIndex` (``bits``, ``candidates``, ``source``: ``hamming`` or ``asymmetric``); ``flat_ip``,
    ``hnsw``, ``nsg``, ``ivf_flat``, ``ivf_pq``, ``binary_flat``,
    ``binary_hnsw``, ``binary_ivf``, ``binary_multihash`` -> the Faiss wrapper
    of that name (``bits`` is taken from the codes at build time); ``rabitq``, ``rabitq_fastscan``,
    ``ivf_rabitq``, ``ivf_rabitq_fastscan``, ``hnsw_rabitq`` -> Faiss's RaBitQ family
    (:mod:`hashrec_utils.retrieval.rabitq`).
    """
    if name == "exact":
        extra = set(params) - {"memory_mb"}
        if extra:
            raise ValueError(f"exact takes memory_mb (besides threads); got {', '.join(sorted(extra))}")
        return ExactIndex(threads, params.get("memory_mb", 256))
    if name == "hamming":
        if params:
            raise ValueError(f"hamming takes no parameters besides bits and threads; got {', '.join(params)}")
        return HammingIndex(bits, threads)
    if name == "asymmetric":
        if params:
            raise ValueError(f"asymmetric takes no parameters besides bits and threads; got {', '.join(params)}")
        return AsymmetricIndex(bits, threads)
    if name == "scaled_asymmetric":
        if params:
            raise ValueError(f"scaled_asymmetric takes no parameters besides bits and threads; got {', '.join(params)}")
        return ScaledAsymmetricIndex(bits, threads)
    if name == "ivf_asymmetric":
        extra = set(params) - {"nlist", "nprobe", "candidates"}
        if extra or "nlist" not in params:
            raise ValueError(f"ivf_asymmetric takes nlist (required), nprobe and candidates (besides bits and threads); "
                             f"got {', '.join(sorted(params)) or 'none'}")
        return IVFAsymmetricIndex(bits, threads=threads, **params)
    if name == "hierarchical":
        extra = set(params) - {"candidates", "source"}
        if extra:
            raise ValueError(f"hierarchical takes candidates and source (besides bits and threads); got "
                             f"{', '.join(sorted(extra))}")
        return HierarchicalIndex(bits, params.get("candidates", 100), threads, source=params.get("source", "hamming"))
    if name in FAISS_INDEXES:
        return FAISS_INDEXES[name](threads=threads, **params)
    if name in RABITQ_INDEXES:
        return RABITQ_INDEXES[name](threads=threads, **params)
    raise ValueError(f"unknown index {name!r}; choose one of {', '.join(INDEXES)}")
