"""Learning to hash (moved from ``hashing.py``; split into modules in the next commit)."""
from . import model as _model

globals().update({k: v for k, v in vars(_model).items() if not k.startswith("__")})
__all__ = _model.__all__
