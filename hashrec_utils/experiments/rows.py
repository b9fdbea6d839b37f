"""The table's rows: what each compared row is, and the settings it runs at.

A row is a label of the study's tables: a plain estimator on the LightGCN code table, or one of
:data:`EXTRA_VARIANTS` (the published recipes and the pairwise-objective rows), resolved by
:func:`row_spec`; :func:`row_family` and :func:`popcount_searchable` say how a row is read. Its
settings are a :class:`GridPoint` of the validation grid (:mod:`.tuning`), the winner
:func:`tuned_point` reads from :data:`TUNED_FILE`; :func:`variant_run` trains the row at that point
(:func:`.runs.hash_run`), :func:`variant_run_name` names its folder without training.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from ..profiles import Teacher
from . import runs as _runs


# Estimators that also run under the published pairwise objective (EXTRA_VARIANTS' "<est>_pairwise").
PAIRWISE_ESTIMATORS = ("ste", "guided_ste", "hashnet", "gumbel")

# Variants beyond the plain estimators: label -> (estimator, model, hash_params)
EXTRA_VARIANTS = {
    "guided_ste_sp": ("guided_ste", "lightgcn", {"freeze": True}),
    "hashgnn": ("guided_ste", "hashgnn", {}),
    "hashgnn_nr": ("guided_ste", "hashgnn", {"lambda_rank": 0.0}),
    # Luo & Wu (shared/papers/003): their smooth recall loss and SignSwish estimator, without hashrec's
    # distillation, on the same LightGCN-initialised code table as hashrec's rows. The abstract leaves
    # the encoder set-up, N, the kernels' widths and β open. Trained from scratch end to end, the
    # outer kernel σ((N − r̂)/τ) is saturated at 0 while positives rank in the thousands (quick slice:
    # recall@20 0.007 after 2 epochs) and the all-items rank costs ~8 s a step on ml-1m; from the
    # trained table it learns. The rank r̂ is estimated on a pool of 1,024 items scaled to the
    # catalogue (an unbiased estimate of the sum over all items); N = 50 (the paper's smallest cut-off),
    # β = 5, τ_rank = 1, and τ_recall = 10 chosen on validation over {1, 10} (quick slice, valid
    # Hamming recall@20 0.0743 against 0.0788).
    "luo_wu": ("signswish", "lightgcn", {"objective": "recall", "n_negatives": 1024, "distill": 0.0,
                                         "top_n": 50, "tau_recall": 10.0}),
    # BGCH as its official code (hashing.BGCH): scaled codes scored α_u α_i ⟨b_u, b_i⟩, its Fourier
    # estimator with 8 terms (its MovieLens setting), bias-free hash layer, its BPR objective, on a
    # LightGCN encoder trained end to end. Not reproduced: its concatenation of every layer's codes.
    "bgch_published": ("bgch", "lightgcn", {"end_to_end": True, "objective": "bgch", "cont_weight": 0.0,
                                            "hash_layer": "linear_nobias", "n_negatives": 1,
                                            "estimator": {"n_terms": 8}}),
    # The same estimators under the published pairwise objective instead of hashrec's: HashGNN's
    # Eq. 7, the cross-entropy of observed against sampled links on the codes' inner products (the
    # pairwise likelihood HashNet also maximises) + λ·triplet ranking (λ 0.5, 5 triplets a pair), no
    # distillation, on the same LightGCN-initialised table. Read against the hashrec-objective row of
    # the same estimator, the pair shows what the objective does; rows of one family, what the
    # estimator does.
    **{f"{est}_pairwise": (est, "lightgcn", {"objective": "hashgnn", "distill": 0.0})
       for est in PAIRWISE_ESTIMATORS},
    # hashrec's objective trained for asymmetric search: every code score is the user's real-valued
    # hash-layer output against the items' codes through the estimator (HashModel's `asymmetric`), as
    # AsymmetricIndex scores them; its settings and kept epoch are chosen on validation asymmetric recall
    "signswish_asym": ("signswish", "lightgcn", {"asymmetric": True}),
}


# Faiss's RaBitQ on the teacher's embeddings: the training-free quantizer beside the learned codes
RABITQ_ROW = "rabitq (Faiss, teacher)"
# hashrec's training-free code of the same embeddings (:mod:`hashrec_utils.hashing.transform`)
TRANSFORM_ROW = "transform code (teacher)"


@dataclass(frozen=True)
class Row:
    """A row of the study's tables, as a value: its ``label``, the run it makes (``method``, the
    estimator or an untrained method; ``model``; ``params``, its hash parameters over the study's
    defaults) and its ``family``: ``hashrec objective`` (an estimator under hashrec's table
    objective), ``as published`` (a method under its own paper's objective and encoder),
    ``pairwise objective`` (an estimator under HashGNN's published objective), ``untrained`` or
    ``continuous``. What a row can do is its recipe's (:func:`hashrec_utils.hashing.recipe_of`)."""

    label: str
    method: str | None
    model: str = "lightgcn"
    params: dict = field(default_factory=dict)
    family: str = "hashrec objective"

    @property
    def search(self) -> str:
        """The search mode the row is trained for, whose validation recall selects its settings:
        ``asymmetric`` for a row trained for asymmetric search, else ``hamming``."""
        return "asymmetric" if self.params.get("asymmetric") else "hamming"

    @property
    def popcount_searchable(self) -> bool:
        """Whether its codes are ranked by Hamming distance alone, so popcount indexes serve them: a
        trained row whose estimator is not scaled (BGCH, BiGeaR: ``α_u α_i ⟨b_u, b_i⟩`` carry a float
        per item that reorders items of equal distance)."""
        from ..hashing import recipe_of
        from ..training import HashParams, TrainConfig

        if self.family in ("untrained", "continuous"):
            return False
        # params may hold run options of hash_overrides (end_to_end) beside the hash parameters
        hp = {k: v for k, v in self.params.items() if k in HashParams.__dataclass_fields__}
        return recipe_of(TrainConfig(model=self.model, hash_method=self.method, hash_params=hp)).popcount_searchable


# The methods the tables run as their papers publish them (family "as published").
PUBLISHED_ROWS = ("hashgnn", "hashgnn_nr", "luo_wu", "bgch_published")


def _rows() -> dict[str, Row]:
    from ..hashing import ESTIMATORS

    families = {**{label: "as published" for label in PUBLISHED_ROWS},
                **{f"{est}_pairwise": "pairwise objective" for est in PAIRWISE_ESTIMATORS}}
    rows = [Row(name, name) for name in ESTIMATORS]
    rows += [Row(label, method, model, params, families.get(label, "hashrec objective"))
             for label, (method, model, params) in EXTRA_VARIANTS.items()]
    rows += [Row("lsh", "lsh", family="untrained"), Row("sign (post-hoc)", "sign", family="untrained"),
             Row(RABITQ_ROW, None, family="untrained"), Row(TRANSFORM_ROW, None, family="untrained"),
             Row("lightgcn (continuous)", None, family="continuous")]
    return {r.label: r for r in rows}


# Every row of the study's tables by label (read-only).
ROWS = MappingProxyType(_rows())


def table_row(label: str) -> Row:
    """The :class:`Row` called ``label`` (one clear error for a label that is no row)."""
    if label not in ROWS:
        raise ValueError(f"unknown table row {label!r}; the rows are {', '.join(ROWS)}")
    return ROWS[label]


def row_spec(label: str) -> tuple[str, str, dict]:
    """A table row's ``(method, model, hash_params)``."""
    row = table_row(label)
    return row.method, row.model, dict(row.params)


def variant_run(profile: str, label: str, *, seed: int = 0, bits: int = 64, progress: bool = False,
                dataset: str = "ml-1m", point: "GridPoint | None" = None,
                valid_fraction: float | None = None, teacher_seed: int = 0,
                teacher: Teacher | None = None) -> tuple[dict, Path]:
    """:func:`.runs.hash_run` of a table row's label: an estimator name or one of :data:`EXTRA_VARIANTS`,
    at the tuning grid's ``point`` (default: the row's winner on ``dataset``'s validation split,
    :func:`tuned_point`; the base settings where it was not tuned). A point other than the base gets its own
    folder (``…_<point tag>``), so a winner's run is the tuning run itself. ``teacher_seed``: the
    LightGCN seed it starts from (the whole pipeline's seed, :func:`.runs.hash_run`); ``teacher``: its
    size and schedule, where not the profile's (:class:`~hashrec_utils.profiles.Teacher`; a row with its
    own encoder has no teacher and ignores it)."""
    method, model, tag, params = _variant(profile, label, dataset, point)
    return _runs.hash_run(profile, method, seed=seed, bits=bits, model=model, tag=tag, progress=progress,
                          dataset=dataset, valid_fraction=valid_fraction, teacher_seed=teacher_seed,
                          teacher=teacher, **params)


def variant_plan(profile: str, label: str, *, seed: int = 0, bits: int = 64, dataset: str = "ml-1m",
                 point: "GridPoint | None" = None, valid_fraction: float | None = None, teacher_seed: int = 0,
                 teacher: Teacher | None = None):
    """The ``(TrainConfig, run folder)`` of :func:`variant_run`, resolved without training anything."""
    method, model, tag, params = _variant(profile, label, dataset, point)
    return _runs.hash_plan(profile, method, seed=seed, bits=bits, model=model, tag=tag, dataset=dataset,
                           valid_fraction=valid_fraction, teacher_seed=teacher_seed, teacher=teacher, **params)


def variant_run_name(profile: str, label: str, *, seed: int = 0, bits: int = 64, dataset: str = "ml-1m",
                     point: "GridPoint | None" = None, valid_fraction: float | None = None,
                     teacher: Teacher | None = None) -> str:
    """The folder name :func:`variant_run` trains into, without training anything."""
    if teacher:  # whether the row starts from a teacher is in its resolved settings
        return variant_plan(profile, label, seed=seed, bits=bits, dataset=dataset, point=point,
                            valid_fraction=valid_fraction, teacher=teacher)[1].name
    method, model, tag, _ = _variant(profile, label, dataset, point)
    return _runs.hash_run_name(method, seed=seed, bits=bits, model=model, tag=tag, dataset=dataset,
                               valid_fraction=valid_fraction)


def _variant(profile: str, label: str, dataset: str, point: "GridPoint | None") -> tuple[str, str, str, dict]:
    """A row's ``(method, model, folder tag, hash_run keyword arguments)`` at ``point`` (default: its winner)."""
    method, model, params = row_spec(label)
    point = tuned_point(profile, label, dataset) if point is None else point
    tag = "_".join(t for t in (label if label != method else "", point.tag) if t)
    if point.estimator:
        params = {**params, "estimator": {**params.get("estimator", {}), **dict(point.estimator)}}
    params = {**params, **dict(point.objective)}
    factors = {k: v for k, v in (("lr_factor", point.lr_factor), ("length_factor", point.length_factor)) if v != 1.0}
    return method, model, tag, {**factors, **params}


@dataclass(frozen=True)
class GridPoint:
    """One point of the tuning grid: learning rate and schedule length as factors of a row's base
    settings, its own schedule's parameters (``estimator``, e.g. ``{"decay": 0.9}``) and its
    objective's (``objective``: hash parameters of :data:`OBJECTIVE_TAGS`, e.g. ``{"distill": 3.0}``)."""

    lr_factor: float = 1.0
    length_factor: float = 1.0
    estimator: tuple = ()  # sorted (name, value) pairs: hashable, frozen
    objective: tuple = ()  # the same

    def __post_init__(self):
        for name in ("estimator", "objective"):
            if isinstance(getattr(self, name), dict):
                object.__setattr__(self, name, tuple(sorted(getattr(self, name).items())))
        unknown = sorted(set(dict(self.objective)) - set(OBJECTIVE_TAGS))
        if unknown:
            raise ValueError(f"GridPoint objective: unknown hash parameters {unknown} (known: {sorted(OBJECTIVE_TAGS)})")

    @property
    def tag(self) -> str:
        """The folder suffix of this point ("" at the base settings)."""
        parts = [f"lr{self.lr_factor:g}" if self.lr_factor != 1.0 else "",
                 f"len{self.length_factor:g}" if self.length_factor != 1.0 else "",
                 *(f"{k}{v:g}" if isinstance(v, (int, float)) else f"{k}{v}" for k, v in self.estimator),
                 *(f"{OBJECTIVE_TAGS[k]}{v:g}" for k, v in self.objective)]
        return "_".join(p for p in parts if p)

    def to_json(self) -> dict:
        out = {"lr_factor": self.lr_factor, "length_factor": self.length_factor, "estimator": dict(self.estimator)}
        return {**out, "objective": dict(self.objective)} if self.objective else out


# The objective's hash parameters a grid point may set, and their folder tags.
OBJECTIVE_TAGS = {"distill": "kd", "distill_tau": "tau"}


# Where `make tune` writes each row's winner (committed; read by every run of the profile).
TUNED_FILE = Path(__file__).with_name("tuned.json")


def tuned_winners(profile: str, dataset: str) -> dict:
    """Every row's grid winner on ``dataset`` in ``profile`` as :data:`TUNED_FILE` holds it
    (``{label: GridPoint keyword arguments}``; empty where that profile or dataset was not tuned)."""
    from ..utils import read_json

    return (read_json(TUNED_FILE) if TUNED_FILE.exists() else {}).get(profile, {}).get(str(dataset), {})


def tuned_point(profile: str, label: str, dataset: str = "ml-1m") -> GridPoint:
    """The winner of ``label``'s validation grid on ``dataset`` in ``profile`` (:data:`TUNED_FILE`,
    written by ``make tune``), or the base settings when that profile, dataset or row was not tuned
    (winners are not carried to another dataset: a catalogue without its own grid runs the base)."""
    win = tuned_winners(profile, dataset).get(label)
    return GridPoint(**win) if win else GridPoint()


def row_family(label: str) -> str:
    """Which family of the tables a row belongs to (:attr:`Row.family`)."""
    return table_row(label).family


def popcount_searchable(label: str) -> bool:
    """Whether a row's codes are ranked by Hamming distance alone (:attr:`Row.popcount_searchable`)."""
    return table_row(label).popcount_searchable
