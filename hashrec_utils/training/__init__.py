"""Training: settings, the loop, run folders and their identity.

``config``    :class:`TrainConfig`, the frozen, typed settings of one run (resolved from a
              profile at the top by :func:`hashrec_utils.settings.train_config`);
``loop``      :func:`fit`: the resumable, deterministic training loop and its negative sampler;
``runs``      :func:`run`: a run folder (train, resume, re-score, refuse another run's folder);
``identity``  what a run is: its settings' component versions, device and library versions.
"""
from .config import KEEP_RULES, KS, HashParams, TrainConfig
from .identity import evaluation_identity, identity_differences, run_identity, training_components
from .loop import LOOP_VERSION, FitResult, NegativeSampler, fit, learning_rate, make_optimizer
from .runs import ACCEPT_UNVERSIONED, build_model, load_run_data, rescore, run

__all__ = ["TrainConfig", "HashParams", "KEEP_RULES", "KS", "fit", "FitResult", "NegativeSampler", "learning_rate", "make_optimizer",
           "LOOP_VERSION", "run", "rescore", "load_run_data", "build_model", "ACCEPT_UNVERSIONED",
           "run_identity", "evaluation_identity", "training_components", "identity_differences"]
