"""The data layer: formats, validation, splits, the mirror's counts, downloads."""
from __future__ import annotations

import hashlib
import json
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from hashrec_utils.settings import DataShape

from hashrec_utils import data as D
from hashrec_utils.data import (
    detect_format,
    load_dataset,
    load_interactions,
    split_per_user,
    subset_users,
    synthetic_interactions,
)

from ..conftest import requires_mirror


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


# ---- headers, separators, detection without format= (issue 15) ----------------------------

EDGES = {(1, 10), (1, 11), (2, 10), (3, 12)}


@pytest.mark.parametrize(
    "name, text",
    [
        ("h.csv", "user_id,item_id,rating\n1,10,1\n1,11,1\n2,10,1\n3,12,1\n"),
        ("r.inter", "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                    "1\t10\t4.5\t978300760\n1\t11\t3\t978300761\n2\t10\t5\t978300762\n3\t12\t1.5\t978300763\n"),
        ("t.tsv", "1\t10\t4\n1\t11\t3\n2\t10\t5\n3\t12\t1\n"),
        ("c.csv", "1,10,4,978300760\n1,11,3,978300761\n2,10,5,978300762\n3,12,1,978300763\n"),
        ("s3.txt", "1 10 4\n1 11 3\n2 10 5\n3 12 1\n"),
        ("s4.txt", "1 10 4 978300760\n1 11 3 978300761\n2 10 5 978300762\n3 12 1 978300763\n"),
        ("d.txt", "3 12 4.5\n1 10 3.5\n2 10 0.5\n1 11 2\n"),  # decimal ratings, not sorted by user
    ],
)
def test_edge_lists_detected_without_format(tmp_path, name, text):
    f = write(tmp_path / name, text)
    assert detect_format(f) == "edges"
    assert pairs(load_interactions(f)) == EDGES


def test_recbole_header_keeps_ratings_and_timestamps(tmp_path):
    f = write(tmp_path / "ml.inter", "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t10\t4.5\t97\n2\t11\t3\t98\n")
    frame = load_interactions(f)  # unique users, 4 integer-ish columns: the header says edges
    assert frame["rating"].tolist() == [4.5, 3.0] and frame["timestamp"].tolist() == ["97", "98"]


def test_repeated_user_proves_edges_even_far_apart(tmp_path):
    lines = [f"{u} {u + 100} 1" for u in range(3000)] + ["5 7 1"]  # user 5 again on line 3001
    f = write(tmp_path / "x.txt", "\n".join(lines) + "\n")
    frame = load_interactions(f)
    assert len(frame) == 3001 and (5, 7) in pairs(frame) and (5, 105) in pairs(frame)


def test_unique_users_three_integer_columns_is_the_one_ambiguous_case(tmp_path):
    f = write(tmp_path / "amb.txt", "1 10 4\n2 11 3\n3 12 5\n")
    with pytest.raises(ValueError, match=r"amb\.txt: ambiguous format.*format='lightgcn' or format='edges'.*--format"):
        load_interactions(f)
    assert pairs(load_interactions(f, format="edges")) == {(1, 10), (2, 11), (3, 12)}
    assert pairs(load_interactions(f, format="lightgcn")) == {(1, 10), (1, 4), (2, 11), (2, 3), (3, 12), (3, 5)}


def test_lightgcn_with_tabs_and_varying_lengths(tmp_path):
    f = write(tmp_path / "x.txt", "0\t5\t7\t9\n3\t1\n")
    assert detect_format(f) == "lightgcn"
    assert pairs(load_interactions(f)) == {(0, 5), (0, 7), (0, 9), (3, 1)}


@pytest.mark.parametrize(
    "text, fmt, msg",
    [
        ("1 2\n3 12345678901234567890\n", "lightgcn", r"x\.txt:2: id '12345678901234567890' does not fit in a 64-bit"),
        ("1,2\n12345678901234567890,3\n", "edges", r"x\.txt:2: user id '12345678901234567890' does not fit"),
        ("1,2\n3,12345678901234567890\n", "auto", r"x\.txt:2: item id '12345678901234567890' does not fit"),
        ("1,2\n9223372036854775808,3\n", "auto", r"x\.txt:2: user id '9223372036854775808' does not fit"),
        ("1,2\n1,3\n-4,5\n", "auto", r"x\.txt:3: user id -4 is negative"),
        ("1 2 3\n1 4 5\n2 3.5 1\n2 6 1\n", "auto", r"x\.txt:3: item id '3.5' is not an integer"),
        ("1,2\n1,3\n2,x7\n", "auto", r"x\.txt:3: item id 'x7' is not an integer"),
        ("user,item\n1,2\nuser,item\n", "auto", r"x\.txt:3: 'user,item' is not a data line \(only line 1 may be a header\)"),
        ("1 2 3\nuser item\n", "lightgcn", r"x\.txt:2: 'user item' is not a data line"),
        ("1,2\n1,x\nuser,item\n", "auto", r"x\.txt:2: item id 'x' is not an integer"),  # the first bad line wins
        ("user_id,item_id,rating\n", "auto", r"x\.txt: only a header line"),
        ("user,item,rating\n1,2,1\n3\n", "auto", r"x\.txt:3: expected 2 to 4 fields"),
        ("1 2 3\n1 4 5 6 7 8\n", "auto", r"x\.txt:2: expected 2 to 4 fields.*read as an edge list.*format='lightgcn'"),
        ("item_id,user_id\n1,2\n", "auto", r"x\.txt:1: header .* user column at 2 and the item column at 1"),
    ],
)
def test_bad_ids_and_lines_name_file_line_and_token(tmp_path, text, fmt, msg):
    f = write(tmp_path / "x.txt", text)
    with pytest.raises(ValueError, match=msg):
        load_interactions(f, format=fmt)


def test_largest_int64_id_is_fine(tmp_path):
    f = write(tmp_path / "x.csv", "9223372036854775807,1\n2,1\n")
    assert pairs(load_interactions(f)) == {(2**63 - 1, 1), (2, 1)}


def test_recbole_folder_with_train_valid_test(tmp_path):
    head = "user_id:token\titem_id:token\trating:float\n"
    write(tmp_path / "ml.train.inter", head + "1\t10\t5\n1\t11\t4\n2\t10\t3\n2\t12\t1\n")
    write(tmp_path / "ml.valid.inter", head + "1\t12\t5\n2\t11\t2\n")
    write(tmp_path / "ml.test.inter", head + "1\t13\t5\n2\t13\t4\n")
    d = load_dataset(tmp_path, valid_fraction=0.1)  # valid given: not carved again
    assert (d.train.nnz, d.valid.nnz, d.test.nnz) == (4, 2, 2)
    np.testing.assert_array_equal(d.item_ids, [10, 11, 12, 13])
    assert d.valid[0].indices.tolist() == [2] and d.test[1].indices.tolist() == [3]


def test_ambiguous_test_file_follows_its_train_file(tmp_path):
    write(tmp_path / "train.txt", "1 10 1\n1 11 1\n2 10 1\n")  # repeated user: edges
    write(tmp_path / "test.txt", "1 12 1\n2 13 1\n")  # one line per user: ambiguous alone
    d = load_dataset(tmp_path, valid_fraction=0)
    assert (d.train.nnz, d.test.nnz, d.n_items) == (3, 2, 4)
    with pytest.raises(ValueError, match="ambiguous"):
        load_interactions(tmp_path / "test.txt")


def test_format_argument_on_folders_and_named_datasets(tmp_path):
    write(tmp_path / "train.txt", "1 10 4\n2 11 3\n")
    write(tmp_path / "test.txt", "1 12 5\n2 13 6\n")
    with pytest.raises(ValueError, match=r"train\.txt: ambiguous format"):
        load_dataset(tmp_path)
    d = load_dataset(tmp_path, valid_fraction=0, format="edges")
    assert (d.n_users, d.n_items, d.n_interactions) == (2, 4, 4)
    d = D.load_split_folder(tmp_path, format="lightgcn")
    assert (d.n_users, d.n_items, d.n_interactions) == (2, 8, 8)
    with pytest.raises(ValueError, match="format must be"):
        load_dataset(tmp_path, format="csv")
    with pytest.raises(ValueError, match="format='edges' does not apply to the synthetic dataset"):
        load_dataset("synthetic", format="edges")


def test_named_dataset_folder_in_another_format(tmp_path, monkeypatch):
    monkeypatch.delenv("HASHREC_DATA_DIR", raising=False)
    (tmp_path / "gowalla").mkdir()
    write(tmp_path / "gowalla" / "train.txt", "1 10 4\n2 11 3\n")
    write(tmp_path / "gowalla" / "test.txt", "1 12 4\n2 13 3\n")
    d = load_dataset("gowalla", root=tmp_path, valid_fraction=0, download=False, format="edges")
    assert d.n_interactions == 4
    assert D.dataset_folder("gowalla", tmp_path) == tmp_path / "gowalla"
    assert D.dataset_folder("yelp2018", tmp_path) is None and D.dataset_folder("synthetic") is None


# ---- titles -----------------------------------------------------------------------------

def test_item_titles_from_movies_dat(tmp_path):
    (tmp_path / "ml-1m").mkdir()
    write(tmp_path / "ml-1m" / "train.txt", "1 1193 661\n2 1357\n")
    write(tmp_path / "ml-1m" / "test.txt", "1 914\n")
    d = load_dataset(tmp_path / "ml-1m", valid_fraction=0)
    assert D.item_titles(d, tmp_path / "ml-1m") is None  # no titles file
    movies = "661::James and the Giant Peach (1996)::Animation\n914::My Fair Lady (1964)::Musical\n" \
             "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n1357::Shine (1996)::Drama\n2::Jumanji (1995)::X\n"
    (tmp_path / "movies.dat").write_bytes(movies.replace("Peach", "P\xeache").encode("latin-1"))  # beside: root folder
    titles = D.item_titles(d, tmp_path / "ml-1m")
    assert titles == {661: "James and the Giant P\xeache (1996)", 914: "My Fair Lady (1964)",
                      1193: "One Flew Over the Cuckoo's Nest (1975)", 1357: "Shine (1996)"}
    assert list(titles) == d.item_ids.tolist()
    write(tmp_path / "ml-1m" / "movies.dat", "661::A::x\n914::B::x\n1193::C::x\n")  # in the folder: wins, lacks 1357
    assert D.item_titles(d, tmp_path / "ml-1m") is None  # ids it does not name: no titles at all
    write(tmp_path / "ml-1m" / "movies.dat", "661::A::x\nbroken\n")
    with pytest.raises(ValueError, match=r"movies\.dat:2: expected MovieID::Title::Genres"):
        D.item_titles(d, tmp_path / "ml-1m")


# ---- the CLI and TrainConfig ------------------------------------------------------------------

def test_cli_parser_takes_format_and_train_config_checks_it():
    from hashrec_utils.__main__ import FORMAT_CHOICES, _parser
    from hashrec_utils.settings import train_config
    from hashrec_utils.training import TrainConfig

    assert FORMAT_CHOICES == ("auto", *D.FORMATS)
    args = _parser().parse_args(["train", "--dataset", "some/folder", "--format", "edges", "--out", "runs/x"])
    assert args.data_format == "edges"
    assert _parser().parse_args(["train", "--dataset", "d", "--out", "o"]).data_format is None
    assert _parser().parse_args(["data", "some/folder", "--format", "lightgcn"]).format == "lightgcn"
    with pytest.raises(SystemExit):
        _parser().parse_args(["data", "x", "--format", "parquet"])
    assert TrainConfig().data_format == "auto"
    assert train_config("quick", "some/folder", shape=DataShape(50, 40, 300), data_format="edges").data_format == "edges"
    with pytest.raises(ValueError, match="data_format must be 'auto' or one of lightgcn, edges"):
        TrainConfig(data_format="bogus")


def test_cli_data_command_on_a_csv_folder(tmp_path, capsys):
    from hashrec_utils.__main__ import main

    write(tmp_path / "train.csv", "user_id,item_id,rating\n1,10,1\n1,11,1\n2,10,1\n")
    write(tmp_path / "test.csv", "user_id,item_id,rating\n1,12,1\n2,12,1\n")
    assert main(["data", str(tmp_path), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert (stats["users"], stats["items"], stats["interactions"], stats["test"]) == (2, 3, 5, 2)


# ---- real data: the mirror's ml-1m as rating lines with a header --------------------------------

def _write_rating_lines(src: Path, dest: Path, seed: int = 0) -> None:
    """LightGCN lines → ``user_id,item_id,rating`` lines (rating 1), users in shuffled order."""
    rows = [line.split() for line in src.read_text().splitlines() if line.strip()]
    order = np.random.default_rng(seed).permutation(len(rows))
    out = ["user_id,item_id,rating"]
    for r in order:
        out.extend(f"{rows[r][0]},{item},1" for item in rows[r][1:])
    dest.write_text("\n".join(out) + "\n")


@requires_mirror
def test_mirror_ml1m_as_csv_rating_lines_loads_without_format(tmp_path, ml1m):
    from ..conftest import mirror_dir

    for part in ("train", "test"):
        _write_rating_lines(mirror_dir() / "ml-1m" / f"{part}.txt", tmp_path / f"{part}.csv")
    d = load_dataset(tmp_path, valid_fraction=0)
    assert (d.n_users, d.n_items, d.train.nnz, d.test.nnz) == (ml1m.n_users, ml1m.n_items, ml1m.train.nnz, ml1m.test.nnz)
    np.testing.assert_array_equal(d.item_ids, ml1m.item_ids)
    assert (d.train != ml1m.train).nnz == 0 and (d.test != ml1m.test).nnz == 0


def test_explorer_says_which_ids_and_shows_titles(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from hashrec_utils.explorer import Explorer

    mirror = tmp_path / "mirror"
    (mirror / "ml-1m").mkdir(parents=True)
    write(mirror / "ml-1m" / "train.txt", "0 0 5 7\n1 5\n")
    write(mirror / "ml-1m" / "test.txt", "0 9\n")
    monkeypatch.setenv("HASHREC_DATA_DIR", str(mirror))
    d = load_dataset("ml-1m", root=tmp_path / "none", valid_fraction=0, download=False)
    e = Explorer(SimpleNamespace(data=subset_users(d, 1)))  # the folder found from the name "ml-1m[:1]"
    assert e.folder == mirror / "ml-1m" and e.titles is None and e.title(5) == ""
    assert "0-based, as in the offline mirror" in e.items_note and "no titles file found" in e.items_note
    write(mirror / "ml-1m" / "movies.dat", "5::Five::x\n7::Seven::x\n9::Nine::x\n")  # no movie 0: not these ids
    e = Explorer(SimpleNamespace(data=d))
    assert e.titles is None and "does not name every one of these ids" in e.items_note
    write(mirror / "ml-1m" / "movies.dat", "0::Zero::x\n5::Five::x\n7::Seven::x\n9::Nine::x\n")
    e = Explorer(SimpleNamespace(data=d))
    assert e.title(7) == "Seven" and "titles from" in e.items_note


def test_grouplens_zip_keeps_movies_dat_for_titles(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ml-1m/ratings.dat", "".join(f"{u}::{i}::5::9\n" for u in (1, 2) for i in (10, 11, 12, 13, 14)))
        zf.writestr("ml-1m/movies.dat", "".join(f"{i}::Movie {i}::Drama\n" for i in (10, 11, 12, 13, 14)).encode("latin-1"))
    (tmp_path / "ml.zip").write_bytes(buf.getvalue())
    (tmp_path / "out").mkdir()
    D._grouplens_zip_to_split(tmp_path / "ml.zip", tmp_path / "out", seed=0)
    d = load_dataset(tmp_path / "out", valid_fraction=0)
    assert D.item_titles(d, tmp_path / "out") == {i: f"Movie {i}" for i in (10, 11, 12, 13, 14)}


# ---- the package's layout ------------------------------------------------------------------------

def test_default_root_is_the_repository_data_folder(monkeypatch):
    monkeypatch.delenv("HASHREC_DATA_ROOT", raising=False)
    assert D.default_root() == Path(__file__).resolve().parents[2] / "data"
    monkeypatch.setenv("HASHREC_DATA_ROOT", "/somewhere/else")
    assert D.default_root() == Path("/somewhere/else")


def test_data_modules_import_one_way():
    """No import circle inside hashrec_utils.data: each module imports only modules below it."""
    import ast

    package = Path(D.__file__).parent
    imports = {}
    for path in package.glob("*.py"):
        if path.stem == "__init__":
            continue
        tree = ast.parse(path.read_text())
        imports[path.stem] = {node.module for node in ast.walk(tree)
                              if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module}
    order = ["core", "netflix_parse", "netflix", "formats", "sources"]
    assert sorted(imports) == sorted(order)
    for module, used in imports.items():
        assert used <= set(order[: order.index(module)]), (module, used)
    assert D.SPLIT_VERSION == 1 and "SPLIT_VERSION" in D.__all__
