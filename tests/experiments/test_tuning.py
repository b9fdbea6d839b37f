"""The equal tuning budget (hashrec_utils.experiments.tuning): the grid every row gets, selection on
validation only, winners written where every run reads them, and their run folders reused."""
from __future__ import annotations

import json

import pytest

from hashrec_utils.experiments import rows as table_rows
from hashrec_utils.experiments import runs, tuning
from hashrec_utils.experiments.rows import GridPoint, tuned_point
from hashrec_utils.experiments.tuning import TuningGrid, own_alternatives, tune_row


def test_grid_point_tag_names_only_what_differs_from_the_base():
    assert GridPoint().tag == ""
    assert GridPoint(0.3, 1.0).tag == "lr0.3"
    assert GridPoint(1.0, 2.0, {"decay": 0.9}).tag == "len2_decay0.9"
    point = GridPoint(0.3, 2.0, {"n_terms": 4})
    assert GridPoint(**point.to_json()) == point  # what tuned.json stores reads back as the same point


def test_own_alternatives_are_the_values_the_row_does_not_already_use():
    assert own_alternatives("ste") == []  # no schedule of its own
    assert own_alternatives("guided_ste") == [{"decay": 0.9}]  # settings.SCHEDULES: 0.95
    assert own_alternatives("hashgnn") == [{"decay": 0.9}]  # guided STE too
    assert own_alternatives("bgch") == [{"n_terms": 8}]  # its estimator default: 4
    assert own_alternatives("bgch_published") == [{"n_terms": 4}]  # the row fixes 8 (official MovieLens setting)
    assert own_alternatives("gumbel_pairwise") == [{"tau0": 0.3}]


def test_grid_must_start_at_the_base_settings():
    with pytest.raises(ValueError, match="lr_factors must start with the base 1.0"):
        TuningGrid(lr_factors=(0.3, 1.0))
    with pytest.raises(ValueError, match="length_factors"):
        TuningGrid(length_factors=(1.0, -2.0))


def _fake_runs(monkeypatch, tmp_path, scores: dict, best_epochs: dict | None = None):
    """variant_run replaced by a lookup of a validation (and a poisoned test) score per grid point;
    its kept epoch is the schedule's last unless ``best_epochs`` names another."""
    calls = []

    def fake(profile, label, *, seed=0, point=None, progress=False, dataset="ml-1m", **kw):
        calls.append(point)
        out = tmp_path / f"{label}_{point.tag or 'base'}"
        out.mkdir(exist_ok=True)
        epochs = round(10 * point.length_factor)
        (out / "config.json").write_text(json.dumps({"epochs": epochs}))
        valid = scores[point]
        # test numbers ordered against validation: selection must not read them
        metrics = {"hamming": {"recall@20": 1.0 - valid}, "valid": {"hamming": {"recall@20": valid},
                                                                   "hierarchical": {"recall@20": valid + 0.1}},
                   "best_epoch": (best_epochs or {}).get(point, epochs), "train_seconds": 1.0}
        return metrics, out

    monkeypatch.setattr(tuning, "variant_run", fake)
    return calls


def test_tune_row_picks_lr_and_length_then_its_own_schedule_on_validation(monkeypatch, tmp_path):
    grid = TuningGrid((1.0, 0.3), (1.0, 2.0))
    scores = {GridPoint(1.0, 1.0): 0.20, GridPoint(1.0, 2.0): 0.22, GridPoint(0.3, 1.0): 0.21,
              GridPoint(0.3, 2.0): 0.19, GridPoint(1.0, 2.0, {"decay": 0.9}): 0.23}
    calls = _fake_runs(monkeypatch, tmp_path, scores)
    rows = tune_row("quick", "guided_ste", grid)
    assert calls == list(scores)  # the 2 × 2 grid in order, then the own schedule at its winner
    winner = [r for r in rows if r["winner"]]
    assert len(winner) == 1 and winner[0]["_point"] == GridPoint(1.0, 2.0, {"decay": 0.9})
    assert winner[0]["epochs"] == 20 and winner[0]["step"] == "own schedule"


