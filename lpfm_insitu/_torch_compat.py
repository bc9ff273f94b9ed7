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
