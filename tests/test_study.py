"""The ``study`` command end to end on a tiny synthetic folder (200 users × 150 items, 2 epochs).

Checks the protocol, not only the files: the recipe is the argmax of validation numbers this test
recomputes from the run folders; the test split is scored once per search and only after every
validation score; the table, figures and PDF exist and hold sane values.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import hashrec_utils.study as study_mod
from hashrec_utils.__main__ import main
from hashrec_utils.data import load_dataset, synthetic_interactions
from hashrec_utils.metrics import evaluate_topk
from hashrec_utils.retrieval import hamming_topk


def write_folder(folder, n_users=200, n_items=150, n_interactions=4000, seed=0):
    """LightGCN ``user item item ...`` train/test files; a fifth of each user's items (at least 3) to test."""
    frame = synthetic_interactions(n_users, n_items, n_interactions, seed=seed)
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    train, test = [], []
    for user, group in frame.groupby("user"):
        items = rng.permutation(group["item"].to_numpy())
        n_test = len(items) // 5 if len(items) >= 3 else 0
        train.append(" ".join(map(str, [user, *items[n_test:]])))
        if n_test:
            test.append(" ".join(map(str, [user, *items[:n_test]])))
    (folder / "train.txt").write_text("\n".join(train) + "\n")
    (folder / "test.txt").write_text("\n".join(test) + "\n")
    return folder


def same(a, b) -> bool:
    a, b = sp.csr_matrix(a), sp.csr_matrix(b)
    return a.shape == b.shape and (a != b).nnz == 0


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    """Run the CLI once with HASHREC_ROOT in a temporary folder, recording every evaluation."""
    root = tmp_path_factory.mktemp("root")
    folder = write_folder(root / "data" / "my data!")  # sanitised to my_data
    mp = pytest.MonkeyPatch()
    mp.setenv("HASHREC_ROOT", str(root))
    calls = []

    def counting(topk, target, ks=(10, 20, 50), users=None):
        calls.append(sp.csr_matrix(target))
        return evaluate_topk(topk, target, ks, users)

    mp.setattr(study_mod, "evaluate_topk", counting)
    try:
        assert main(["study", "--dataset", str(folder), "--profile", "quick", "--set", "epochs=2"]) == 0
    finally:
        mp.undo()
    return root, folder, calls


def test_files_exist(done):
    root, _, _ = done
    for path in ("results/my_data/study_runs.json", "results/my_data/study_table.csv",
                 "results/my_data/study_table.json", "results/my_data/study_summary.json",
                 "figures/my_data/study_tradeoff.png", "figures/my_data/study_tradeoff.pdf",
                 "figures/my_data/study_ratio.png", "figures/my_data/study_ratio.pdf",
                 "report/study-my_data.pdf"):
        assert (root / path).is_file(), path
    assert (root / "runs" / "my_data" / "quick").is_dir()


def test_recipe_is_the_argmax_of_validation(done):
    root, folder, _ = done
    runs = json.loads((root / "results/my_data/study_runs.json").read_text())
    summary = json.loads((root / "results/my_data/study_summary.json").read_text())
    data = load_dataset(folder, valid_fraction=0.1, seed=0)  # the quick profile's split of this folder
    recomputed = {}
    for run in runs:
        assert (root / "runs" / "my_data" / "quick") in Path(run["folder"]).parents
        if run["kind"] != "hash":
            continue
        with np.load(f"{run['folder']}/embeddings.npz") as emb:
            ids = hamming_topk(emb["user_codes"], emb["item_codes"], 20, exclude=data.train)
        recomputed[run["run"]] = evaluate_topk(ids, data.valid, ks=(20,))["recall@20"]
        assert run["valid"]["hamming"]["recall@20"] == pytest.approx(recomputed[run["run"]], abs=1e-12)
    assert set(recomputed) == {"signswish", "guided_ste"}
    best = max(recomputed, key=recomputed.get)
    assert summary["chosen_recipe"] == best
    assert [r["run"] for r in runs if r.get("chosen")] == [best]
    assert summary["selection"][best]["recall@20"] == pytest.approx(recomputed[best], abs=1e-12)


def test_test_split_scored_once_per_search_after_validation(done):
    _, folder, calls = done
    data = load_dataset(folder, valid_fraction=0.1, seed=0)
    kinds = ["test" if same(c, data.test) else "valid" if same(c, data.valid) else "other" for c in calls]
    assert "other" not in kinds
    n_searches = 2 + len(study_mod.CANDIDATES)  # continuous, hamming, hierarchical at each C
    assert kinds.count("test") == n_searches
    assert kinds[-n_searches:] == ["test"] * n_searches  # nothing scored on valid after the test is read