def test_a_winner_at_the_grids_longest_schedule_is_doubled_while_validation_improves(monkeypatch, tmp_path):
    grid = TuningGrid((1.0,), (1.0, 2.0), max_length_factor=16.0)
    assert grid.extensions(2.0) == (4.0, 8.0, 16.0) and grid.extensions(1.0) == ()
    own = {"beta": 10.0}
    scores = {GridPoint(1.0, 1.0): 0.20, GridPoint(1.0, 2.0): 0.22, GridPoint(1.0, 2.0, own): 0.23,
              GridPoint(1.0, 4.0, own): 0.25, GridPoint(1.0, 8.0, own): 0.24}
    calls = _fake_runs(monkeypatch, tmp_path, scores)
    rows = tune_row("quick", "signswish", grid)
    assert calls == list(scores)  # stops at the first doubling that does not improve: 16 is never run
    winner = [r for r in rows if r["winner"]]
    assert winner[0]["_point"] == GridPoint(1.0, 4.0, own) and winner[0]["step"] == "longer schedule"
    assert winner[0]["epochs"] == 40


def test_a_winner_at_the_edge_whose_validation_peaked_early_is_not_extended(monkeypatch, tmp_path):
    grid = TuningGrid((1.0,), (1.0, 2.0), own=False, max_length_factor=8.0)
    scores = {GridPoint(1.0, 1.0): 0.20, GridPoint(1.0, 2.0): 0.21}
    # kept epoch 8 of 20: the doubled schedule's second half added nothing, so × 4 is not run
    calls = _fake_runs(monkeypatch, tmp_path, scores, best_epochs={GridPoint(1.0, 2.0): 8})
    rows = tune_row("quick", "ste", grid)
    assert calls == list(scores) and rows[1]["winner"]
    assert tuning.still_learning({"best_epoch": 11, "epochs": 20})
    assert not tuning.still_learning({"best_epoch": 10, "epochs": 20})


def test_a_winner_inside_the_grid_is_not_extended(monkeypatch, tmp_path):
    grid = TuningGrid((1.0,), (1.0, 2.0), own=False, max_length_factor=8.0)
    calls = _fake_runs(monkeypatch, tmp_path, {GridPoint(1.0, 1.0): 0.22, GridPoint(1.0, 2.0): 0.21})
    rows = tune_row("quick", "ste", grid)
    assert calls == [GridPoint(1.0, 1.0), GridPoint(1.0, 2.0)] and rows[0]["winner"]
    with pytest.raises(ValueError, match="max_length_factor .* at least the grid's longest"):
        TuningGrid(length_factors=(1.0, 4.0), max_length_factor=2.0)


def test_tune_row_ties_keep_the_base_settings(monkeypatch, tmp_path):
    grid = TuningGrid((1.0, 0.3), (1.0,))
    _fake_runs(monkeypatch, tmp_path, {GridPoint(1.0, 1.0): 0.2, GridPoint(0.3, 1.0): 0.2})
    rows = tune_row("quick", "ste", grid)
    assert [r["winner"] for r in rows] == [True, False]


def test_winners_are_written_and_read_back_by_every_run(monkeypatch, tmp_path):
    path = tmp_path / "tuned.json"
    monkeypatch.setattr(table_rows, "TUNED_FILE", path)
    monkeypatch.setenv("HASHREC_ROOT", str(tmp_path))
    monkeypatch.setattr(tuning, "TUNING_GRID", {"quick": TuningGrid((1.0, 0.3), (1.0,))})
    _fake_runs(monkeypatch, tmp_path, {GridPoint(1.0, 1.0): 0.1, GridPoint(0.3, 1.0): 0.3})
    path.write_text(json.dumps({"default": {"ml-1m": {"ste": {"lr_factor": 1.0, "length_factor": 2.0, "estimator": {}}}}}))
    frame = tuning.tune("quick", ("ste",), progress=False)
    assert frame["winner"].tolist() == [False, True]
    saved = json.loads(path.read_text())
    assert saved["quick"]["ml-1m"]["ste"] == {"lr_factor": 0.3, "length_factor": 1.0, "estimator": {}}
    assert saved["default"]["ml-1m"]["ste"]["length_factor"] == 2.0  # another profile's winners are kept
    assert tuned_point("quick", "ste") == GridPoint(0.3, 1.0)
    assert tuned_point("quick", "hashnet") == GridPoint()  # untuned row: its base settings
    assert tuned_point("quick", "ste", "gowalla") == GridPoint()  # winners stay with the data they were tuned on
    assert (tmp_path / "results" / "quick" / "tuning.csv").exists()


