"""The comparison's teacher (hashrec_utils.experiments.teacher_size): sizes tried in order on
validation, the next only after the one before won, then the chosen size's schedule doubled while it
is still learning and validation rises, test never read by the choice; and a table built on another
teacher (size, schedule) names, sizes and initialises every run that starts from it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from hashrec_utils.experiments import runs, teacher_size
from hashrec_utils.experiments.rows import variant_plan, variant_run_name
from hashrec_utils.experiments.teacher_size import read_teacher_size, teacher_pending
from hashrec_utils.profiles import Teacher


def _fake_teachers(monkeypatch, tmp_path, valid: dict, test: dict | None = None, kept: dict | None = None):
    """lightgcn_run replaced by a lookup of each size's (or ``(size, epochs)``'s) validation (and a
    poisoned test) recall@20 and kept epoch (default 200: settled early, no longer schedule to try)."""
    calls = []
    monkeypatch.setenv("HASHREC_ROOT", str(tmp_path))

    def fake(profile, dataset, *, valid_fraction=None, dim=None, epochs=None, progress=False, **kw):
        size, length = dim or 64, epochs or 450
        key = size if epochs is None else (size, epochs)
        calls.append(key)
        out = runs.lightgcn_plan(profile, dataset, epochs=epochs, valid_fraction=valid_fraction, dim=dim)[1]
        out.mkdir(parents=True, exist_ok=True)  # the real naming
        return {"valid": {"recall@20": valid[key]}, "recall@20": (test or {}).get(key, 1.0 - valid[key]),
                "kept_epoch": (kept or {}).get(key, 200), "epochs_run": length, "train_seconds": 4.5 * size}, out

    monkeypatch.setattr(runs, "lightgcn_run", fake)
    return calls


def test_sizes_are_tried_in_order_while_validation_improves(monkeypatch, tmp_path):
    calls = _fake_teachers(monkeypatch, tmp_path, {64: 0.1988, 128: 0.2050, 256: 0.2040})
    record = teacher_size.teacher_size("full", "gowalla", progress=False)
    assert calls == [64, 128, 256] and record["chosen"] == 128 and record["pending"] == []
    first, second = record["sizes"][:2]
    assert first["run"] == "lightgcn_gowalla_L3_s0_v10"  # the profile's size keeps its folder (and its numbers)
    assert second["run"] == "lightgcn_gowalla_L3_s0_d128_v10" and second["seconds_per_epoch"] == pytest.approx(1.28)
    assert not second["kept_is_last"] and record["table_teacher_dim"] == 64 and record["table_teacher_epochs"] == 450
    assert record["schedules"] == [] and record["chosen_epochs"] == 450 and record["pending_epochs"] == []
    assert read_teacher_size("full", "gowalla") == json.loads(json.dumps(record))


def test_a_size_that_does_not_win_ends_the_search_and_test_is_never_read(monkeypatch, tmp_path):
    # 128 is better on test but not on validation: 64 stays, 256 is never trained
    calls = _fake_teachers(monkeypatch, tmp_path, {64: 0.1988, 128: 0.1980, 256: 0.3}, test={64: 0.17, 128: 0.19})
    record = teacher_size.teacher_size("full", "gowalla", progress=False)
    assert calls == [64, 128] and record["chosen"] == 64 and record["pending"] == []
    assert teacher_pending("full", "gowalla", Teacher(64, 450)) is None


def test_a_prefix_of_the_sizes_leaves_the_rest_pending_when_its_last_won(monkeypatch, tmp_path):
    calls = _fake_teachers(monkeypatch, tmp_path, {64: 0.1988, 128: 0.2050})
    record = teacher_size.teacher_size("full", "gowalla", dims=(64, 128), progress=False)
    assert calls == [64, 128] and record["chosen"] == 128 and record["pending"] == [256]
    moves = {"chosen": 128, "chosen_epochs": 450, "table_epochs": 450, "pending": [256], "pending_epochs": []}
    assert teacher_pending("full", "gowalla", Teacher(64, 450)) == {**moves, "table": 64}
    assert teacher_pending("full", "gowalla", Teacher(128, 450)) == {**moves, "table": 128}
    with pytest.raises(ValueError, match="distinct positive sizes"):
        teacher_size.teacher_size("full", "gowalla", dims=(64, 64))
    with pytest.raises(ValueError, match="no teacher_dims"):
        teacher_size.teacher_size("default", "ml-1m")


def test_the_chosen_size_still_learning_gets_a_doubled_schedule_up_to_the_cap(monkeypatch, tmp_path):
    # 128 wins and keeps its last epoch: 900 epochs are tried and win; still learning at 900, but 1,800
    # is past the full profile's cap (2x of 450), so the search ends there and says so
    calls = _fake_teachers(monkeypatch, tmp_path, {64: 0.1988, 128: 0.2050, 256: 0.2040, (128, 900): 0.2080},
                           kept={128: 450, (128, 900): 900})
    record = teacher_size.teacher_size("full", "gowalla", progress=False)
    assert calls == [64, 128, 256, (128, 900)]
    assert (record["chosen"], record["chosen_epochs"]) == (128, 900) and record["pending_epochs"] == []
    assert [e["run"] for e in record["schedules"]] == ["lightgcn_gowalla_L3_s0_d128_e900_v10"]
    assert record["learning_at_cap"] and record["sizes"][1]["kept_is_last"]
    assert teacher_pending("full", "gowalla", Teacher(128, 450)) == {
        "chosen": 128, "chosen_epochs": 900, "table": 128, "table_epochs": 450, "pending": [], "pending_epochs": []}
    assert teacher_pending("full", "gowalla", Teacher(128, 900)) is None


def test_a_longer_schedule_that_does_not_win_keeps_the_shorter(monkeypatch, tmp_path):
    calls = _fake_teachers(monkeypatch, tmp_path, {64: 0.1988, 128: 0.2050, 256: 0.2040, (128, 900): 0.2049},
                           test={(128, 900): 0.5}, kept={128: 400})
    record = teacher_size.teacher_size("full", "gowalla", progress=False)
    assert calls[-1] == (128, 900) and (record["chosen"], record["chosen_epochs"]) == (128, 450)
    assert len(record["schedules"]) == 1 and not record["learning_at_cap"]


def test_the_schedule_waits_for_the_sizes_and_for_being_asked(monkeypatch, tmp_path):
    calls = _fake_teachers(monkeypatch, tmp_path, {64: 0.1988, 128: 0.2050, 256: 0.2040}, kept={128: 450})
    record = teacher_size.teacher_size("full", "gowalla", dims=(64, 128), progress=False)
    assert calls == [64, 128] and record["pending"] == [256] and record["pending_epochs"] == [900]
    assert record["schedules"] == [] and not record["learning_at_cap"]
    record = teacher_size.teacher_size("full", "gowalla", schedule=False, progress=False)
    assert calls[2:] == [64, 128, 256] and record["pending"] == [] and record["pending_epochs"] == [900]
    # a stage without a schedule cap has no schedule step: still learning at its only schedule, said so
    from dataclasses import replace

    from hashrec_utils.experiments import comparison

    full = comparison.COMPARISON["full"]
    monkeypatch.setattr(comparison, "COMPARISON", {"full": replace(full, teacher_max_length=None)})
    record = teacher_size.teacher_size("full", "gowalla", progress=False)
    assert calls[5:] == [64, 128, 256] and record["pending_epochs"] == [] and record["learning_at_cap"]
    with pytest.raises(ValueError, match="at least 1"):
        replace(full, teacher_max_length=0.5)


def test_reuse_committed_reads_a_size_whose_folder_is_absent(monkeypatch, tmp_path):
    _fake_teachers(monkeypatch, tmp_path, {64: 0.1988, 128: 0.2050})
    teacher_size.teacher_size("full", "gowalla", dims=(64, 128), progress=False)
    for folder in (tmp_path / "runs" / "full").iterdir():
        folder.rmdir()
    calls = _fake_teachers(monkeypatch, tmp_path, {64: 0.5, 128: 0.5})  # would change the answer if trained
    record = teacher_size.teacher_size("full", "gowalla", dims=(64, 128), progress=False, reuse_committed=True)
    assert calls == [] and record["chosen"] == 128 and all(e["reused_committed"] for e in record["sizes"])


def test_a_run_without_a_validation_split_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("HASHREC_ROOT", str(tmp_path))
    monkeypatch.setattr(runs, "lightgcn_run", lambda *a, **kw: ({"valid": None, "recall@20": 0.2, "kept_epoch": 1,
                                                                 "epochs_run": 1}, Path("somewhere")))
    with pytest.raises(ValueError, match="needs a validation split"):
        teacher_size.teacher_size("full", "gowalla", dims=(64,), progress=False)


def test_a_table_on_a_larger_teacher_sizes_names_and_initialises_every_run_that_starts_from_it():
    """Resolved without training (the full profile's Gowalla settings): a teacher-distilled row and the
    post-hoc sign row take the teacher's size and start from the ``_d128`` LightGCN; a published recipe
    on its own encoder has no teacher, so its settings and folder do not move; the profile's size is
    named as it always was (no number moves)."""
    vf = 0.1
    config, out = variant_plan("full", "signswish", dataset="gowalla", valid_fraction=vf, teacher=Teacher(128))
    base_config, base_out = variant_plan("full", "signswish", dataset="gowalla", valid_fraction=vf)
    assert config.dim == 128 and base_config.dim == 64 and config.bits == base_config.bits == 64
    assert Path(config.hash_params["init"]).name == "lightgcn_gowalla_L3_s0_d128_v10"
    assert Path(base_config.hash_params["init"]).name == "lightgcn_gowalla_L3_s0_v10"
    assert out.name == base_out.name.replace("_s0", "_s0_d128", 1)
    assert variant_run_name("full", "signswish", dataset="gowalla", valid_fraction=vf, teacher=Teacher(128)) == out.name
    assert variant_run_name("full", "signswish", dataset="gowalla", valid_fraction=vf) == base_out.name
    own, own_out = variant_plan("full", "bgch_published", dataset="gowalla", valid_fraction=vf, teacher=Teacher(128))
    same, same_out = variant_plan("full", "bgch_published", dataset="gowalla", valid_fraction=vf)
    assert own == same and own_out == same_out and "init" not in own.hash_params
    # the profile's own size set explicitly is the size unset: same settings, same folders
    assert variant_plan("full", "signswish", dataset="gowalla", valid_fraction=vf, teacher=Teacher(64)) == (base_config, base_out)
    assert runs.lightgcn_plan("full", "gowalla", valid_fraction=vf, dim=64) == runs.lightgcn_plan("full", "gowalla",
                                                                                                  valid_fraction=vf)
    sign, sign_out = runs.hash_plan("full", "sign", bits=128, dataset="gowalla", valid_fraction=vf, teacher=Teacher(128))
    assert sign.dim == 128 and sign_out.name.endswith("_d128") and "d128" in sign.hash_params["init"]
    # a longer schedule: the teacher's folder and every run's from it carry it too; the profile's own
    # schedule given explicitly is the schedule unset
    long, long_out = variant_plan("full", "signswish", dataset="gowalla", valid_fraction=vf, teacher=Teacher(128, 900))
    assert Path(long.hash_params["init"]).name == "lightgcn_gowalla_L3_s0_d128_e900_v10" and long.dim == 128
    assert long_out.name == base_out.name.replace("_s0", "_s0_d128_e900", 1) and long.epochs == config.epochs
    assert variant_plan("full", "signswish", dataset="gowalla", valid_fraction=vf, teacher=Teacher(128, 450)) == (config, out)
    assert runs.own_teacher("full", "gowalla", Teacher(64, 450)) is None
    assert runs.own_teacher("full", "gowalla", Teacher(64, 900)) == Teacher(None, 900)
    assert runs.lightgcn_plan("full", "gowalla", valid_fraction=vf, **runs.lightgcn_args(Teacher(None, 900)))[0].epochs == 900
    assert runs.lightgcn_plan("full", "gowalla", valid_fraction=vf, **runs.lightgcn_args(Teacher(64, 450))) == \
        runs.lightgcn_plan("full", "gowalla", valid_fraction=vf)
    for bad in (0, -64, 64.0, True):
        with pytest.raises(ValueError, match="positive int"):
            Teacher(bad)


def test_a_hash_run_trains_on_a_larger_teacher_and_keeps_its_code_length(tmp_path, monkeypatch):
    """End to end on the quick slice of MovieLens-1M: a teacher twice the profile's size (``_d<n>``,
    beside the profile's own) is trained where the run needs it, and the hash layer maps its
    dimensions to 16 bits (two packed bytes an item)."""
    import numpy as np

    from hashrec_utils.settings import train_config

    monkeypatch.setenv("HASHREC_ROOT", str(tmp_path))
    base = train_config("quick", "ml-1m").dim
    size = 2 * base
    metrics, out = runs.hash_run("quick", "ste", bits=16, teacher=Teacher(size))
    teacher = tmp_path / "runs" / "quick" / runs.lightgcn_run_name("ml-1m", dim=size)
    assert out.name.endswith(f"_d{size}") and (teacher / "model.pt").exists()
    assert json.loads((out / "config.json").read_text())["dim"] == size
    emb = np.load(out / "embeddings.npz")
    assert emb["item_codes"].dtype == np.uint8 and emb["item_codes"].shape[1] * 8 == 16 and emb["item"].shape[1] == size
    assert np.load(teacher / "embeddings.npz")["item"].shape[1] == size
    assert 0.0 <= metrics["hamming"]["recall@20"] <= 1.0