def test_table(done):
    root, _, _ = done
    table = pd.read_csv(root / "results/my_data/study_table.csv")
    assert set(table["search"]) == {"continuous", "hamming", "hierarchical"}
    assert sorted(table.loc[table["search"] == "hierarchical", "candidates"]) == [100, 200]
    for col in ("recall@20", "ndcg@20", "recall@50"):
        assert table[col].between(0, 1).all(), col
    assert (table["queries_per_s"] > 0).all()
    dim = json.loads((root / "results/my_data/study_summary.json").read_text())["embedding_dim"]
    by = dict(zip(table["search"], table["bytes_per_item"]))
    assert by["continuous"] == 4 * dim and by["hamming"] == 64 // 8 and by["hierarchical"] == 8 + 4 * dim
    summary = json.loads((root / "results/my_data/study_summary.json").read_text())
    exact = table.loc[table["search"] == "continuous", "recall@20"].item()
    hamming = table.loc[table["search"] == "hamming", "recall@20"].item()
    assert summary["lightgcn_recall@20"] == pytest.approx(exact)
    assert summary["best_hamming_ratio"] == pytest.approx(hamming / exact)
    assert summary["dataset"]["users"] == 200


def test_pdf(done):
    from pypdf import PdfReader

    root, _, _ = done
    reader = PdfReader(root / "report" / "study-my_data.pdf")
    assert len(reader.pages) >= 1
    text = " ".join(page.extract_text() for page in reader.pages)
    summary = json.loads((root / "results/my_data/study_summary.json").read_text())
    assert summary["chosen_recipe"] in text
    assert "Which search when" in text


def test_rerun_reuses_runs(done, monkeypatch, capsys):
    """A second study of the same folder trains nothing (every run folder is complete)."""
    root, folder, _ = done
    monkeypatch.setenv("HASHREC_ROOT", str(root))
    before = {p: p.stat().st_mtime_ns for p in (root / "runs").rglob("metrics.json")}
    assert main(["study", "--dataset", str(folder), "--profile", "quick", "--set", "epochs=2"]) == 0
    assert {p: p.stat().st_mtime_ns for p in (root / "runs").rglob("metrics.json")} == before
    assert capsys.readouterr().out.count("run complete") == 3


@pytest.mark.parametrize("folder, name", [("/x/ml-1m", "ml-1m"), ("/x/my data!", "my_data"), ("/x/default", "default-data"),
                                          ("/x/a/b.c/", "b.c"), ("/x/%%%", "dataset")])
def test_dataset_name(folder, name):
    assert study_mod.dataset_name(folder) == name


def test_bad_settings(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        study_mod.StudySettings(str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="format must be one of"):
        study_mod.StudySettings(str(tmp_path), format="xml")
    with pytest.raises(ValueError, match="multiple of 8"):
        study_mod.StudySettings(str(tmp_path), bits=12)
    with pytest.raises(ValueError, match="candidates must each be at least 50"):
        study_mod.StudySettings(str(tmp_path), candidates=(20,))


def test_format_edges_reads_an_ambiguous_edge_list(tmp_path, monkeypatch):
    """``user item rating timestamp`` lines of four integers: a user repeats on several lines, so ``auto``
    reads an edge list; ``--format edges`` reads them once into LightGCN lines under runs/<name>/data,
    which every run then trains on."""
    monkeypatch.setenv("HASHREC_ROOT", str(tmp_path))
    src = write_folder(tmp_path / "lgcn", n_users=120, n_items=90, n_interactions=1800)
    folder = tmp_path / "edges"
    folder.mkdir()
    for part in ("train", "test"):
        lines = [f"{tok[0]} {item} 5 978300760" for line in (src / f"{part}.txt").read_text().split("\n") if line
                 for tok in [line.split()] for item in tok[1:]]
        (folder / f"{part}.txt").write_text("\n".join(lines) + "\n")
    from hashrec_utils.data import detect_format

    assert detect_format(folder / "train.txt") == "edges"
    out = study_mod.study(study_mod.StudySettings(str(folder), profile="quick", format="edges",
                                                  overrides={"epochs": 1}, progress=False))
    assert (tmp_path / "runs" / "edges" / "data" / "train.txt").is_file()
    assert same(load_dataset(tmp_path / "runs" / "edges" / "data").train, load_dataset(src).train)
    assert out["dataset"]["users"] == 120