def test_a_winner_scales_the_run_settings(monkeypatch, tmp_path):
    """The winner's factors reach the TrainConfig overrides: lr × factor, epochs × factor, its own
    schedule merged into the estimator's parameters, its own folder."""
    seen = {}

    def fake_hash_run(profile, method, **kw):
        seen.update(kw, method=method)
        return {}, tmp_path

    monkeypatch.setattr(runs, "hash_run", fake_hash_run)
    table_rows.variant_run("default", "guided_ste", point=GridPoint(0.3, 2.0, {"decay": 0.9}))
    assert seen["lr_factor"] == 0.3 and seen["length_factor"] == 2.0
    assert seen["estimator"] == {"decay": 0.9} and seen["tag"] == "lr0.3_len2_decay0.9"
    base = runs.hash_overrides("quick", "guided_ste", init="x", shape=_shape())
    scaled = runs.hash_overrides("quick", "guided_ste", init="x", shape=_shape(), lr_factor=0.3, length_factor=2.0)
    assert scaled["lr"] == pytest.approx(0.3 * base["lr"]) and scaled["epochs"] == 2 * base["epochs"]
    with pytest.raises(ValueError, match="must be positive"):
        runs.hash_overrides("quick", "guided_ste", init="x", shape=_shape(), lr_factor=0.0)


def _shape():
    from hashrec_utils.settings import DataShape

    return DataShape(600, 3000, 50_000)


def test_a_smaller_grid_skips_the_own_schedule_and_records_only_its_points(monkeypatch, tmp_path):
    scores = {GridPoint(1.0, 1.0): 0.20, GridPoint(1.0, 2.0): 0.21}
    calls = _fake_runs(monkeypatch, tmp_path, scores)
    rows = tune_row("quick", "guided_ste", TuningGrid((1.0,), (1.0, 2.0), own=False))
    assert calls == list(scores) and [r["winner"] for r in rows] == [False, True]


def test_a_grid_on_a_carved_validation_split_keeps_other_datasets_points_and_winners(monkeypatch, tmp_path):
    """tune(dataset=, valid_fraction=): every point trains on the carve-out (notebook 07's runs), the
    winners land under that dataset, and the other dataset's grid rows and winners stay."""
    path = tmp_path / "tuned.json"
    monkeypatch.setattr(table_rows, "TUNED_FILE", path)
    monkeypatch.setenv("HASHREC_ROOT", str(tmp_path))
    monkeypatch.setattr(tuning, "TUNING_GRID", {"quick": TuningGrid((1.0,), (1.0, 2.0), own=False)})
    seen = []

    def fake(profile, label, *, seed=0, point=None, progress=False, dataset="ml-1m", valid_fraction=None, **kw):
        seen.append((dataset, valid_fraction))
        out = tmp_path / f"{dataset}_{label}_{point.tag or 'base'}"
        out.mkdir(exist_ok=True)
        (out / "config.json").write_text(json.dumps({"epochs": 10}))
        return {"valid": {"hamming": {"recall@20": 0.1 * point.length_factor}}}, out

    monkeypatch.setattr(tuning, "variant_run", fake)
    tuning.tune("quick", ("ste",), progress=False)  # ml-1m, the profile's own validation split
    frame = tuning.tune("quick", ("ste",), progress=False, dataset="gowalla", valid_fraction=0.1)
    assert seen[2:] == [("gowalla", 0.1), ("gowalla", 0.1)]
    assert sorted(frame["dataset"].unique()) == ["gowalla", "ml-1m"] and len(frame) == 4
    saved = json.loads(path.read_text())["quick"]
    assert set(saved) == {"ml-1m", "gowalla"} and saved["gowalla"]["ste"]["length_factor"] == 2.0
    assert tuned_point("quick", "ste", "gowalla") == GridPoint(1.0, 2.0)



