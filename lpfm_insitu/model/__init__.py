"""The model: network, neighbour graphs, per-atom length scale, inference and model files.

``inference.PhaseModel`` is the host-independent core: "a subdomain of atoms with its
ghosts in, per-atom labels, confidence, OPs and score out"; ``results`` holds what it
takes from a host and gives back, ``denoising`` its run of score-ascent steps,
``neighbourhood`` its per-atom-scaled graphs and logit averages, ``chunking`` its slab-wise
evaluation of large subdomains. ``files.load_model`` reads a model file (or a shipped
model from ``shipped/``) into one. ``network`` is the torch module, ``graph`` and
``local_scale`` prepare its input, and ``allocator``, ``blas_threads`` and
``torch_compat`` are the runtime settings it runs under.

Importing this package imports no torch; the names below load their module on first use.
"""

_LAZY = {
    "PhaseModel": "inference", "PhaseResult": "inference", "load_model": "files",
    "LPFMNetwork": "network", "ModelSpec": "network", "build_network": "network",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
