"""resample_catalogue against codes computed by hand; load_hash_run on a run saved the way train.py saves one."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hashrec_utils.catalogue import load_hash_run, resample_catalogue
from hashrec_utils.hashing import HashModel, TableEncoder, make_estimator


def _model_arrays(seed=0, n=40, d=8, bits=16):
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((n, d)).astype(np.float32)
    table = emb + 0.1 * rng.standard_normal((n, d)).astype(np.float32)
    weight = rng.standard_normal((bits, d)).astype(np.float32)
    bias = rng.standard_normal(bits).astype(np.float32)
    return emb, table, weight, bias


def test_zero_noise_copies_rows_and_codes_are_sign_of_the_table_rows():
    emb, table, _, _ = _model_arrays()
    # weight = [I; -I], bias 0: code bits = (table >= 0, -table >= 0), predictable by hand
    weight = np.vstack([np.eye(8), -np.eye(8)]).astype(np.float32)
    bias = np.zeros(16, np.float32)
    new_emb, codes = resample_catalogue(emb, table, weight, bias, len(emb), noise=0.0, seed=3, chunk=7)
    assert new_emb.dtype == np.float32 and new_emb.shape == emb.shape
    assert codes.dtype == np.uint8 and codes.shape == (len(emb), 2)
    # every new row is a copy of a trained row; recover which one
    src = np.array([np.flatnonzero((emb == row).all(1))[0] for row in new_emb])
    np.testing.assert_array_equal(new_emb, emb[src])
    t = table[src]
    want = np.packbits(np.hstack([t >= 0, -t >= 0]), axis=1)
    np.testing.assert_array_equal(codes, want)
    assert len(np.unique(src)) > 1  # resampled, not one row repeated


def test_codes_are_sign_of_w_t_plus_b_on_the_noisy_rows_with_sign_zero_plus_one():
    emb, table, weight, bias = _model_arrays()
    new_emb, codes = resample_catalogue(emb, table, weight, bias, 100, noise=0.0, seed=1)
    src = np.array([np.flatnonzero((emb == row).all(1))[0] for row in new_emb])
    np.testing.assert_array_equal(codes, np.packbits(table[src] @ weight.T + bias >= 0, axis=1))
    zero_w = np.zeros_like(weight)
    _, ones = resample_catalogue(emb, table, zero_w, np.zeros(16, np.float32), 5, noise=0.0)
    assert (ones == 0xFF).all()  # W t + b = 0 -> +1 -> bit 1


def test_noise_is_shared_by_embedding_and_table_and_scaled_per_dimension():
    emb, table, _, _ = _model_arrays(n=50)
    emb[:, 0] *= 10.0  # dimension 0 has 10x the spread
    weight = np.vstack([np.eye(8), -np.eye(8)]).astype(np.float32)
    new_emb, _ = resample_catalogue(emb, table, weight, np.zeros(16, np.float32), 20_000, noise=0.1, seed=0,
                                    chunk=4096)
    clean, _ = resample_catalogue(emb, table, weight, np.zeros(16, np.float32), 20_000, noise=0.0, seed=0,
                                  chunk=4096)
    eps = new_emb - clean  # same seed, same sources: only the noise differs
    np.testing.assert_allclose(eps.std(0), 0.1 * emb.std(0), rtol=0.03)


def test_deterministic_by_seed():
    emb, table, weight, bias = _model_arrays()
    a = resample_catalogue(emb, table, weight, bias, 300, seed=5, chunk=64)
    b = resample_catalogue(emb, table, weight, bias, 300, seed=5, chunk=64)
    c = resample_catalogue(emb, table, weight, bias, 300, seed=6, chunk=64)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_resample_errors():
    emb, table, weight, bias = _model_arrays()
    with pytest.raises(ValueError, match="item_table has shape"):
        resample_catalogue(emb, table[:5], weight, bias, 10)
    with pytest.raises(ValueError, match="weight must have shape"):
        resample_catalogue(emb, table, weight[:, :3], bias, 10)
    with pytest.raises(ValueError, match="multiple of 8"):
        resample_catalogue(emb, table, weight[:12], bias[:12], 10)
    with pytest.raises(ValueError, match=r"bias must have shape \(16,\)"):
        resample_catalogue(emb, table, weight, bias[:3], 10)
    with pytest.raises(ValueError, match="n_items must be a non-negative integer"):
        resample_catalogue(emb, table, weight, bias, -1)
    with pytest.raises(ValueError, match="noise must be"):
        resample_catalogue(emb, table, weight, bias, 10, noise=-0.1)
    with pytest.raises(ValueError, match="chunk must be a positive integer"):
        resample_catalogue(emb, table, weight, bias, 10, chunk=0)


def _save_run(folder, best: bool):
    """A TableEncoder hash model saved the way train.py saves a run (checkpoint payload and embeddings.npz)."""
    rng = np.random.default_rng(0)
    users, items = rng.standard_normal((4, 8)).astype(np.float32), rng.standard_normal((6, 8)).astype(np.float32)
    model = HashModel(TableEncoder(users, items), 16, make_estimator("ste"))
    kept = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.hash.linear.weight.add_(1.0)  # the final model differs from the kept best state
    payload = {"model": model.state_dict(), "optimizer": {}, "best_state": kept if best else None, "epoch": 3}
    torch.save(payload, folder / "checkpoint.pt")
    ucodes = np.packbits(rng.random((4, 16)) < 0.5, axis=1)
    icodes = np.packbits(rng.random((6, 16)) < 0.5, axis=1)
    np.savez(folder / "embeddings.npz", user=users, item=items, user_codes=ucodes, item_codes=icodes)
    state = kept if best else model.state_dict()
    return users, items, ucodes, icodes, state


@pytest.mark.parametrize("best", [False, True])
def test_load_hash_run_round_trips(tmp_path, best):
    users, items, ucodes, icodes, state = _save_run(tmp_path, best)
    run = load_hash_run(tmp_path)
    np.testing.assert_array_equal(run["user"], users)
    np.testing.assert_array_equal(run["item"], items)
    np.testing.assert_array_equal(run["user_codes"], ucodes)
    np.testing.assert_array_equal(run["item_codes"], icodes)
    np.testing.assert_array_equal(run["weight"], state["hash.linear.weight"].numpy())
    np.testing.assert_array_equal(run["bias"], state["hash.linear.bias"].numpy())
    np.testing.assert_array_equal(run["item_table"], state["encoder.embedding.weight"].numpy()[4:])
    np.testing.assert_array_equal(run["user_table"], state["encoder.embedding.weight"].numpy()[:4])
    np.testing.assert_array_equal(run["initial"], np.concatenate([users, items]))
    # and it feeds resample_catalogue
    emb, codes = resample_catalogue(run["item"], run["item_table"], run["weight"], run["bias"], 12, seed=0)
    assert emb.shape == (12, 8) and codes.shape == (12, 2)


def test_load_hash_run_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="embeddings.npz: no such file"):
        load_hash_run(tmp_path)
    _save_run(tmp_path, best=False)
    np.savez(tmp_path / "embeddings.npz", user=np.zeros((4, 8)), item=np.zeros((6, 8)))
    with pytest.raises(KeyError, match="has no user_codes, item_codes"):
        load_hash_run(tmp_path)
    _save_run(tmp_path, best=False)
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    del saved["model"]["hash.linear.bias"]
    torch.save(saved, tmp_path / "checkpoint.pt")
    with pytest.raises(KeyError, match="hash.linear.bias"):
        load_hash_run(tmp_path)
    (tmp_path / "checkpoint.pt").unlink()
    with pytest.raises(FileNotFoundError, match="checkpoint.pt: no such file"):
        load_hash_run(tmp_path)