def test_a_distilling_row_gets_its_objectives_levers_each_once_and_keeps_only_an_improvement(monkeypatch, tmp_path):
    from hashrec_utils.experiments.tuning import objective_levers

    grid = TuningGrid((1.0,), (1.0,), own=False, levers=True)
    kd3, both = GridPoint(objective={"distill": 3.0}), GridPoint(objective={"distill": 3.0, "distill_tau": 0.5})
    assert kd3.tag == "kd3" and both.tag == "kd3_tau0.5" and GridPoint(**both.to_json()) == both
    colder = GridPoint(objective={"distill": 3.0, "distill_tau": 0.25})
    calls = _fake_runs(monkeypatch, tmp_path, {GridPoint(): 0.20, kd3: 0.22, both: 0.21, colder: 0.23})
    rows = tune_row("quick", "ste", grid)
    assert calls == [GridPoint(), kd3, both, colder]  # each temperature on top of the kept weight
    assert [r["winner"] for r in rows] == [False, False, False, True] and rows[3]["step"] == "objective lever"
    # the published recipes and the pairwise family do not distil: nothing to pull
    assert objective_levers("luo_wu", GridPoint()) == [] and objective_levers("ste_pairwise", GridPoint()) == []
    assert objective_levers("bgch_published", GridPoint()) == []
    with pytest.raises(ValueError, match="unknown hash parameters"):
        GridPoint(objective={"n_negatives": 8192})


def test_the_final_winner_still_learning_at_its_end_is_doubled_again_after_the_levers(monkeypatch, tmp_path):
    """Step 5: step 3 stops at its cap (2×), the levers win at 2×, still learning there, so the winner is
    doubled again (4×, 8×) while validation improves; 16× is past step 5's cap and never runs."""
    grid = TuningGrid((1.0,), (1.0, 2.0), own=False, max_length_factor=2.0, levers=True, final_length_factor=8.0)
    assert grid.extensions(2.0) == () and grid.extensions(2.0, 8.0) == (4.0, 8.0)
    kd3 = {"distill": 3.0}
    lever = lambda length, **o: GridPoint(1.0, length, objective={**kd3, **o})
    scores = {GridPoint(1.0, 1.0): 0.20, GridPoint(1.0, 2.0): 0.22, lever(2.0): 0.23, lever(2.0, distill_tau=0.5): 0.22,
              lever(2.0, distill_tau=0.25): 0.21, lever(4.0): 0.25, lever(8.0): 0.26}
    calls = _fake_runs(monkeypatch, tmp_path, scores)
    rows = tune_row("quick", "ste", grid)
    assert calls == list(scores)
    winner = [r for r in rows if r["winner"]]
    assert winner[0]["_point"] == lever(8.0) and winner[0]["step"] == "final schedule" and winner[0]["epochs"] == 80


def test_step_5_stops_at_the_first_doubling_that_does_not_improve_and_skips_a_peaked_winner(monkeypatch, tmp_path):
    grid = TuningGrid((1.0,), (1.0, 2.0), own=False, max_length_factor=2.0, levers=True, final_length_factor=8.0)
    kd3 = GridPoint(1.0, 2.0, objective={"distill": 3.0})
    tau = lambda t, length=2.0: GridPoint(1.0, length, objective={"distill": 3.0, "distill_tau": t})
    scores = {GridPoint(1.0, 1.0): 0.20, GridPoint(1.0, 2.0): 0.22, kd3: 0.23, tau(0.5): 0.22, tau(0.25): 0.21,
              GridPoint(1.0, 4.0, objective={"distill": 3.0}): 0.23}
    calls = _fake_runs(monkeypatch, tmp_path, scores)
    rows = tune_row("quick", "ste", grid)
    assert calls == list(scores)  # × 4 ties the winner: × 8 is never run, the 2× winner is kept
    assert [r["_point"] for r in rows if r["winner"]] == [kd3]
    # the same grid where the levers' winner peaked in its schedule's first half: no step 5
    calls = _fake_runs(monkeypatch, tmp_path, scores, best_epochs={kd3: 9})
    tune_row("quick", "ste", grid)
    assert calls == list(scores)[:5]
    with pytest.raises(ValueError, match="final_length_factor .* at least step 3's cap"):
        TuningGrid(length_factors=(1.0, 2.0), max_length_factor=4.0, final_length_factor=2.0)


