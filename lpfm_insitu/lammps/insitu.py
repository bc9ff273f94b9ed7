"""The adapter's names at the module path they had before it was split, for the callers
that still import them from here (the in-situ benchmarks and the in-situ tracking glue).

``configure`` now lives in ``configuration``, ``InsituClassifier`` in ``classifier``,
``InsituSettings`` in ``settings`` and the rank helper in ``errors``.
"""

from .classifier import InsituClassifier  # noqa: F401
from .configuration import configure  # noqa: F401
from .errors import world_rank as _world_rank  # noqa: F401
from .settings import InsituSettings  # noqa: F401
