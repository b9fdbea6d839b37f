"""Distilling a user's own embeddings into codes (hashrec_utils.distill): bad input, the saved searcher,
held-out users, exclusion and determinism, on small synthetic low-rank models."""
from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from hashrec_utils.__main__ import main
from hashrec_utils.distill import distill, load, read_embeddings, read_interactions
from hashrec_utils.distill.fit import split_users, top_share
from hashrec_utils.distill.searcher import ARRAYS, FORMAT_VERSION
from hashrec_utils.hashing import lsh_codes
from hashrec_utils.retrieval import exact_topk

FAST = {"epochs": 6, "eval_every": 2, "lr": 0.03}


def model(n_users=160, n_items=600, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n_users, dim)).astype(np.float32),
            rng.standard_normal((n_items, dim)).astype(np.float32))


def seen_matrix(n_users, n_items, per_user=5, seed=1):
    rng = np.random.default_rng(seed)
    rows = np.repeat(np.arange(n_users), per_user)
    cols = np.concatenate([rng.choice(n_items, per_user, replace=False) for _ in range(n_users)])
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_users, n_items))


@pytest.fixture(scope="module")
def distilled(tmp_path_factory):
    user, item = model()
    seen = seen_matrix(len(user), len(item))
    out = tmp_path_factory.mktemp("d") / "searcher"
    searcher = distill(user, item, 16, interactions=seen, out=out, keep_float=True, progress=False, **FAST)
    return user, item, seen, out, searcher


def test_split_users_is_disjoint_seeded_and_covers_everyone():
    a, b = split_users(100, 0.1, 0.1, 0), split_users(100, 0.1, 0.1, 0)
    assert all(np.array_equal(x, y) for x, y in zip((a.train, a.valid, a.holdout), (b.train, b.valid, b.holdout)))
    assert (len(a.train), len(a.valid), len(a.holdout)) == (80, 10, 10)
    assert not set(a.holdout) & set(a.train) and not set(a.holdout) & set(a.valid) and not set(a.valid) & set(a.train)
    assert sorted(np.concatenate([a.train, a.valid, a.holdout])) == list(range(100))


def test_the_saved_searcher_round_trips_bit_identically(distilled):
    user, item, seen, out, searcher = distilled
    again = load(out)
    for name in ("weight", "bias", "item_codes", "item_emb"):
        assert getattr(again, name).tobytes() == getattr(searcher, name).tobytes()
    assert all(a.tobytes() == b.tobytes() for a, b in zip(again.additive, searcher.additive))
    for mode in ("hamming", "asymmetric", "hierarchical"):
        s1, i1 = searcher.search(user, 20, seen, mode)
        s2, i2 = again.search(user, 20, seen, mode)
        assert np.array_equal(i1, i2) and s1.tobytes() == s2.tobytes()
    report = json.loads((out / "report.json").read_text())
    assert report["users"] == searcher.info["users"]["holdout"] == 16


def test_codes_serve_held_out_users_better_than_random_hyperplanes(distilled):
    """The report's users took no part in distillation; the learnt codes find more of the model's own
    top-20 for them than untrained LSH codes of the same length, and never return a seen item."""
    user, item, seen, out, searcher = distilled
    hold = split_users(len(user), 0.1, 0.1, 0).holdout
    truth = exact_topk(user[hold], item, 20, seen[hold])[1]
    ids = searcher.search(user[hold], 20, seen[hold], "asymmetric")[1]
    assert not seen[hold][np.arange(len(hold))[:, None], ids].toarray().any()
    learnt = top_share(ids, truth)
    assert learnt == pytest.approx(searcher.report["asymmetric"]["top20_share"])
    lsh_u, lsh_i = lsh_codes(user, item, 16, seed=0)
    from hashrec_utils.retrieval import hamming_topk

    assert learnt > top_share(hamming_topk(lsh_u[hold], lsh_i, 20, seen[hold]), truth) + 0.05
    assert searcher.report["hierarchical"]["top20_share"] > learnt  # the float re-rank recovers more


def test_same_seed_same_codes():
    user, item = model(n_users=60, n_items=80)
    a = distill(user, item, 16, progress=False, epochs=2, eval_every=1)
    b = distill(user, item, 16, progress=False, epochs=2, eval_every=1)
    assert a.item_codes.tobytes() == b.item_codes.tobytes() and a.weight.tobytes() == b.weight.tobytes()
    assert all(x.tobytes() == y.tobytes() for x, y in zip(a.additive, b.additive))


def test_search_checks_its_arguments(distilled):
    user, item, seen, out, searcher = distilled
    with pytest.raises(ValueError, match="mode must be one of hamming, asymmetric, hierarchical; got 'cosine'"):
        searcher.search(user[:2], 5, mode="cosine")
    with pytest.raises(ValueError, match="user_emb has dim 4; this searcher was distilled from dim 8"):
        searcher.search(user[:2, :4], 5)
    with pytest.raises(ValueError, match="exclude must have shape"):
        searcher.search(user[:2], 5, exclude=seen)
    with pytest.raises(ValueError, match="k = 601 exceeds the 600 items"):
        searcher.search(user[:2], 601)
    no_float = load(out)
    no_float.item_emb = None
    with pytest.raises(ValueError, match="needs|re-ranks with the item embeddings.*--keep-float"):
        no_float.search(user[:2], 5, mode="hierarchical")


