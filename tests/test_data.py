"""The data layer: formats, validation, splits, the mirror's counts, downloads."""
from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from hashrec_utils import data as D
from hashrec_utils.data import (
    detect_format,
    load_dataset,
    load_interactions,
    split_per_user,
    subset_users,
    synthetic_interactions,
)

from .conftest import requires_mirror


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def pairs(frame) -> set[tuple[int, int]]:
    return set(zip(frame["user"].tolist(), frame["item"].tolist()))


# ---- formats --------------------------------------------------------------------

def test_lightgcn_lines(tmp_path):
    f = write(tmp_path / "train.txt", "0 5 7 9\n3 1\n7 2 5\n")
    frame = load_interactions(f)
    assert detect_format(f) == "lightgcn"
    assert pairs(frame) == {(0, 5), (0, 7), (0, 9), (3, 1), (7, 2), (7, 5)}
    assert list(frame.columns) == ["user", "item"]


@pytest.mark.parametrize("sep", [" ", ",", "\t", ", "])
def test_edge_list_with_rating_and_timestamp(tmp_path, sep):
    f = write(tmp_path / "e.txt", sep.join(["1", "10", "4.5", "978300760"]) + "\n" + sep.join(["2", "11", "3", "978300761"]) + "\n")
    frame = load_interactions(f)
    assert pairs(frame) == {(1, 10), (2, 11)}
    assert frame["rating"].tolist() == [4.5, 3.0]
    assert frame["timestamp"].tolist() == ["978300760", "978300761"]


def test_edge_list_pairs_only_comma(tmp_path):
    f = write(tmp_path / "e.csv", "1,10\n2,11\n")
    assert detect_format(f) == "edges"
    assert pairs(load_interactions(f)) == {(1, 10), (2, 11)}


