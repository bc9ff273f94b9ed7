"""numpy's BLAS kept to one thread while the model runs on torch's threads.

numpy's OpenBLAS keeps its worker threads spinning for a while after every multithreaded
call, and the model's numpy glue makes such calls (the graph's ``(edges x 3) @ (3 x 3)``
shift product, the halo's fractional coordinates). On the cores torch's threads use, the
two pools then take turns: on 2 cores a `balanced` classification of 10^4 atoms took 35
us/atom as one call against 26 for its parts timed apart, and 23-24 with numpy's BLAS on
one thread (README, "Benchmarks"). Those numpy products are a few columns wide, so one
thread costs nothing.

Scoped, not process-wide: the user's own numpy code keeps its threads outside a call.
``LPFM_LIMIT_NUMPY_BLAS=0`` leaves numpy's threads alone (to measure the difference, or
for in-situ hooks that do large dense linear algebra in numpy).
"""

from __future__ import annotations

import contextlib
import os

OPT_OUT = "LPFM_LIMIT_NUMPY_BLAS"


def single_threaded_numpy_blas() -> contextlib.AbstractContextManager:
    """Limit the BLAS libraries numpy (and scipy) loaded to one thread inside the block."""
    if os.environ.get(OPT_OUT, "1") == "0":
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    # ~0.2 ms per entry (it lists the loaded libraries): nothing against a pass of the model
    return threadpool_limits(limits=1, user_api="blas")
