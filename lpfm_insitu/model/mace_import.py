"""Importing the parts of mace-torch the network is built from, and nothing else.

``import mace.modules`` runs the package inits of ``mace.modules`` and ``mace.tools``,
which import mace's whole training stack (argument parsers, checkpointing, torchmetrics,
torch_geometric batching, losses): 2.2 s on a 2-core machine, against 1.1 s for the
files the network needs. Every MPI rank pays it before LAMMPS' first step, so it is
most of what the fix adds to a run's start-up besides torch itself.

The two packages are entered in ``sys.modules`` as placeholders whose search path is the
real one, so ``import mace.modules.models`` loads that file and its own imports only.
A placeholder is a real package in waiting: the first time anything else is asked of it
(``from mace.tools import X``, ``mace.modules.MACE``), it runs the package's own
``__init__`` into itself, so code that uses mace-torch fully later in the same process
sees the whole package. If mace-torch's layout differs from what this expects, the plain
import is used instead.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import sys
import types
from pathlib import Path

from . import torch_compat as _torch_compat  # noqa: F401  (must precede e3nn)

#: the packages whose inits are deferred, and the names their modules take from them
_DEFERRED = ("mace.tools", "mace.modules")
_PRELOADED_NAMES = {"mace.tools": {"to_numpy": "mace.tools.torch_tools"}}
#: modules the network's files import for names they do not call while building or
#: running it, and whose own imports cost more than the network: mace.tools.compile
#: imports torch._dynamo for a decorator that only records a class (0.85 s on 2 cores),
#: mace.tools.torch_tools imports e3nn.io and with it scipy.signal (0.9 s) for
#: functions MACE calls only for dielectric outputs. Their names stand in until then.
_DEFERRED_MODULES = {
    "mace.tools.compile": ("simplify_if_compile",),
    "mace.tools.torch_tools": ("to_numpy", "get_change_of_basis", "spherical_to_cartesian"),
}


class _DeferredPackage(types.ModuleType):
    """A package whose ``__init__`` runs at the first attribute it does not have."""

    def __getattr__(self, name: str):
        if (name.startswith("__") or self.__dict__.get("_lpfm_completed")
                or self._is_submodule(name)):  # `from pkg import sub` asks before importing
            raise AttributeError(name)
        self.__dict__["_lpfm_completed"] = True
        init = self.__dict__["_lpfm_init"]
        spec = importlib.util.spec_from_file_location(
            self.__name__, init, submodule_search_locations=list(self.__path__))
        spec.loader.exec_module(self)
        return getattr(self, name)

    def _is_submodule(self, name: str) -> bool:
        return any((Path(folder) / f"{name}.py").is_file() or (Path(folder) / name).is_dir()
                   for folder in self.__path__)


class _DeferredModule(types.ModuleType):
    """A module whose code runs at the first attribute it does not have.

    Until then each name of ``_DEFERRED_MODULES`` is a stand-in: ``simplify_if_compile``
    records the classes it is given (and returns them, as mace's does), every other one
    runs the module and calls its own function. Running the module replaces the stand-ins
    with the real names and hands the recorded classes to mace's registry.
    """

    def __getattr__(self, name: str):
        if name.startswith("__") or self.__dict__.get("_lpfm_completed"):
            raise AttributeError(name)
        return getattr(self._lpfm_complete(), name)

    def _lpfm_complete(self) -> "_DeferredModule":
        if not self.__dict__.get("_lpfm_completed"):
            self.__dict__["_lpfm_completed"] = True
            spec = importlib.util.spec_from_file_location(self.__name__, self.__file__)
            spec.loader.exec_module(self)
            registry = self.__dict__.get("_SIMPLIFY_REGISTRY")
            if registry is not None:
                registry.update(self.__dict__["_lpfm_recorded"])
        return self


def _stand_in(module: _DeferredModule, name: str):
    if name == "simplify_if_compile":
        def simplify_if_compile(cls):
            module.__dict__["_lpfm_recorded"].append(cls)
            return cls

        return simplify_if_compile

    def call_the_real_one(*args, **kwargs):
        return getattr(module._lpfm_complete(), name)(*args, **kwargs)

    call_the_real_one.__name__ = call_the_real_one.__qualname__ = name
    return call_the_real_one


def _enter_deferred_module(name: str) -> None:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        raise ImportError(f"{name} is not a source module here")
    module = _DeferredModule(name)
    module.__file__, module.__package__ = spec.origin, name.rpartition(".")[0]
    module.__dict__["_lpfm_recorded"] = []
    for attribute in _DEFERRED_MODULES[name]:
        setattr(module, attribute, _stand_in(module, attribute))
    parent, _, child = name.rpartition(".")
    sys.modules[name] = module
    setattr(sys.modules[parent], child, module)


def _enter_deferred(name: str) -> None:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None or not spec.submodule_search_locations:
        raise ImportError(f"{name} is not a package here")
    package = _DeferredPackage(name)
    package.__path__ = list(spec.submodule_search_locations)
    package.__file__ = spec.origin
    package.__package__ = name
    package.__dict__["_lpfm_init"] = spec.origin
    parent, _, child = name.rpartition(".")
    sys.modules[name] = package
    setattr(sys.modules[parent], child, package)


def _preload_names(name: str) -> None:
    for attribute, module in _PRELOADED_NAMES.get(name, {}).items():
        setattr(sys.modules[name], attribute, getattr(importlib.import_module(module), attribute))


def _import_lean() -> types.SimpleNamespace:
    import mace  # noqa: F401  (the top package's init is small)

    entered = [n for n in _DEFERRED if n not in sys.modules]
    loaded_before = set(sys.modules)
    try:
        for name in entered:
            _enter_deferred(name)
        # only inside a deferred package: the real one has imported them already
        for name in _DEFERRED_MODULES:
            if name.rpartition(".")[0] in entered and name not in sys.modules:
                _enter_deferred_module(name)
        for name in entered:
            _preload_names(name)
        blocks = importlib.import_module("mace.modules.blocks")
        models = importlib.import_module("mace.modules.models")
    except Exception:
        # undo everything, so the plain import below starts from a clean state
        for name in set(sys.modules) - loaded_before:
            if name.startswith("mace."):
                del sys.modules[name]
        for name in entered:
            sys.modules["mace"].__dict__.pop(name.rpartition(".")[2], None)
        raise
    return types.SimpleNamespace(MACE=models.MACE, blocks=blocks)


_NETWORK_PARTS: types.SimpleNamespace | None = None


def mace_network_parts(notices=None) -> types.SimpleNamespace:
    """``MACE`` (the model class) and ``blocks`` (its interaction and readout blocks),
    imported once per process. What mace prints on import (a notice that the optional
    cuequivariance accelerator is missing) goes to ``notices``, by default stderr: never
    to stdout, where ``lpfm classify --json`` writes."""
    global _NETWORK_PARTS
    if _NETWORK_PARTS is None:
        with contextlib.redirect_stdout(notices or sys.stderr):
            try:
                _NETWORK_PARTS = _import_lean()
            except Exception:  # noqa: BLE001  (another mace-torch layout: the full import)
                from mace.modules import blocks, models

                _NETWORK_PARTS = types.SimpleNamespace(MACE=models.MACE, blocks=blocks)
    return _NETWORK_PARTS


def import_mace_quietly() -> bool:
    """Import mace-torch's network parts without its notice that the optional
    cuequivariance accelerator is missing (printed once per process, so once per MPI
    rank); ``lpfm doctor`` reports it instead. Returns whether the notice was given."""
    if _NETWORK_PARTS is not None or "mace.modules.blocks" in sys.modules:
        return False
    notice = io.StringIO()
    mace_network_parts(notice)
    return "cuequivariance" in notice.getvalue()