def test_load_refuses_other_versions_and_shapes(distilled, tmp_path):
    import shutil

    *_, out, _ = distilled
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    manifest = json.loads((copy / "searcher.json").read_text())
    (copy / "searcher.json").write_text(json.dumps({**manifest, "format_version": FORMAT_VERSION + 1}))
    with pytest.raises(ValueError, match=f"searcher format {FORMAT_VERSION + 1}; this code reads format {FORMAT_VERSION}"):
        load(copy)
    (copy / "searcher.json").write_text(json.dumps({**manifest, "arrays": {**manifest["arrays"], "item_codes": [3, 2]}}))
    with pytest.raises(ValueError, match=f"{ARRAYS} does not match searcher.json"):
        load(copy)
    with pytest.raises(FileNotFoundError, match="holds no searcher.json"):
        load(tmp_path)


# ---- bad input: one clear error, nothing written ------------------------------------------------

def _cli(tmp_path, npz_arrays=None, extra=(), out_name="out"):
    path = tmp_path / "emb.npz"
    if npz_arrays is not None:
        np.savez(path, **npz_arrays)
    out = tmp_path / out_name
    main(["distill", "--embeddings", str(path), "--bits", "16", "--out", str(out), "--set", "epochs=1", *extra])
    return out


@pytest.mark.parametrize("arrays, message", [
    ({"user": np.ones((5, 4), np.float32)}, r"lacks the key\(s\) item \(it holds user\)"),
    ({"user": np.ones((5, 4), np.float32), "item": np.ones((30, 3), np.float32)},
     "must have one dimension.*got user dim 4, item dim 3"),
    ({"user": np.ones((5, 4), np.int64), "item": np.ones((30, 4), np.float32)},
     "user embeddings must hold floating-point values; got dtype int64"),
    ({"user": np.ones((5, 4), np.float32), "item": np.where(np.eye(30, 4) > 0, np.nan, 1.0)},
     r"item embeddings holds NaN or infinite values \(4 of them; first in row 0\)"),
    ({"user": np.ones((5, 4), np.float32), "item": np.full((30, 4), np.inf)}, "item embeddings holds NaN or infinite"),
    ({"user": np.ones((5, 4), np.float32), "item": np.ones((12, 4), np.float32)},
     "item embeddings hold 12 items, fewer than k = 20"),
])
def test_bad_embeddings_are_refused_before_anything_is_written(tmp_path, arrays, message):
    with pytest.raises(ValueError, match=message):
        _cli(tmp_path, arrays)
    assert not (tmp_path / "out").exists()


def test_ids_outside_the_matrices_are_refused(tmp_path):
    user, item = model(n_users=10, n_items=30)
    edges = tmp_path / "seen.txt"
    edges.write_text("0 1 5\n3 29 4\n9 30 3\n")
    with pytest.raises(ValueError, match=r"1 item id\(s\) outside the embeddings' 30 rows .*first: item 30 on data line 3"):
        _cli(tmp_path, {"user": user, "item": item}, ("--interactions", str(edges)))
    edges.write_text("10 1\n")
    with pytest.raises(ValueError, match=r"user id\(s\) outside the embeddings' 10 rows"):
        read_interactions(edges, 10, 30)
    assert not (tmp_path / "out").exists()
    edges.write_text("0 1\n0 2\n4 29\n")
    seen = read_interactions(edges, 10, 30)  # 0-based rows, no compaction
    assert seen.shape == (10, 30) and seen[0, 1] == seen[0, 2] == seen[4, 29] == 1 and seen.nnz == 3


def test_an_output_folder_holding_something_else_is_refused(tmp_path):
    user, item = model(n_users=10, n_items=30)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"--out .*out holds other files \(notes.txt\) and no searcher.json"):
        _cli(tmp_path, {"user": user, "item": item})
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["notes.txt"]


def test_a_missing_or_unreadable_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="--embeddings .*nothing.npz: no such file"):
        read_embeddings(tmp_path / "nothing.npz")
    (tmp_path / "junk.npz").write_text("not an archive")
    with pytest.raises(ValueError, match="is not a readable .npz file"):
        read_embeddings(tmp_path / "junk.npz")


def test_the_command_writes_the_searcher_and_prints_the_report(tmp_path, capsys):
    user, item = model(n_users=60, n_items=80)
    out = _cli(tmp_path, {"user": user, "item": item})
    printed = capsys.readouterr().out
    assert "held-out users (not distilled on), 16-bit item codes (2 bytes an item), top-20" in printed
    assert "asymmetric" in printed and "hierarchical" not in printed  # no --keep-float
    assert sorted(p.name for p in out.iterdir()) == ["history.json", "report.json", "searcher.json", "searcher.npz"]
    # the same folder again is this command's own: accepted and rewritten
    _cli(tmp_path, {"user": user, "item": item})


def test_the_transform_start_is_validated_as_epoch_zero():
    """The default start (the transform code) is a candidate like any epoch: the history's first row is
    epoch 0 with its validation shares, and the kept epoch is the best of all rows, the start included."""
    user, item = model(n_users=80, n_items=120)
    searcher = distill(user, item, 16, progress=False, epochs=2, eval_every=1)
    rows = [r for r in searcher.history if "valid_top20_asymmetric" in r]
    assert rows[0]["epoch"] == 0 and [r["epoch"] for r in rows] == [0, 1, 2]
    best = max(rows, key=lambda r: max(r["valid_top20_asymmetric"], r["valid_top20_hamming"]))
    assert searcher.info["kept_epoch"] == best["epoch"]
    with pytest.raises(ValueError, match="init='transform' starts the item table: it needs item_side='table'"):
        distill(user, item, 16, progress=False, epochs=1, item_side="layer")
    distill(user, item, 16, progress=False, epochs=1, item_side="layer", init="random")