def test_step_5_does_not_rerun_a_doubling_step_3_already_ran(monkeypatch, tmp_path):
    # no levers (a published recipe): step 3 ran × 4 and it did not improve, so step 5 asks nothing new
    grid = TuningGrid((1.0,), (1.0, 2.0), own=False, max_length_factor=4.0, final_length_factor=8.0)
    scores = {GridPoint(1.0, 1.0): 0.20, GridPoint(1.0, 2.0): 0.22, GridPoint(1.0, 4.0): 0.21}
    calls = _fake_runs(monkeypatch, tmp_path, scores)
    rows = tune_row("quick", "luo_wu", grid)
    assert calls == list(scores) and len(rows) == 3 and rows[1]["winner"]


def test_final_schedule_pending_names_the_rows_whose_recorded_grid_predates_step_5():
    """On the committed Gowalla grid as step 3 and 4 left it (the step-5 rows taken out): the winners
    still learning at a schedule step 5 doubles are pending; a winner that peaked early (BGCH, kept
    epoch 8 of 160) or sits inside the grid (HashGNN at × 1) is not; a recorded doubling, improving or
    not, clears the row."""
    import pandas as pd

    from hashrec_utils.config import results_dir
    from hashrec_utils.experiments.tuning import final_schedule_pending

    record = pd.read_csv(results_dir("full") / "tuning.csv", keep_default_na=False)
    record = record[record["step"] != "final schedule"]
    grid = TuningGrid(max_length_factor=4.0, levers=True, final_length_factor=8.0)
    pending = final_schedule_pending("full", "gowalla", grid, record)
    winners = record[record["winner"].astype(str) == "True"].set_index("row")
    assert "bgch_published" not in pending and "hashgnn" not in pending
    assert "signswish" in pending and "luo_wu" in pending
    for row in pending:
        assert int(winners.loc[row, "best_epoch"]) * 2 > int(winners.loc[row, "epochs"])
    assert final_schedule_pending("full", "ml-1m", grid, record) == []  # no grid recorded there
    assert final_schedule_pending("full", "gowalla", TuningGrid(max_length_factor=4.0), record) == []  # no step 5
    win = winners.loc["signswish"]
    doubled = {**win.to_dict(), "row": "signswish", "length_factor": 2 * float(win["length_factor"]), "winner": False,
               "step": "final schedule"}
    later = pd.concat([record, pd.DataFrame([doubled])], ignore_index=True)
    assert set(final_schedule_pending("full", "gowalla", grid, later)) == set(pending) - {"signswish"}


def test_reuse_committed_reads_the_recorded_points_and_trains_only_the_new_ones(monkeypatch, tmp_path):
    """tune --reuse-committed on the real committed Gowalla grid, HashGNN's row with its lr × 0.3
    points taken out: with no run folders here, the recorded points keep the record's numbers, the
    two missing points train, a point whose folder is on disk trains (resumes) even though recorded,
    and the winner is chosen over all of them."""
    import pandas as pd

    from hashrec_utils.config import repo_root

    committed = pd.read_csv(repo_root() / "results" / "full" / "tuning.csv")
    recorded = committed[(committed.row == "hashgnn") & (committed.lr_factor == 1.0)
                         & (committed.step == "lr × length")].set_index("length_factor")
    assert list(recorded.index) == [1.0, 2.0]
    (tmp_path / "results" / "full").mkdir(parents=True)
    committed[~((committed.row == "hashgnn") & (committed.lr_factor == 0.3))].to_csv(
        tmp_path / "results" / "full" / "tuning.csv", index=False)
    monkeypatch.setenv("HASHREC_ROOT", str(tmp_path))
    monkeypatch.setattr(table_rows, "TUNED_FILE", tmp_path / "tuned.json")
    on_disk = GridPoint(1.0, 2.0)
    (tmp_path / "runs" / "full" / table_rows.variant_run_name("full", "hashgnn", dataset="gowalla", point=on_disk,
                                                        valid_fraction=0.1)).mkdir(parents=True)
    trained = []

    def fake(profile, label, *, seed=0, point=None, progress=False, dataset="ml-1m", valid_fraction=None, **kw):
        trained.append(point)
        out = tmp_path / "runs" / profile / table_rows.variant_run_name(profile, label, seed=seed, dataset=dataset,
                                                                  point=point, valid_fraction=valid_fraction)
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps({"epochs": 40}))
        valid = 0.5 if point == GridPoint(0.3, 2.0) else 0.01
        return {"valid": {"hamming": {"recall@20": valid}, "hierarchical": {"recall@20": valid}},
                "best_epoch": 40, "train_seconds": 3.0}, out

    monkeypatch.setattr(tuning, "variant_run", fake)
    grid = TuningGrid((1.0, 0.3), (1.0, 2.0), own=False)
    frame = tuning.tune("full", ("hashgnn",), progress=False, dataset="gowalla", grid=grid, valid_fraction=0.1,
                        reuse_committed=True)
    assert trained == [on_disk, GridPoint(0.3, 1.0), GridPoint(0.3, 2.0)]
    mine = frame[frame.row == "hashgnn"].reset_index(drop=True)
    base = recorded.loc[1.0]
    assert frame.attrs["reused_committed"] == [base["run"]]
    for col in ("valid_recall@20", "valid_hierarchical_recall@20", "epochs", "best_epoch", "train_seconds", "run"):
        assert mine.loc[0, col] == base[col], col
    assert mine["winner"].tolist() == [False, False, False, True]
    assert tuned_point("full", "hashgnn", "gowalla") == GridPoint(0.3, 2.0)
    assert set(frame.row) == set(committed.row)  # the other rows' points are kept as recorded


