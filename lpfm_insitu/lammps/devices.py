"""Where each rank runs its model: the GPU of its node-local index or the CPU, and how many
torch threads it takes."""

from __future__ import annotations

import os

from .errors import world_rank


def pick_device(requested: str, node_rank: int, node_ranks: int,
                cuda_devices: int) -> tuple[str, str | None]:
    """This rank's device, and a warning when "auto" or "cuda" makes ranks share a GPU.

    Ranks take the GPUs of their node round robin by node-local rank. More ranks than GPUs
    on a node is legal but rarely meant: each GPU then runs several ranks' models in turn.
    """
    if requested == "cpu" or requested.startswith("cuda:"):
        return requested, None
    if requested == "auto" and cuda_devices == 0:
        return "cpu", None
    if cuda_devices == 0:
        raise ValueError(f"device={requested!r} but torch sees no CUDA device here")
    warning = None
    if node_ranks > cuda_devices:
        warning = (f"lpfm_insitu: WARNING: {node_ranks} MPI ranks on this node share its "
                   f"{cuda_devices} GPU(s) (device={requested!r} gives node-local rank k "
                   f"cuda:k mod {cuda_devices}), so up to {-(-node_ranks // cuda_devices)} "
                   "ranks take turns on one GPU: start one rank per GPU, or use device='cpu'")
    return f"cuda:{node_rank % cuda_devices}", warning


def rank_device(requested: str, node_rank: int, node_ranks: int) -> str:
    """``pick_device`` for the CUDA devices torch sees here; its warning printed once."""
    import torch

    cuda_devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
    device, warning = pick_device(requested, node_rank, node_ranks, cuda_devices)
    if warning:
        warn_once(warning)
    return device


def default_threads(ranks_on_node: int) -> int | None:
    """Torch threads per rank when neither configure(threads=) nor OMP_NUM_THREADS says.

    torch would start one thread per core in every rank; with several ranks per node the
    threads outnumber the cores and spin against each other. Share the node's cores.
    """
    if os.environ.get("OMP_NUM_THREADS"):
        return None  # the user's (or the launcher's) setting stands
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // max(1, ranks_on_node))


_WARNED: set = set()


def warn_once(message: str) -> None:
    """Print ``message`` once per process, on world rank 0 only (every rank finds it)."""
    if message in _WARNED:
        return
    _WARNED.add(message)
    if world_rank() == 0:
        print(message, flush=True)
