"""Make e3nn importable under torch >= 2.6 without weakening torch.load globally.

e3nn 0.4.4 (pinned by mace-torch) loads its constants file with a bare ``torch.load``.
Since torch 2.6 that call defaults to ``weights_only=True`` and refuses the Python
``slice`` objects stored in the file. Allow-listing ``slice`` alone keeps every other
``torch.load`` in the process as strict as torch made it.
"""

import torch


def allow_e3nn_constants() -> None:
    add_safe_globals = getattr(torch.serialization, "add_safe_globals", None)
    if add_safe_globals is not None:  # torch < 2.4 has no allow-list and needs none
        add_safe_globals([slice])


allow_e3nn_constants()


def silence_torchscript_notes() -> None:
    """e3nn compiles its modules with TorchScript when a network is built, and torch warns
    about each of them (dozens of lines before any answer). They concern e3nn's code, not
    the user's; only these messages are filtered."""
    import warnings

    for message in (r"The TorchScript type system doesn't support",
                    r"`torch\.jit\.script` is deprecated",
                    r"`torch\.jit\.script_method` is deprecated",
                    r"`torch\.jit\.trace` is deprecated",
                    # mace-torch sets this variable on import; e3nn's own load then warns
                    r"Environment variable TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD detected"):
        warnings.filterwarnings("ignore", message=message)


silence_torchscript_notes()

