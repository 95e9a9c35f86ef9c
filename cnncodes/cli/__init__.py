"""The command line: each command converts its options, calls one library function, renders the result.

Options that change the codes or the run are built from the declarations in :mod:`cnncodes.params`
(``options``); ``render`` prints; ``root`` is the group, and one module per family holds its
commands (``zoo``, ``codes``, ``heads``, ``search``). Only ``click``, the lazy ``cnncodes`` facade,
``cnncodes.params`` and the exporter's model list are imported here, so ``cnncodes --help`` loads
no numpy, onnxruntime, h5py or scikit-learn.
"""

from __future__ import annotations

from . import codes, heads, search, zoo  # noqa: F401  (importing a module registers its commands)
from .root import cli

__all__ = ["cli"]