def test_grouplens_lines(tmp_path):
    f = write(tmp_path / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n2::1357::5::978298709\n")
    frame = load_interactions(f)
    assert detect_format(f) == "grouplens"
    assert pairs(frame) == {(1, 1193), (1, 661), (2, 1357)}
    assert frame["timestamp"].dtype == np.int64 and frame["rating"].tolist() == [5.0, 3.0, 5.0]


def test_ambiguous_file_asks_for_format(tmp_path):
    f = write(tmp_path / "x.txt", "1 2 3\n4 5 6\n")
    with pytest.raises(ValueError, match="ambiguous.*format="):
        load_interactions(f)
    assert pairs(load_interactions(f, format="lightgcn")) == {(1, 2), (1, 3), (4, 5), (4, 6)}
    assert pairs(load_interactions(f, format="edges")) == {(1, 2), (4, 5)}


def test_float_third_column_reads_as_rating(tmp_path):
    f = write(tmp_path / "x.txt", "1 2 3.5\n4 5 1.0\n")
    assert detect_format(f) == "edges"


# ---- bad input: one ValueError naming file and line ---------------------------------

@pytest.mark.parametrize(
    "text, fmt, msg",
    [
        ("0 1 2\n1 x 3\n", "lightgcn", r"x\.txt:2: id 'x' is not an integer"),
        ("0 1 2\n1 -3 3\n", "lightgcn", r"x\.txt:2: id -3 is negative"),
        ("0 1 2\n\n1 3\n", "lightgcn", r"x\.txt:2: empty line"),
        ("1,2\n3\n", "edges", r"x\.txt:2: expected 2 to 4 fields"),
        ("1,2\n3,4,5,6,7\n", "edges", r"x\.txt:2: expected 2 to 4 fields"),
        ("1,2\n-3,4\n", "edges", r"x\.txt:2: user id -3 is negative"),
        ("1,2\n3,b\n", "edges", r"x\.txt:2: item id 'b' is not an integer"),
        ("1,2,4\n3,4,five\n", "edges", r"x\.txt:2: rating 'five' is not a number"),
        ("1,2,4\n3,4,nan\n", "edges", r"x\.txt:2: rating 'nan' is not finite"),
        ("1::2::5::9\n1::2.5::5::9\n", "grouplens", r"x\.txt:2: item id '2.5' is not an integer"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path, text, fmt, msg):
    f = write(tmp_path / "x.txt", text)
    with pytest.raises(ValueError, match=msg):
        load_interactions(f, format=fmt)


@pytest.mark.parametrize("text", ["", "\n\n  \n"])
def test_empty_file(tmp_path, text):
    f = write(tmp_path / "x.txt", text)
    with pytest.raises(ValueError, match=r"x\.txt: empty file"):
        load_interactions(f)


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        load_interactions(tmp_path / "nope.txt")
    with pytest.raises(ValueError, match="format must be"):
        load_interactions(write(tmp_path / "a.txt", "1 2\n"), format="parquet")


def test_pair_in_train_and_test_is_an_error(tmp_path):
    write(tmp_path / "train.txt", "0 1 2\n1 3\n")
    write(tmp_path / "test.txt", "0 2\n1 4\n")
    with pytest.raises(ValueError, match=r"1 \(user, item\) pairs are in both .*train\.txt and .*test\.txt.*user 0 item 2"):
        load_dataset(tmp_path)


def test_unknown_dataset_and_bad_fraction(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'movielens'.*ml-1m"):
        load_dataset("movielens")
    with pytest.raises(ValueError, match="valid_fraction"):
        load_dataset("synthetic", valid_fraction=1.5)


# ---- folders, ids, splits --------------------------------------------------------------

def test_folder_compacts_ids_and_carves_valid(tmp_path):
    write(tmp_path / "train.txt", "10 100 101 102 103 104 105 106 107 108 109\n20 100 200\n")
    write(tmp_path / "test.txt", "10 300\n")
    d = load_dataset(tmp_path, valid_fraction=0.2, seed=3)
    assert (d.n_users, d.n_items) == (2, 12)
    np.testing.assert_array_equal(d.user_ids, [10, 20])
    assert d.item_ids[0] == 100 and d.item_ids[-1] == 300
    assert d.valid[0].nnz == 2 and d.train[0].nnz == 8  # 20% of user 10's ten items
    assert d.valid[1].nnz == 0  # round(0.2 * 2) = 0
    assert d.train.multiply(d.valid).nnz == 0 and d.train.multiply(d.test).nnz == 0
    again = load_dataset(tmp_path, valid_fraction=0.2, seed=3)
    assert (again.valid != d.valid).nnz == 0
    other = load_dataset(tmp_path, valid_fraction=0.2, seed=4)
    assert (other.valid != d.valid).nnz > 0
    kept = load_dataset(tmp_path, valid_fraction=0.0)
    assert kept.valid.nnz == 0 and kept.train.nnz == 12


def test_split_per_user_keeps_one_item_and_partitions():
    m = D._csr(np.array([0, 0, 0, 0, 0, 1, 2, 2]), np.array([0, 1, 2, 3, 4, 0, 1, 2]), (3, 5))
    kept, held = split_per_user(m, 0.6, seed=0)
    assert (kept + held != m).nnz == 0 and kept.multiply(held).nnz == 0
    np.testing.assert_array_equal(np.diff(held.indptr), [3, 0, 1])  # rint(3.0), min(rint(.6), 0), rint(1.2)


def test_synthetic_is_power_law_sized_and_reproducible():
    f = synthetic_interactions(500, 300, 8000, seed=1)
    assert len(f) == 8000 and f["user"].nunique() == 500
    assert not f.duplicated().any()
    g = synthetic_interactions(500, 300, 8000, seed=1)
    assert f.equals(g)
    item_deg = np.bincount(f["item"], minlength=300)
    assert item_deg[:10].sum() > 5 * item_deg[-10:].sum()  # head items dominate
    d = load_dataset("synthetic", n_users=500, n_items=300, n_interactions=8000, seed=1, valid_fraction=0)
    assert d.n_interactions == 8000
    with pytest.raises(ValueError, match="n_interactions"):
        synthetic_interactions(10, 10, 5)


def test_subset_users_recompacts(tmp_path):
    d = load_dataset("synthetic", n_users=200, n_items=100, n_interactions=3000, valid_fraction=0.1)
    s = subset_users(d, 50)
    assert s.n_users == 50 and s.train.shape == (50, s.n_items)
    assert (np.asarray((s.train + s.valid + s.test).sum(axis=0)).ravel() > 0).all()
    assert s.n_interactions == (d.train + d.valid + d.test)[:50].nnz


# ---- the offline mirror ---------------------------------------------------------------

@requires_mirror
def test_mirror_counts_ml1m(ml1m):
    assert (ml1m.n_users, ml1m.n_items, ml1m.n_interactions) == (6040, 3706, 1000209)
    assert (ml1m.train.nnz, ml1m.test.nnz) == (794784, 205425)
    assert ml1m.item_ids.max() > ml1m.n_items  # raw ids up to 3,882 were compacted


@requires_mirror
def test_mirror_counts_gowalla():
    d = load_dataset("gowalla", root="/nonexistent", valid_fraction=0.0, download=False)
    assert (d.n_users, d.n_items, d.n_interactions, d.test.nnz) == (29858, 40981, 1027370, 217242)


@requires_mirror
def test_valid_carved_from_mirror_train(ml1m):
    d = load_dataset("ml-1m", root="/nonexistent", valid_fraction=0.1, seed=0, download=False)
    assert d.train.nnz + d.valid.nnz == ml1m.train.nnz
    assert abs(d.valid.nnz / ml1m.train.nnz - 0.1) < 0.005
    assert (d.test != ml1m.test).nnz == 0


# ---- downloads (file:// URLs stand in for the official servers) ---------------------------

def _grouplens_zip(path: Path, n_users: int = 30) -> bytes:
    rng = np.random.default_rng(0)
    lines = []
    for u in range(1, n_users + 1):
        for i in rng.choice(np.arange(1, 60), 10, replace=False):
            lines.append(f"{u}::{i}::{rng.integers(1, 6)}::{978300000 + u}")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ml-1m/ratings.dat", "\n".join(lines) + "\n")
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


def _fake_source(tmp_path, monkeypatch, *, md5: str | None = None, truncate: bool = False):
    archive = tmp_path / "srv" / "ml-1m.zip"
    archive.parent.mkdir()
    payload = _grouplens_zip(archive)
    if truncate:
        archive.write_bytes(payload[: len(payload) // 2])
    digest = md5 or hashlib.md5(payload).hexdigest()
    write(tmp_path / "srv" / "ml-1m.zip.md5", f"MD5 (ml-1m.zip) = {digest}\n")
    monkeypatch.setitem(
        D.DATASETS, "ml-1m",
        D.Source("grouplens-zip", (archive.as_uri(),), md5_url=(tmp_path / "srv" / "ml-1m.zip.md5").as_uri()),
    )
    monkeypatch.delenv("HASHREC_DATA_DIR", raising=False)
    return tmp_path / "data"


def test_download_grouplens_zip_splits_80_20(tmp_path, monkeypatch):
    root = _fake_source(tmp_path, monkeypatch)
    d = load_dataset("ml-1m", root=root, valid_fraction=0.0, seed=0)
    assert d.n_users == 30 and d.n_interactions == 300
    np.testing.assert_array_equal(np.diff(d.test.indptr), 2)  # 20% of 10 per user
    assert sorted(p.name for p in (root / "ml-1m").iterdir()) == ["test.txt", "train.txt"]
    assert [p.name for p in root.iterdir()] == ["ml-1m"]  # nothing partial left beside it


def test_download_checksum_mismatch_leaves_nothing(tmp_path, monkeypatch):
    root = _fake_source(tmp_path, monkeypatch, md5="0" * 32)
    with pytest.raises(ValueError, match="checksum mismatch"):
        load_dataset("ml-1m", root=root)
    assert not root.exists() or list(root.iterdir()) == []


def test_truncated_archive_leaves_nothing(tmp_path, monkeypatch):
    root = _fake_source(tmp_path, monkeypatch, md5=None, truncate=True)
    # the md5 is of the whole file, so the check catches it first; without it, the zip reader does
    with pytest.raises(ValueError, match="checksum mismatch"):
        load_dataset("ml-1m", root=root)
    with pytest.raises(ValueError, match="truncated or corrupt zip"):
        D.read_grouplens_zip(tmp_path / "srv" / "ml-1m.zip")
    assert not root.exists() or list(root.iterdir()) == []


def test_published_counts_are_checked(tmp_path, monkeypatch):
    srv = tmp_path / "srv"
    srv.mkdir()
    write(srv / "train.txt", "0 1 2\n1 2\n")
    write(srv / "test.txt", "0 3\n")
    monkeypatch.setitem(D.DATASETS, "gowalla", D.Source("lightgcn-split", ((srv / "train.txt").as_uri(), (srv / "test.txt").as_uri()), counts=(29858, 40981, 1027370)))
    monkeypatch.delenv("HASHREC_DATA_DIR", raising=False)
    with pytest.raises(ValueError, match="published .*29858.*corrupt or truncated"):
        load_dataset("gowalla", root=tmp_path / "data")
    assert not (tmp_path / "data" / "gowalla").exists()


def test_offline_without_mirror_names_the_variable_and_url(tmp_path, monkeypatch):
    monkeypatch.setitem(D.DATASETS, "gowalla", D.Source("lightgcn-split", ("http://127.0.0.1:9/gowalla/train.txt",)))
    monkeypatch.delenv("HASHREC_DATA_DIR", raising=False)
    with pytest.raises(ConnectionError, match=r"127\.0\.0\.1:9/gowalla/train\.txt.*HASHREC_DATA_DIR"):
        load_dataset("gowalla", root=tmp_path / "data")
    assert not (tmp_path / "data" / "gowalla").exists()
