"""Faiss's RaBitQ family behind hashrec's interface: the training-free 1-bit quantizer of float vectors.

RaBitQ (Gao & Long, SIGMOD 2024) stores each vector as ``d`` bits — the signs of its
randomly rotated residual from a centroid — plus a few float factors per vector, and estimates
``<q, x>`` from a query quantised to ``qb`` bits a dimension (Faiss's ``qb``; 0 = float query).
It is the training-free competitor of learned binary codes at about the same bytes per item.
Faiss 1.15 (pinned) offers, and hashrec wraps, with the parameters each sweep turns:

============================  =================================  ===============================
name                          Faiss index                        swept
============================  =================================  ===============================
``rabitq``                    ``IndexRaBitQ``                    ``qb`` (search)
``rabitq_fastscan``           ``IndexRaBitQFastScan``            ``qb`` (search)
``ivf_rabitq``                ``IndexIVFRaBitQ``                 ``nlist`` (build), ``nprobe``, ``qb``
``ivf_rabitq_fastscan``       ``IndexIVFRaBitQFastScan``         ``nlist`` (build), ``nprobe``, ``qb``
``hnsw_rabitq``               ``IndexHNSWRaBitQ``                ``M`` (build), ``efSearch``, ``qb``
============================  =================================  ===============================

Each takes ``refine`` (build, default ``False``): wrapped in Faiss's ``IndexRefineFlat``, the top
``k_factor * k`` of the RaBitQ estimate are re-ranked by the exact float inner product (the
float vectors are then stored too). Flat and IVF indexes search by inner product natively;
Faiss's HNSW-RaBitQ is L2-only, so ``hnsw_rabitq`` searches the MIPS-to-L2 lifted vectors
(:class:`~hashrec_utils.retrieval.faiss._GraphFloat`), and its scores are mapped back to ``<q, x>``.
"""
from __future__ import annotations

from .faiss import FaissIndex, _GraphFloat


class _RaBitQ(FaissIndex):
    """Shared: ``refine`` (IndexRefineFlat) and the search-time ``qb`` / ``k_factor``."""

    BUILD = {"refine": False}
    SEARCH = {"qb": 4, "k_factor": 4}

    def _make(self, dim: int):
        import faiss

        self._base_index = self._make_base(dim)  # held here: the refine wrapper does not keep it alive
        return faiss.IndexRefineFlat(self._base_index) if self.params["refine"] else self._base_index

    def _apply_search_params(self):
        base = self._base_index
        self._quantizer(base).qb = int(self.params["qb"])
        if self.params["refine"]:
            self.index.k_factor = float(self.params["k_factor"])
        self._apply_base_params(base)

    def _apply_base_params(self, base) -> None:
        pass

    def _quantizer(self, base):
        """The Faiss object whose ``qb`` sets the query's bits."""
        return base


class IndexRaBitQ(_RaBitQ):
    """Faiss ``IndexRaBitQ``: a flat scan of 1-bit RaBitQ codes (``d/8`` bytes + factors per item)."""

    name = "rabitq"

    def _make_base(self, dim):
        import faiss

        return faiss.IndexRaBitQ(dim, faiss.METRIC_INNER_PRODUCT)


class IndexRaBitQFastScan(_RaBitQ):
    """Faiss ``IndexRaBitQFastScan``: the same codes scanned 32 at a time by SIMD table lookups."""

    name = "rabitq_fastscan"

    def _make_base(self, dim):
        import faiss

        return faiss.IndexRaBitQFastScan(dim, faiss.METRIC_INNER_PRODUCT)


class IndexIVFRaBitQ(_RaBitQ):
    """Faiss ``IndexIVFRaBitQ``: ``nlist`` k-means cells (inner product), RaBitQ codes of the residuals."""

    name = "ivf_rabitq"
    BUILD = {"nlist": 64, "refine": False}
    SEARCH = {"nprobe": 8, "qb": 4, "k_factor": 4}

    def _make_base(self, dim):
        import faiss

        return faiss.IndexIVFRaBitQ(faiss.IndexFlatIP(dim), dim, self.params["nlist"], faiss.METRIC_INNER_PRODUCT)

    def _apply_base_params(self, base):
        base.nprobe = int(self.params["nprobe"])


class IndexIVFRaBitQFastScan(IndexIVFRaBitQ):
    """Faiss ``IndexIVFRaBitQFastScan``: IVF cells scanned by SIMD table lookups."""

    name = "ivf_rabitq_fastscan"

    def _make_base(self, dim):
        import faiss

        return faiss.IndexIVFRaBitQFastScan(faiss.IndexFlatIP(dim), dim, self.params["nlist"],
                                            faiss.METRIC_INNER_PRODUCT)


class IndexHNSWRaBitQ(_GraphFloat, _RaBitQ):
    """Faiss ``IndexHNSWRaBitQ``: an HNSW graph over RaBitQ codes (L2 on MIPS-lifted vectors)."""

    name = "hnsw_rabitq"
    BUILD = {"M": 32, "efConstruction": 80, "refine": False}
    SEARCH = {"efSearch": 64, "qb": 4, "k_factor": 4}

    def __init__(self, *, threads: int | None = None, **params):
        super().__init__(threads=threads, mips_l2=True, **params)

    def _make(self, dim: int):
        return _RaBitQ._make(self, dim + 1)

    def _make_base(self, dim):
        import faiss

        index = faiss.IndexHNSWRaBitQ(dim, self.params["M"])
        index.hnsw.efConstruction = self.params["efConstruction"]
        return index

    def _apply_base_params(self, base):
        base.hnsw.efSearch = int(self.params["efSearch"])

    def _quantizer(self, base):
        import faiss

        return faiss.downcast_index(base.storage)


RABITQ_INDEXES = {cls.name: cls for cls in (IndexRaBitQ, IndexRaBitQFastScan, IndexIVFRaBitQ, IndexIVFRaBitQFastScan,
                                            IndexHNSWRaBitQ)}