def test_reuse_committed_without_a_grid_record_says_which_file_is_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("HASHREC_ROOT", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"committed grid; missing: .*results/full/tuning.csv"):
        tuning.tune("full", ("hashgnn",), progress=False, dataset="gowalla", reuse_committed=True)
    (tmp_path / "results" / "full").mkdir(parents=True)
    (tmp_path / "results" / "full" / "tuning.csv").write_text("row,dataset\nhashgnn,gowalla\n")
    with pytest.raises(ValueError, match=r"tuning.csv: no column best_epoch, epochs, run, .*not a tuning record"):
        tuning.tune("full", ("hashgnn",), progress=False, dataset="gowalla", reuse_committed=True)


def _two_teachers(monkeypatch, tmp_path, scores: dict):
    """variant_run replaced by a lookup of the validation score of ``(teacher dim, point)``: the
    profile's own teacher (dim None) or another; every point still learning at its end."""
    calls = []
    path = tmp_path / "tuned.json"
    monkeypatch.setattr(table_rows, "TUNED_FILE", path)
    monkeypatch.setenv("HASHREC_ROOT", str(tmp_path))

    def fake(profile, label, *, seed=0, point=None, progress=False, dataset="ml-1m", teacher=None, **kw):
        dim = teacher.dim if teacher else None
        calls.append((dim, point))
        out = tmp_path / f"{label}_{point.tag or 'base'}_{dim}"
        out.mkdir(exist_ok=True)
        epochs = round(10 * point.length_factor)
        (out / "config.json").write_text(json.dumps({"epochs": epochs}))
        return {"valid": {"hamming": {"recall@20": scores[dim, point]}}, "best_epoch": epochs}, out

    monkeypatch.setattr(tuning, "variant_run", fake)
    return calls


