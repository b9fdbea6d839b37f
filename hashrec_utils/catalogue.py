"""A scaled catalogue with a trained model's geometry (10^5 ... 10^7 items), and reading a hash run.

:func:`resample_catalogue` grows (or shrinks) a trained item set to ``n_items``
items for speed studies at catalogue sizes no dataset has: item ``j`` is a
noisy copy of a trained item ``r_j ~ U{0..n0-1}`` (with replacement),

    e'_j = e_{r_j} + eps_j,    t'_j = t_{r_j} + eps_j,    eps_j ~ N(0, diag(noise * sigma)^2),

with ``sigma_c`` the standard deviation of dimension ``c`` of ``item_emb``, the
same ``eps_j`` added to the continuous LightGCN embedding ``e`` (what
re-ranking and exact search use) and to the hash-table row ``t`` (what the hash
layer reads); its code is ``sign(W t'_j + b)`` (``sign(0) = +1``), packed like
``np.packbits(x >= 0, axis=1)``. So the neighbourhoods of the trained model
are replicated, blurred by ``noise``.

:func:`load_hash_run` reads the parts it needs from a hash run folder
written by :func:`hashrec_utils.training.run`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["resample_catalogue", "load_hash_run", "catalogue_sweep", "CATALOGUE_METHODS"]

def _float2d(x, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2 or not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{name} must be a 2-D floating-point array; got shape {x.shape}, dtype {x.dtype}")
    return x


def resample_catalogue(item_emb, item_table, weight, bias, n_items: int, *, noise: float = 0.05, seed: int = 0,
                       chunk: int = 65_536) -> tuple[np.ndarray, np.ndarray]:
    """``n_items`` items resampled from a trained model: ``(emb float32 (n_items, d), codes uint8 (n_items, K/8))``.

    ``item_emb (n0, d)``: the trained continuous item embeddings; ``item_table
    (n0, d)``: the items' rows of the hash model's table; ``weight (K, d)``,
    ``bias (K,)``: the hash layer (``K`` a multiple of 8). See the module
    docstring for the maths. Deterministic in ``seed``: the draws come in
    fixed streams of 65,536 rows (one ``SeedSequence`` child each), so
    ``chunk`` changes the memory, not the numbers.

    Memory: the outputs, ``n_items * (4 d + K/8)`` bytes (10^7 items, d = 64,
    K = 64: 2.56 GB + 80 MB), plus per chunk of ``c`` rows about
    ``c * (12 d + 5 K + 8)`` bytes of work arrays (the default chunk, 2^18
    rows, d = K = 64: about 285 MB).
    """
    item_emb = _float2d(item_emb, "item_emb")
    item_table = _float2d(item_table, "item_table")
    weight = _float2d(weight, "weight")
    bias = np.asarray(bias)
    n0, d = item_emb.shape
    if item_table.shape != item_emb.shape:
        raise ValueError(f"item_table has shape {item_table.shape} but item_emb has {item_emb.shape}")
    if n0 == 0:
        raise ValueError("item_emb has no rows to resample from")
    bits = weight.shape[0]
    if weight.shape[1] != d:
        raise ValueError(f"weight must have shape (K, {d}); got {weight.shape}")
    if bits % 8:
        raise ValueError(f"weight has {bits} rows (bits); it must be a multiple of 8 to pack the codes")
    if bias.shape != (bits,):
        raise ValueError(f"bias must have shape ({bits},); got {bias.shape}")
    if isinstance(n_items, bool) or not isinstance(n_items, (int, np.integer)) or n_items < 0:
        raise ValueError(f"n_items must be a non-negative integer; got {n_items!r}")
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be a finite number >= 0; got {noise!r}")
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk <= 0:
        raise ValueError(f"chunk must be a positive integer; got {chunk!r}")
    n_items = int(n_items)
    chunk = int(chunk)

    sigma = (float(noise) * item_emb.astype(np.float64).std(axis=0)).astype(np.float32)
    src_emb = item_emb.astype(np.float32, copy=False)
    src_table = item_table.astype(np.float32, copy=False)
    w_t = np.ascontiguousarray(weight.astype(np.float32).T)  # (d, K)
    b = bias.astype(np.float32)
    emb = np.empty((n_items, d), np.float32)
    codes = np.empty((n_items, bits // 8), np.uint8)
    streams = np.random.SeedSequence(seed).spawn(-(-n_items // chunk)) if n_items else []
    for i, r0 in enumerate(range(0, n_items, chunk)):
        r1 = min(r0 + chunk, n_items)
        rng = np.random.default_rng(streams[i])
        src = rng.integers(0, n0, r1 - r0)
        eps = rng.standard_normal((r1 - r0, d), dtype=np.float32)
        eps *= sigma
        np.add(src_emb[src], eps, out=emb[r0:r1])
        eps += src_table[src]  # the noisy table rows
        logits = eps @ w_t
        logits += b
        codes[r0:r1] = np.packbits(logits >= 0, axis=1)
    return emb, codes


_EMBEDDING_KEYS = ("user", "item", "user_codes", "item_codes")
_WEIGHT_KEYS = ("hash.linear.weight", "hash.linear.bias", "encoder.embedding.weight", "encoder.initial")


def load_hash_run(folder) -> dict:
    """The arrays of a hash run folder (``embeddings.npz`` and ``checkpoint.pt``) as NumPy.

    Returns ``user (n_users, d)``, ``item (n_items, d)`` float32 (the
    continuous embeddings), ``user_codes``, ``item_codes`` (packed uint8),
    ``item_table (n_items, d)`` and ``user_table`` (the rows of
    ``encoder.embedding.weight``, the ``(n_users + n_items, d)`` table),
    ``initial`` (``encoder.initial``, the table's starting point), ``weight
    (K, d)`` and ``bias (K,)`` (``hash.linear``). The weights are those the run
    kept: ``best_state`` if it is not ``None``, else ``model``. Raises
    ``FileNotFoundError`` / ``KeyError`` naming the missing file or key.
    """
    import torch

    folder = Path(folder)
    npz_path, ckpt_path = folder / "embeddings.npz", folder / "checkpoint.pt"
    for path in (npz_path, ckpt_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file (a hash run folder holds embeddings.npz and checkpoint.pt)")
    with np.load(npz_path) as npz:
        missing = [key for key in _EMBEDDING_KEYS if key not in npz.files]
        if missing:
            raise KeyError(f"{npz_path} has no {', '.join(missing)} (has {', '.join(npz.files)}); is it a hash run?")
        out = {key: npz[key] for key in _EMBEDDING_KEYS}
    saved = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    if not isinstance(saved, dict) or "model" not in saved:
        raise KeyError(f"{ckpt_path} has no 'model' state (not a train.py checkpoint)")
    state = saved["best_state"] if saved.get("best_state") is not None else saved["model"]
    missing = [key for key in _WEIGHT_KEYS if key not in state]
    if missing:
        raise KeyError(f"{ckpt_path}: the kept weights have no {', '.join(missing)}; is it a TableEncoder hash model?")
    arrays = {key: state[key].detach().float().cpu().numpy() for key in _WEIGHT_KEYS}
    table = arrays["encoder.embedding.weight"]
    n_users, n_items = len(out["user"]), len(out["item"])
    if table.shape[0] != n_users + n_items:
        raise ValueError(f"{ckpt_path}: encoder.embedding.weight has {table.shape[0]} rows; embeddings.npz has "
                         f"{n_users} users + {n_items} items")
    out.update(user_table=table[:n_users], item_table=table[n_users:], initial=arrays["encoder.initial"],
               weight=arrays["hash.linear.weight"], bias=arrays["hash.linear.bias"])
    return out


# Index families of the scaled-catalogue panel (notebook 04), by make_index name and its label.
CATALOGUE_METHODS = (
    ("hamming", "hashrec Hamming"), ("hierarchical", "hashrec hierarchical"), ("exact", "Exact float (GEMM)"),
    ("hnsw", "Faiss HNSW"), ("ivf_pq", "Faiss IVF-PQ"), ("binary_flat", "Faiss BinaryFlat"),
    ("binary_ivf", "Faiss BinaryIVF"), ("binary_multihash", "Faiss BinaryMultiHash"),
)
# Graph indexes build in O(n log n) with a large constant: on two cores HNSW over 10^7 items takes hours.
GRAPH_MAX_ITEMS = 1_000_000


def catalogue_sweep(run: dict, sizes, *, n_queries: int = 1000, k: int = 20, candidates=(100, 400), threads: int = 2,
                    noise: float = 0.05, seed: int = 0, repeats: int = 2, verbose: bool = False):
    """Throughput and accuracy of every index on catalogues of ``sizes`` items with a trained model's geometry.

    ``run``: :func:`load_hash_run` of a trained hash model. For each size the items are resampled
    (:func:`resample_catalogue`); the queries are the first ``n_queries`` real users (their
    LightGCN embeddings and their codes). ``recall_vs_exact`` is the share of the exact float top-``k``
    (inner product over the resampled embeddings) each search finds; ``qps`` is queries per second at
    plain ``k`` (the resampled items carry no train interactions, so nothing is excluded), best of
    ``repeats``; ``bytes_per_item`` the index's memory. Settings follow
    :func:`hashrec_utils.bench.scaling_params`; hierarchical search sweeps ``candidates``; HNSW runs
    up to :data:`GRAPH_MAX_ITEMS`. Returns one row per (size, method, setting).
    """
    import pandas as pd

    from .bench import scaling_params, sweep
    from .retrieval import exact_topk, make_index

    q_emb = np.ascontiguousarray(run["user"][:n_queries], dtype=np.float32)
    q_codes = np.ascontiguousarray(run["user_codes"][:n_queries])
    bits = q_codes.shape[1] * 8
    frames = []
    for n in sizes:
        emb, codes = resample_catalogue(run["item"], run["item_table"], run["weight"], run["bias"], int(n),
                                        noise=noise, seed=seed)
        truth = exact_topk(q_emb, emb, k, threads=threads)[1]
        for name, label in CATALOGUE_METHODS:
            if name == "hnsw" and n > GRAPH_MAX_ITEMS:
                continue
            binary = name in ("hamming", "hierarchical") or name.startswith("binary")
            factory = (lambda name=name, **p: make_index(name, bits=bits, threads=threads, **p)) if binary else \
                      (lambda name=name, **p: make_index(name, threads=threads, **p))
            items = (codes, emb) if name == "hierarchical" else codes if binary else emb
            queries = (q_codes, q_emb) if name == "hierarchical" else q_codes if binary else q_emb
            runs = ([(f"{label} C={c}", {"candidates": c}) for c in candidates] if name == "hierarchical"
                    else [(label, scaling_params(name, int(n)))])
            for method, params in runs:
                frame = sweep(factory, [params], queries, truth, items=items, k=k, repeats=repeats, method=method)
                frames.append(frame.assign(items=int(n), source="notebook 04 (trained geometry)"))
                if verbose:
                    print(f"{n:>10,} {method:<28} qps {frame['qps'].max():>12,.0f}  "
                          f"recall {frame['recall_vs_exact'].max():.3f}", flush=True)
        del emb, codes
    return pd.concat(frames, ignore_index=True)
