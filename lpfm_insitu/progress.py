"""The package's one kind of progress bar: tqdm on stderr, so stdout stays for results.

Commands that loop over frames, sections, step sizes or training steps all take their
bar from :func:`progress`; ``--quiet`` turns it off, and a loop over fewer than two
items shows none (one item is no progress to watch).
"""

from __future__ import annotations

import sys


def progress(iterable=None, *, total: int | None = None, desc: str | None = None,
             unit: str = "it", enabled: bool = True, initial: int = 0, leave: bool = False):
    """A tqdm bar over ``iterable``, or one to ``update`` by hand when it is None.

    ``leave=False`` clears the bar when done (a command's own output follows it);
    a disabled bar is a silent stand-in with the same interface.
    """
    from tqdm.auto import tqdm

    if iterable is not None and total is None:
        iterable = iterable if hasattr(iterable, "__len__") else list(iterable)
        total = len(iterable)
    too_few = iterable is not None and total < 2
    return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial,
                file=sys.stderr, leave=leave, disable=not enabled or too_few)