def test_on_a_new_teacher_a_row_keeps_its_winner_and_only_step_5_runs(monkeypatch, tmp_path):
    from hashrec_utils.profiles import Teacher

    p11, p12, p31, p32, p14 = (GridPoint(1.0, 1.0), GridPoint(1.0, 2.0), GridPoint(0.3, 1.0), GridPoint(0.3, 2.0),
                               GridPoint(1.0, 4.0))
    calls = _two_teachers(monkeypatch, tmp_path, {(None, p11): 0.20, (None, p12): 0.22, (None, p31): 0.19,
                                                  (None, p32): 0.18, (128, p12): 0.25, (128, p14): 0.26})
    monkeypatch.setattr(tuning, "TUNING_GRID", {"quick": TuningGrid((1.0, 0.3), (1.0, 2.0), own=False)})
    tuning.tune("quick", ("ste",), progress=False)
    assert tuned_point("quick", "ste") == p12 and len(calls) == 4
    grid = TuningGrid((1.0, 0.3), (1.0, 2.0), own=False, final_length_factor=4.0)
    frame = tuning.tune("quick", ("ste",), progress=False, grid=grid, teacher=Teacher(128))
    # the winner from the new teacher first (0.25 >= 0.22 on the old one): kept, then only step 5
    assert calls[4:] == [(128, p12), (128, p14)]
    new = frame[frame["teacher"] == "d128"]
    assert new["step"].tolist() == ["new teacher", "final schedule"] and new["winner"].tolist() == [False, True]
    old = frame[frame["teacher"] == ""]
    assert len(old) == 4 and old["winner"].sum() == 1  # the old teacher's points and winner stay in the record
    assert tuned_point("quick", "ste") == p14
    assert tuning.teacher_tuning_pending("quick", "ml-1m", Teacher(128)) == []
    assert tuning.teacher_tuning_pending("quick", "ml-1m", Teacher(256)) == ["ste"]
    assert tuning.teacher_tuning_pending("quick", "ml-1m", None) == []
    # step 5 is pending per teacher: done from the new one, never run from the old one
    assert tuning.final_schedule_pending("quick", "ml-1m", grid, teacher=Teacher(128)) == []
    assert tuning.final_schedule_pending("quick", "ml-1m", grid) == ["ste"]
    # the profile's own teacher given explicitly is the profile's own (no second grid)
    assert tuning.teacher_label(Teacher(128, 900)) == "d128_e900" and tuning.teacher_label(None) == ""


def test_on_a_new_teacher_a_row_whose_validation_drops_runs_the_whole_grid_again(monkeypatch, tmp_path):
    from hashrec_utils.profiles import Teacher

    p11, p12, p31, p32 = GridPoint(1.0, 1.0), GridPoint(1.0, 2.0), GridPoint(0.3, 1.0), GridPoint(0.3, 2.0)
    calls = _two_teachers(monkeypatch, tmp_path, {(None, p11): 0.20, (None, p12): 0.22, (None, p31): 0.19,
                                                  (None, p32): 0.18, (128, p12): 0.21, (128, p11): 0.20,
                                                  (128, p31): 0.23, (128, p32): 0.215})
    monkeypatch.setattr(tuning, "TUNING_GRID", {"quick": TuningGrid((1.0, 0.3), (1.0, 2.0), own=False)})
    tuning.tune("quick", ("ste",), progress=False)
    frame = tuning.tune("quick", ("ste",), progress=False, teacher=Teacher(128))
    # 0.21 < 0.22: the grid again on the new teacher, the point already run not run twice
    assert calls[4:] == [(128, p12), (128, p11), (128, p31), (128, p32)]
    new = frame[frame["teacher"] == "d128"]
    assert new["step"].tolist()[0] == "new teacher" and len(new) == 4
    assert tuned_point("quick", "ste") == p31 and new[new["winner"]]["lr_factor"].tolist() == [0.3]


def test_the_committed_gowalla_grid_reads_as_tuned_on_the_profiles_own_teacher():
    """The committed record predates the teacher column: every point reads as run from the profile's
    own teacher, so on a new teacher every tuned row is pending and keeps its recorded winner's score
    as the bar its settings must meet there."""
    import pandas as pd

    from hashrec_utils.config import results_dir
    from hashrec_utils.profiles import Teacher

    record = pd.read_csv(results_dir("full") / "tuning.csv", keep_default_na=False)
    gowalla = record[record["dataset"] == "gowalla"]
    tuned = list(dict.fromkeys(gowalla["row"]))
    assert tuning.teacher_tuning_pending("full", "gowalla", None, record) == []
    assert tuning.teacher_tuning_pending("full", "gowalla", Teacher(256), record) == tuned
    win = gowalla[(gowalla["row"] == "signswish") & (gowalla["winner"].astype(str) == "True")]
    assert tuning._tuned_elsewhere(record, "signswish", "gowalla", Teacher(256)) == float(win["valid_recall@20"].iloc[-1])
    assert tuning._tuned_elsewhere(record, "signswish", "gowalla", None) is None  # tuned on this very teacher
