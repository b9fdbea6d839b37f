"""Large catalogues with a trained model's geometry, reading a hash run, and the speed sweep over them.

:func:`catalogue_sweep` (notebook 04) measures every index on catalogues of 10^4 ... 10^6 items
sampled from a Gaussian mixture of a trained model's items (:mod:`hashrec_utils.catalogue_mixture`:
distinct items, near-duplicates measured), queried by real users; :func:`operating_points` reads
where each method stands at equal accuracy.

:func:`resample_catalogue`, the earlier catalogue, makes noisy copies of trained items
(``e'_j = e_{r_j} + eps_j``, ``t'_j = t_{r_j} + eps_j``, ``eps_j ~ N(0, diag(noise * sigma)^2)``,
code ``sign(W t'_j + b)``); at small noise its items are clumps of near-duplicates whose exact
top-20 is a coin toss, so it is kept for ``benchmarks/`` and tests only.

:func:`load_hash_run` reads the parts it needs from a hash run folder
written by :func:`hashrec_utils.training.run`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["resample_catalogue", "load_hash_run", "catalogue_sweep", "catalogue_methods", "operating_points"]

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


# Graph indexes build in O(n log n) with a large constant: on two cores HNSW over 10^7 items takes hours.
GRAPH_MAX_ITEMS = 1_000_000


def catalogue_methods(n_items: int, candidates=(100, 400, 1600, 6400, 25600)) -> list[tuple[str, str, list[dict]]]:
    """The sampled catalogues' sweeps: ``(label, make_index name, settings)``, every parameterised method
    at three or more operating points; IVF cells from the catalogue's size (~sqrt(n), 39 points a centroid)."""
    from .bench import scaling_params

    base = scaling_params("ivf_flat", n_items)
    nlist = min(base["nlist"], max(1, n_items // 39))
    probes = sorted({max(1, nlist // 64), max(1, nlist // 16), max(1, nlist // 4), max(1, nlist // 2)})
    methods = [
        ("Exact float (GEMM)", "exact", [{}]),
        ("hashrec Hamming", "hamming", [{}]),
        ("hashrec asymmetric", "asymmetric", [{}]),
        ("hashrec hierarchical", "hierarchical", [{"candidates": c} for c in candidates if c < n_items]),
        ("hashrec hierarchical (asymmetric candidates)", "hierarchical_asymmetric",
         [{"candidates": c // 4} for c in candidates if c < n_items]),
        ("hashrec IVF-asymmetric", "ivf_asymmetric", [{"nlist": nlist, "nprobe": p, "candidates": None} for p in probes]),
        ("hashrec IVF-asymmetric + re-rank", "ivf_asymmetric",
         [{"nlist": nlist, "nprobe": p, "candidates": c} for c in (400, 1600, 6400) if c < n_items for p in probes]),
        ("Faiss IVF-PQ m=16", "ivf_pq", [{"nlist": nlist, "m": 16, "nprobe": p} for p in probes]),
        ("RaBitQ FastScan", "rabitq_fastscan", [{"qb": qb} for qb in (1, 4, 8)]),
        ("IVF-RaBitQ + refine", "ivf_rabitq", [{"nlist": nlist, "refine": True, "nprobe": p} for p in probes]),
        ("Faiss BinaryIVF", "binary_ivf", [{"nlist": nlist, "nprobe": p} for p in probes]),
    ]
    if n_items <= GRAPH_MAX_ITEMS:
        methods.insert(3, ("Faiss HNSW", "hnsw", [{"M": 32, "efSearch": ef} for ef in (32, 128, 512, 2048)]))
    return methods


_FAMILIES = {"exact": "float", "hnsw": "float", "ivf_pq": "float", "rabitq_fastscan": "rabitq", "ivf_rabitq": "rabitq",
             "hamming": "binary", "binary_ivf": "binary", "asymmetric": "asymmetric", "hierarchical": "hierarchical",
             "hierarchical_asymmetric": "hierarchical", "ivf_asymmetric": "asymmetric"}


def catalogue_sweep(run: dict, sizes, *, n_queries: int = 1000, k: int = 20, threads: int = 2, seed: int = 0,
                    repeats: int = 2, items_per_component: int = 50, verbose: bool = False):
    """Throughput and accuracy of every index on sampled catalogues of ``sizes`` items (a trained model's
    geometry, no duplicates: :mod:`hashrec_utils.catalogue_mixture`).

    ``run``: :func:`load_hash_run` of a trained hash model; the mixture is fitted once to its items and
    sampled at each size. Queries: the first ``n_queries`` real users — their LightGCN embeddings, codes
    and real-valued hash-layer outputs (asymmetric search). ``recall_vs_exact``: the share of the exact
    float top-``k`` (inner product over the sampled embeddings) each search finds; ``qps``: queries per
    second at plain ``k`` (sampled items carry no interactions), the median of ``repeats``; every
    parameterised method at three or more settings (:func:`catalogue_methods`). Returns ``(rows,
    summary)``: one row per (size, method, setting), and per size the mixture's size and
    ``near_duplicate_share`` (:func:`~hashrec_utils.catalogue_mixture.near_duplicate_share`), with the
    ``fidelity`` of the sampled geometry (the codes' share of the exact top-k, real and sampled items).
    """
    import pandas as pd

    from .bench import sweep
    from .catalogue_mixture import fit_item_mixture, near_duplicate_share
    from .retrieval import exact_topk, make_index

    q_emb = np.ascontiguousarray(run["user"][:n_queries], dtype=np.float32)
    q_codes = np.ascontiguousarray(run["user_codes"][:n_queries])
    q_real = np.ascontiguousarray(run["user_table"][:n_queries] @ run["weight"].T + run["bias"], dtype=np.float32)
    bits = q_codes.shape[1] * 8
    mixture = fit_item_mixture(run["item"], run["item_table"], run["weight"], run["bias"],
                               items_per_component=items_per_component, seed=seed)
    frames, summary = [], {"components": mixture.components, "items_per_component": items_per_component,
                           "queries": int(len(q_emb)), "k": k, "sizes": {},
                           "fidelity": _fidelity(run, mixture, q_emb, q_codes, q_real, k, threads, seed)}
    for n in sizes:
        emb, codes = mixture.sample(int(n), seed=seed)
        summary["sizes"][str(int(n))] = {"near_duplicate_share": near_duplicate_share(run["item"], emb, seed=seed)}
        truth = exact_topk(q_emb, emb, k, threads=threads)[1]
        for label, name, grid in catalogue_methods(int(n)):
            source = "asymmetric" if name == "hierarchical_asymmetric" else "hamming"
            if name.startswith("hierarchical"):
                factory = lambda source=source, **p: make_index("hierarchical", bits=bits, threads=threads,  # noqa: E731
                                                                source=source, **p)
                items, queries = (codes, emb), (q_real if source == "asymmetric" else q_codes, q_emb)
            elif name == "ivf_asymmetric":
                factory = lambda **p: make_index("ivf_asymmetric", bits=bits, threads=threads, **p)  # noqa: E731
                items, queries = (codes, emb), (q_real, q_emb)
            elif name in ("hamming", "asymmetric", "binary_ivf"):
                factory = lambda name=name, **p: make_index(name, bits=bits, threads=threads, **p)  # noqa: E731
                items, queries = codes, (q_real if name == "asymmetric" else q_codes)
            else:
                factory = lambda name=name, **p: make_index(name, threads=threads, **p)  # noqa: E731
                items, queries = emb, q_emb
            frame = sweep(factory, grid, queries, truth, items=items, k=k, repeats=repeats, method=label)
            frames.append(frame.assign(items=int(n), k=k, family=_FAMILIES[name], source="sampled catalogue"))
            if verbose:
                print(f"{n:>10,} {label:<44} qps {frame['qps'].max():>12,.0f}  "
                      f"recall {frame['recall_vs_exact'].max():.3f}", flush=True)
        del emb, codes
    return pd.concat(frames, ignore_index=True), summary


def _fidelity(run: dict, mixture, q_emb, q_codes, q_real, k: int, threads: int, seed: int) -> dict:
    """How faithful the sampled geometry is to the codes: the share of the exact float top-``k`` that the
    Hamming and asymmetric scans find on the real items, and on a catalogue sampled at the real size."""
    from .bench import recall_vs_exact
    from .retrieval import asymmetric_topk, exact_topk, hamming_topk

    out = {}
    emb, codes = mixture.sample(len(run["item"]), seed=seed + 1)
    for name, (e, c) in {"real": (run["item"], run["item_codes"]), "sampled": (emb, codes)}.items():
        truth = exact_topk(q_emb, np.ascontiguousarray(e, dtype=np.float32), k, threads=threads)[1]
        out[name] = {"hamming": recall_vs_exact(hamming_topk(q_codes, c, k, threads=threads), truth),
                     "asymmetric": recall_vs_exact(asymmetric_topk(q_real, c, k, threads=threads), truth)}
    out["items"] = int(len(run["item"]))
    return out


def operating_points(rows, targets=(0.9, 0.95)) -> list[dict]:
    """Per size, method and target share of the exact top-k: the fastest setting that reaches it (``qps``
    NaN where none does) — where each method stands at equal accuracy."""
    out = []
    for (n, method), group in rows.groupby(["items", "method"], sort=False):
        for target in targets:
            ok = group[group["recall_vs_exact"] >= target]
            best = ok.loc[ok["qps"].idxmax()] if len(ok) else None
            out.append({"items": int(n), "method": method, "target": target,
                        "qps": float(best["qps"]) if best is not None else float("nan"),
                        "recall_vs_exact": float(best["recall_vs_exact"]) if best is not None else float("nan")})
    return out
