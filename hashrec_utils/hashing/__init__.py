"""Learning to hash: a hash layer, its gradient estimators, the hash objectives and the hash models.

Hash layer (HashGNN, Tan et al. WWW 2020): a fully connected layer and tanh map
an embedding ``e ∈ R^d`` to ``z = tanh(a)``, ``a = W e + b ∈ R^K``; the code is
``h = sign(z) ∈ {-1, +1}^K`` with ``sign(0) = +1``. For ±1 codes
``ham(h_u, h_i) = (K - ⟨h_u, h_i⟩) / 2``: ranking by Hamming distance is
ranking by the code inner product. Codes leave the model packed with
``np.packbits`` (bit 1 for +1; ``K/8`` bytes per row, MSB first: Faiss's
binary layout).

``sign`` has zero gradient almost everywhere; an *estimator* decides what the
training forward pass returns and what its backward pass uses (``ste``, ``guided_ste``,
``hashnet``, ``gumbel``, ``signswish``, ``bgch``, ``bigear``: the table with each one's
maths is :mod:`.estimators`' docstring). Evaluation always uses plain ``sign(a)`` codes
(``Estimator.codes``). Schedules are functions of the fraction of training done,
t = step / total_steps ∈ [0, 1] (:meth:`HashModel.set_total_steps`), so short and long runs
anneal to the same end values. Scaled estimators (bgch, bigear) score codes α_u α_i ⟨b_u, b_i⟩
in training and evaluation (:meth:`HashModel.code_scales`, :func:`scaled_code_topk`).

No training: :func:`untrained_codes` — ``lsh`` (:func:`lsh_codes`, random hyperplanes,
Charikar 2002) and ``sign`` (``pack_codes(embeddings)``). Two-stage ``*_sp`` (HashGNN_sp): the
hash layer learns on frozen trained embeddings (``freeze_encoder``).

Where each idea lives:

- :mod:`.codes`: ``sign``, the packed layout (:func:`pack_codes`, :func:`unpack_codes`), ranking
  by scaled codes (:func:`scaled_code_topk`), codes without training (:func:`lsh_codes`,
  :func:`untrained_codes`, :data:`UNTRAINED`, :data:`UNTRAINED_VERSIONS`);
- :mod:`.estimators`: the sign functions with a custom backward (``SignSTE``, ``SignSwish``,
  ``SignFourier``, ``SignGaussian``), the :class:`Estimator` classes and their read-only
  registry :data:`ESTIMATORS`, :func:`make_estimator`, :func:`split_method`;
- :mod:`.objectives`: what an objective sees of a step (:class:`HashBatch`), the
  :class:`Objective` value and the read-only registry :data:`OBJECTIVES` (bpr, softmax, recall,
  bgch, hashgnn, bigear; BiGeaR's teacher items: bigear_teacher_top);
- :mod:`.model`: :class:`HashLayer`, :class:`HashModel` (the loss: continuous BPR + hash
  objective + distillation), :class:`TableEncoder`;
- :mod:`.recipe`: a method as a value (:class:`Recipe`: encoder, estimator, objective and what it
  can do), read once from a config by :func:`recipe_of`, and the model it names
  (:func:`build_hash_model`). Evaluation (every search mode of a hash
  run) lives in :mod:`hashrec_utils.evaluation`.

Every component that decides a run's numbers carries an integer ``version`` (each estimator
class, each :class:`Objective`, :class:`HashLayer`, :class:`HashModel`, :class:`TableEncoder`,
:data:`UNTRAINED_VERSIONS`): bump it when a change moves what the component computes
(``tests/training/test_golden.py`` fails, naming the component, until it is bumped).
``from hashrec_utils.hashing import X`` keeps working for every name below.
"""
from __future__ import annotations

from .codes import (UNTRAINED, UNTRAINED_VERSIONS, dequantize, lsh_codes, pack_codes, scaled_code_topk, sign, unpack_codes,
                    untrained_codes, untrained_queries)
from .estimators import (BGCH, ESTIMATORS, STE, BiGeaR, Estimator, GuidedSTE, Gumbel, HashNet, SignFourier,
                         SignGaussian, SignSTE, SignSwish, SignSwishEstimator, clamp01, fourier_grad, gaussian_delta,
                         make_estimator, row_scales, signswish_grad, split_method, stage)
from .objectives import (OBJECTIVES, HashBatch, Objective, ObjectiveFn, bgch_objective, bpr_objective,
                         hashgnn_objective, recall_objective, softmax_objective)
from .model import HASH_LAYERS, HashLayer, HashModel, TableEncoder
from .recipe import Recipe, build_hash_model, recipe_of

__all__ = [
    "sign",
    "pack_codes",
    "unpack_codes",
    "ESTIMATORS",
    "OBJECTIVES",
    "Estimator",
    "make_estimator",
    "HashLayer",
    "HashModel",
    "TableEncoder",
    "build_hash_model",
    "split_method",
    "lsh_codes",
    "untrained_codes",
    "untrained_queries",
    "scaled_code_topk",
    "dequantize",
    "HashBatch",
    "Objective",
    "UNTRAINED",
    "UNTRAINED_VERSIONS",
    "HASH_LAYERS",
    "Recipe",
    "recipe_of",
]
