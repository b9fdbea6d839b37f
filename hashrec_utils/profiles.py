"""The profiles: every number a study's profile chooses, in one flat, readable definition each.

``quick``   seconds to a few minutes on a slice of real data (what nbval runs in CI).
``default`` the whole study on MovieLens-1M on a 2-core CPU (what ``make all`` runs).
``full``    MovieLens-1M and Gowalla at paper scale (a GPU makes it minutes).

A :class:`Profile` is frozen. Numbers that depend on the data's size (batches, the sampled pool)
are derived from its shape by :mod:`hashrec_utils.settings`, which reads the profile's targets
here (steps an epoch, learning rates, epochs); the stages of :mod:`hashrec_utils.experiments` read
their grids here. The CLI, a stage or a notebook's parameters cell resolves a profile once
(:func:`get_profile`) and passes settings down; nothing below the stages looks a profile up.

To change what a profile runs, edit its definition at the bottom of this file: every field is
named there, and a field that is not a field of :class:`Profile` is refused.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["PROFILES", "Profile", "LightGCNTargets", "HashStage", "RetrievalStage", "TuningGrid", "Teacher",
           "ComparisonStage",
           "ALL_ROWS", "get_profile", "check_profile", "ProfileView"]

PROFILES = ("quick", "default", "full")


@dataclass(frozen=True)
class LightGCNTargets:
    """LightGCN's training in a profile: ``steps`` an epoch (the batch follows from the data's
    size, :func:`hashrec_utils.settings.batch_for_steps`), Adam's ``lr``, L2 ``reg``, ``epochs``,
    validation every ``eval_every`` epochs, early stopping after ``patience`` evaluations
    without improvement (0: never), ``lr_schedule`` (``constant`` or ``cosine``)."""

    steps: int
    lr: float
    reg: float
    epochs: int
    eval_every: int
    patience: int
    lr_schedule: str = "constant"


@dataclass(frozen=True)
class HashStage:
    """Sweep sizes of notebook 03 for one profile.

    Hash models start from the profile's trained LightGCN: its final
    embeddings seed a table that is fine-tuned for the codes alone, while the
    LightGCN embeddings themselves stay frozen for continuous and hierarchical
    search (no propagation per step, so a run costs seconds). ``hashgnn`` is
    the exception, trained end to end from scratch with its GraphSAGE encoder,
    as published, and so are the other published rows (:data:`hashrec_utils.experiments.rows.EXTRA_VARIANTS`:
    Luo & Wu's smooth recall + SignSwish and BGCH, each on a LightGCN encoder trained end to end for at
    most ``published_epochs``, early-stopped on validation). ``variants``/``variant_seeds``: the
    extra table rows and their seeds; ``sweep_epochs``: epochs of each run
    of the parameter analysis (λ, triplets, K). ``top_seeds``: the seeds of the whole pipeline
    (LightGCN teacher and hash training, both of that seed) that the ``top_n`` rows with the best
    validation Hamming recall@20 at seed 0 run, where ``seeds`` runs fewer (``default``: one seed a
    row, three for the best row and its two runners-up).

    One protocol for every compared run (table rows, variants, fixed-p runs,
    sweeps): validation every ``eval_every`` epochs and after the last, and the
    weights ``keep`` chooses (``best_valid``: those of the best validation
    epoch); every selection (best estimator, the bits/C sweeps' base) reads
    validation numbers, the test split is read once per final model.
    """

    seeds: tuple[int, ...]
    epochs: int
    hashgnn_epochs: int
    lambdas: tuple[float, ...]
    triplets: tuple[int, ...]
    bits: tuple[int, ...]
    candidates: tuple[int, ...]
    sweep_epochs: int
    variants: tuple[str, ...] = ("guided_ste_sp", "hashgnn", "hashgnn_nr", "luo_wu", "bgch_published",
                                 "ste_pairwise", "guided_ste_pairwise", "hashnet_pairwise", "gumbel_pairwise")
    variant_seeds: tuple[int, ...] = (0, 1, 2)
    published_epochs: int = 80
    eval_every: int = 2
    keep: str = "best_valid"
    estimators: tuple[str, ...] = ("ste", "guided_ste", "hashnet", "gumbel", "signswish", "bgch", "bigear")
    top_seeds: tuple[int, ...] = ()
    top_n: int = 3

    @property
    def rows(self) -> tuple[str, ...]:
        """Every trained row of the table: the estimators, then the variants."""
        return (*self.estimators, *self.variants)


@dataclass(frozen=True)
class RetrievalStage:
    """Search-parameter grids of notebook 04 and the scaling sizes."""

    hnsw_ef: tuple[int, ...]
    nsg_L: tuple[int, ...]
    ivf_nprobe: tuple[int, ...]
    pq_m: tuple[int, ...]
    binary_ef: tuple[int, ...]
    multihash_nflip: tuple[int, ...]
    candidates: tuple[int, ...]
    scaling_sizes: tuple[int, ...]
    threads: int = 2
    repeats: int = 5                                     # each search timed this often: median, min, max
    hnsw_M: tuple[int, ...] = (16, 32)                   # HNSW's links (build)
    hnsw_efc: tuple[int, ...] = (40, 200)                # HNSW's build depth
    rabitq_qb: tuple[int, ...] = (1, 2, 4, 8)            # RaBitQ's query bits
    latency_queries: int = 200                           # batch-1 latency over this many single queries
    multiples: tuple[float, ...] = (1, 1.5, 2, 3, 5, 10, 20, 50)  # of the fastest exact search's throughput
    timing_queries: int | None = None                    # repeats timed on this many queries (None: all)


@dataclass(frozen=True)
class TuningGrid:
    """The grid every row gets: learning-rate and schedule-length factors (the base, 1.0, first)."""

    lr_factors: tuple[float, ...] = (1.0, 0.3)
    length_factors: tuple[float, ...] = (1.0, 2.0)
    seed: int = 0
    own: bool = True  # step 2, the row's own schedule parameter
    max_length_factor: float | None = None  # step 3's cap (None: no step 3)
    levers: bool = False  # step 4, the objective's levers
    final_length_factor: float | None = None  # step 5's cap: the final winner's schedule (None: no step 5)

    def __post_init__(self):
        for name in ("lr_factors", "length_factors"):
            values = getattr(self, name)
            if not values or values[0] != 1.0 or any(v <= 0 for v in values):
                raise ValueError(f"{name} must start with the base 1.0 and be positive; got {values}")
        if self.max_length_factor is not None and self.max_length_factor < max(self.length_factors):
            raise ValueError(f"max_length_factor ({self.max_length_factor:g}) must be at least the grid's longest "
                             f"schedule ({max(self.length_factors):g})")
        floor = max(self.max_length_factor or 0.0, *self.length_factors)
        if self.final_length_factor is not None and self.final_length_factor < floor:
            raise ValueError(f"final_length_factor ({self.final_length_factor:g}) must be at least step 3's cap and the "
                             f"grid's longest schedule ({floor:g})")

    def extensions(self, length: float, cap: float | None = None) -> tuple[float, ...]:
        """Step 3's schedule lengths after a winner at ``length``: doublings up to the cap
        (``max_length_factor``; step 5 passes ``final_length_factor``), only where ``length`` is at least
        the grid's longest (a winner inside the grid has stopped improving)."""
        cap = self.max_length_factor if cap is None else cap
        if cap is None or length < max(self.length_factors):
            return ()
        out = []
        while length * 2 <= cap:
            length *= 2
            out.append(length)
        return tuple(out)


# Every trained row of the seed paper's table and of hashrec's, in the order they run (HashGNN, end to
# end with its GraphSAGE encoder over the whole graph every step, last).
ALL_ROWS = ("signswish", "guided_ste", "ste", "hashnet", "luo_wu", "bgch_published", "bgch", "bigear", "gumbel",
            "ste_pairwise", "guided_ste_pairwise", "hashnet_pairwise", "hashgnn")
# not yet in the Gowalla comparison: "signswish_asym" (trained for asymmetric search), which the table of
# notebook 03 runs and tunes; the comparison adds it when its runs (three seeds, ~25 min on two cores) are made


@dataclass(frozen=True)
class Teacher:
    """The LightGCN a table's hash rows learn from, where it is not the profile's own: its embedding
    size ``dim`` and its schedule's length ``epochs`` (None: the profile's). Runs that start from it
    carry :attr:`tag` in their folder names (``_d128``, ``_d128_e900``); the profile's own teacher has
    none, so its runs keep the names (and the numbers) they always had."""

    dim: int | None = None
    epochs: int | None = None

    def __post_init__(self):
        for name in ("dim", "epochs"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise ValueError(f"Teacher.{name} must be a positive int or None; got {value!r}")

    @property
    def tag(self) -> str:
        """The folder-name suffix of the teacher and of every run that starts from it."""
        return (f"_d{self.dim}" if self.dim else "") + (f"_e{self.epochs}" if self.epochs else "")


@dataclass(frozen=True)
class ComparisonStage:
    """What notebook 07 runs in one profile.

    ``datasets``: the catalogues compared with published numbers (empty: show ``source``'s
    committed results). ``rows``: trained table rows (labels of :func:`hashrec_utils.experiments.rows.row_spec`),
    run in this order; the top rows over every seed of ``seeds``: ``top_rows`` where given, else chosen on
    validation by :func:`hashrec_utils.experiments.comparison.comparison_top_rows` (every published recipe and
    the ``top_hashrec`` best rows of hashrec's objective). ``bits``: the code lengths of the bits
    sweep of the best row, at its tuned settings with the schedule capped at ``sweep_length_factor``
    (None: as tuned; one cap for every length, so the sweep is one recipe). ``valid_fraction``: carved from train where the source has no
    validation split. ``ks``, ``candidates``: the cut-offs evaluated and hierarchical search's C.
    ``refit``: which runs are retrained on all of train once every choice is made on the carve-out
    (:mod:`hashrec_utils.experiments.refit`; the teacher with them): ``none``, ``best`` (hashrec's best
    row over every seed) or ``top`` (every row that runs every seed); ``refit_seeds``: the seeds refit
    (None: every seed the row ran; the others are listed as pending). ``teacher_dims``: the LightGCN
    sizes the teacher-size choice tries in order on the carve-out
    (:mod:`hashrec_utils.experiments.teacher_size`), then the chosen size's schedule doubled while
    validation improves up to ``teacher_max_length`` × the profile's epochs; ``teacher``: the
    :class:`Teacher` (size, schedule) the table's teacher and every row that starts from it are
    trained at (None: the profile's), set by hand from that choice. ``own_budget_steps``: the steps of
    ``scripts/published_budget.py`` that run BGCH and BiGeaR at their official budgets (seed 0, every
    comparison dataset); those its record ``published_budget.json`` lacks are listed as pending.
    """

    datasets: tuple[str, ...] = ()
    rows: tuple[str, ...] = ALL_ROWS
    top_rows: tuple[str, ...] | None = None  # None: chosen on validation (comparison_top_rows)
    top_hashrec: int = 3
    seeds: tuple[int, ...] = (0,)
    bits: tuple[int, ...] = (32, 64, 128, 256, 768)
    valid_fraction: float = 0.1
    ks: tuple[int, ...] = (20, 50, 100)
    candidates: int = 500
    source: str | None = None
    sweep_length_factor: float | None = None
    refit: str = "none"
    refit_seeds: tuple[int, ...] | None = None
    teacher_dims: tuple[int, ...] = ()
    teacher_max_length: float | None = None
    teacher: Teacher | None = None
    own_budget_steps: tuple[str, ...] = ()

    def __post_init__(self):
        if self.refit not in ("none", "best", "top"):
            raise ValueError(f"ComparisonStage.refit must be none, best or top; got {self.refit!r}")
        if self.teacher_max_length is not None and self.teacher_max_length < 1:
            raise ValueError(f"ComparisonStage.teacher_max_length must be at least 1; got {self.teacher_max_length}")


@dataclass(frozen=True)
class Profile:
    """Everything one profile chooses.

    ``datasets``: names passed to :func:`hashrec_utils.data.load_dataset`; ``max_users``: when set,
    only the first ``max_users`` users of each dataset (the ``quick`` slice of real data);
    ``seeds``; ``tradeoff_datasets``: the catalogues notebook 05 sweeps for accuracy against
    throughput (a profile may sweep a dataset whose full study it does not run: ``default`` adds
    Gowalla's 40,981 items beside MovieLens-1M's 3,706, where hashing matters).

    ``lightgcn``: LightGCN's training on a split of the study's own making (10 % of train carved
    as validation); ``lightgcn_published``: on a dataset distributed with its own split (LightGCN's
    files: no validation, a fixed budget, cosine decay), ``None`` to treat it like any other
    (``quick`` carves validation everywhere). ``hash_steps``: target steps an epoch of hash
    training (the batch follows from the data's size); ``sampled_pool_epochs``: a hash run's
    epochs when its softmax samples a pool of items (``None``: the stage's epochs).
    ``layer_sweep``/``layer_sweep_epochs``: notebook 02's depths and their epochs (``None``: the
    profile's). ``hash``, ``retrieval``, ``tuning``, ``comparison``: the stages' grids.
    """

    name: str
    datasets: tuple[str, ...]
    max_users: int | None
    seeds: tuple[int, ...]
    lightgcn: LightGCNTargets
    lightgcn_published: LightGCNTargets | None
    hash_steps: int
    sampled_pool_epochs: int | None
    layer_sweep: tuple[int, ...]
    layer_sweep_epochs: int | None
    hash: HashStage
    retrieval: RetrievalStage
    tuning: TuningGrid
    comparison: ComparisonStage
    tradeoff_datasets: tuple[str, ...] = field(default=())

    def __post_init__(self):
        if not self.tradeoff_datasets:
            object.__setattr__(self, "tradeoff_datasets", self.datasets)

    def valid_fraction(self, published: bool) -> float:
        """The share of train carved as validation: none on a published split where the profile
        keeps it (:attr:`lightgcn_published`), else 10 %."""
        return 0.0 if published and self.lightgcn_published is not None else 0.1


# ==== the definitions ==========================================================================

_PAIRWISE = ("ste_pairwise", "guided_ste_pairwise", "hashnet_pairwise", "gumbel_pairwise")
_LAMBDAS = tuple(round(0.1 * i, 1) for i in range(11))
# Graph search depths (efSearch, search_L) start at k = 20: Faiss widens a beam below k to k anyway.
_DEPTHS = (20, 32, 64, 128, 256)

QUICK = Profile(
    name="quick", datasets=("ml-1m",), max_users=600, seeds=(0,),
    lightgcn=LightGCNTargets(steps=16, lr=0.01, reg=1e-4, epochs=12, eval_every=4, patience=0),
    lightgcn_published=None,
    hash_steps=1,  # the whole slice at once
    sampled_pool_epochs=None,
    layer_sweep=(1, 2, 3), layer_sweep_epochs=None,
    hash=HashStage(seeds=(0,), epochs=4, hashgnn_epochs=2, lambdas=(0.0, 0.5, 1.0), triplets=(1, 5),
                   bits=(32, 64), candidates=(20, 50, 100), sweep_epochs=2, variant_seeds=(0,),
                   variants=("guided_ste_sp", "hashgnn", "hashgnn_nr", "luo_wu", "bgch_published", *_PAIRWISE),
                   published_epochs=2),
    retrieval=RetrievalStage((20, 64), (20, 64), (1, 8), (8,), (20, 64), (1,), (20, 100), (10**4,), repeats=1,
                             hnsw_M=(16,), hnsw_efc=(40,), rabitq_qb=(1, 4), latency_queries=10),
    tuning=TuningGrid(),
    # nbval: the code path on a 600-user slice, a few cheap rows, two code lengths
    comparison=ComparisonStage(datasets=("gowalla",), rows=("signswish", "luo_wu", "bgch_published"), top_rows=(),
                               bits=(32, 64), refit="best"),
)

DEFAULT = Profile(
    name="default", datasets=("ml-1m",), max_users=None, seeds=(0, 1, 2), tradeoff_datasets=("ml-1m",),
    lightgcn=LightGCNTargets(steps=22, lr=0.02, reg=1e-3, epochs=80, eval_every=5, patience=4),
    # fixed budget: on 2 cores a Gowalla step costs ~0.43 s whatever the batch, so 2 h buy ~16 k
    # steps: large batches, 10x the paper's learning rate, cosine to the last epoch
    lightgcn_published=LightGCNTargets(steps=22, lr=0.01, reg=1e-3, epochs=100, eval_every=25, patience=0,
                                       lr_schedule="cosine"),
    hash_steps=11,
    # a sampled pool (a catalogue too large for the all-items softmax): 10 epochs on gowalla cost 6 min on
    # two cores; without distillation 20 epochs overfit the train pairs (Hamming recall@50 0.186 after 10, 0.182 after 20)
    sampled_pool_epochs=10,
    layer_sweep=(1, 2, 3, 4), layer_sweep_epochs=20,  # 20 of its 80 epochs, to fit make all's budget
    # sized for make all on two shared cores: one seed a row (the full profile runs three), the
    # parameter analysis at a few points
    hash=HashStage(seeds=(0,), epochs=10, hashgnn_epochs=16, lambdas=(0.0, 1.0), triplets=(1, 5),
                   bits=(32, 64, 128), candidates=(20, 50, 100, 200, 400), sweep_epochs=5,
                   variants=("guided_ste_sp", "hashgnn", "luo_wu", "bgch_published", *_PAIRWISE, "signswish_asym"),
                   variant_seeds=(0,), published_epochs=30, top_seeds=(0, 1, 2)),
    retrieval=RetrievalStage(_DEPTHS, _DEPTHS, (1, 2, 4, 8, 16, 32, 64), (8, 16), _DEPTHS, (0, 1, 2, 3),
                             (20, 50, 100, 200, 400, 800), (10**4, 10**5, 10**6)),
    tuning=TuningGrid(),
    comparison=ComparisonStage(source="full"),  # make all (default) trains no Gowalla table: it shows full's
)

FULL = Profile(
    name="full", datasets=("ml-1m", "gowalla"), max_users=None, seeds=(0, 1, 2),
    lightgcn=LightGCNTargets(steps=175, lr=0.002, reg=1e-4, epochs=400, eval_every=10, patience=5),  # the paper's small batches
    lightgcn_published=LightGCNTargets(steps=22, lr=0.01, reg=1e-4, epochs=450, eval_every=25, patience=0,
                                       lr_schedule="cosine"),
    hash_steps=11,
    sampled_pool_epochs=10,
    layer_sweep=(1, 2, 3, 4), layer_sweep_epochs=None,
    hash=HashStage(seeds=(0, 1, 2), epochs=20, hashgnn_epochs=40, lambdas=_LAMBDAS, triplets=(1, 2, 5, 10),
                   bits=(16, 32, 64, 128, 256), candidates=(20, 50, 100, 200, 400), sweep_epochs=10),
    retrieval=RetrievalStage(_DEPTHS, _DEPTHS, (1, 2, 4, 8, 16, 32, 64), (8, 16), _DEPTHS, (0, 1, 2, 3),
                             (20, 50, 100, 200, 400, 800), (10**4, 10**5, 10**6, 10**7),
                             timing_queries=5000),  # Gowalla: every method's accuracy on all 29,858 users
    # step 3 up to 4× the base schedule (a Gowalla 64-bit run at 4× is ~8 min on two cores)
    # step 5: the final winner (levers included) still learning at its schedule's end, doubled up to 8×
    tuning=TuningGrid(max_length_factor=4.0, levers=True, final_length_factor=8.0),
    # the sweep at the grid's longest schedule (2×): 4× at 768 bits alone is ~25 min on two cores
    # refit: hashrec's best row and the teacher on all of train (the published recipes' refits: pending)
    # the teacher: 64, then 128, then 256, each only if the one before won on validation (teacher_size),
    # then the winner's schedule doubled while validation improves, up to 2× (450 → 900 epochs: a 256-d
    # teacher at 900 is ~4-5 h on two cores with the blocked propagation)
    comparison=ComparisonStage(datasets=("gowalla",), seeds=(0, 1, 2), sweep_length_factor=2.0, refit="best",
                               teacher_dims=(64, 128, 256), teacher_max_length=2.0,
                               own_budget_steps=("bgch_own_budget", "bigear_own_budget")),
)

_BY_NAME = {p.name: p for p in (QUICK, DEFAULT, FULL)}  # module-private: read it through get_profile


def check_profile(name: str) -> str:
    """Return ``name`` if it is a profile, else raise one clear ``ValueError``."""
    if name not in _BY_NAME:
        raise ValueError(f"profile must be one of {', '.join(PROFILES)}; got {name!r}")
    return name


def get_profile(name: str) -> Profile:
    """The :class:`Profile` called ``name``."""
    return _BY_NAME[check_profile(name)]


class ProfileView(Mapping):
    """A read-only ``{profile name: getattr(profile, attr)}`` (e.g. the stages' ``HASH_STAGE``),
    read from :func:`get_profile` at each access."""

    def __init__(self, attr: str):
        self.attr = attr

    def __getitem__(self, name: str):
        return getattr(get_profile(name), self.attr)

    def __iter__(self):
        return iter(PROFILES)

    def __len__(self) -> int:
        return len(PROFILES)

    def __repr__(self) -> str:
        return f"ProfileView({self.attr!r})"
