"""The glibc malloc settings load_model applies: freed model memory stays in the process."""

import json
import os
import subprocess
import sys

import pytest

PROBE = """
import json, numpy as np
from lpfm_insitu.model.allocator import keep_freed_memory
def rss_kib():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
applied = keep_freed_memory()
before = rss_kib()
block = np.ones(24 * 2**20 // 8)  # 24 MiB, touched: a tensor-sized block
del block
print(json.dumps({"applied": applied, "kept_kib": rss_kib() - before}))
"""


def _probe(**env):
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_",
                                "GLIBC_TUNABLES", "LPFM_MALLOC_TUNING")}
    environment.update(env)
    out = subprocess.run([sys.executable, "-c", PROBE], env=environment, capture_output=True,
                         text=True, timeout=120, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_blocks_stay_in_the_process_unless_the_user_opts_out():
    tuned = _probe()
    assert tuned["applied"] is True
    assert tuned["kept_kib"] > 20 * 1024  # the freed 24 MiB is kept for the next call
    default = _probe(LPFM_MALLOC_TUNING="0")
    assert default["applied"] is False
    assert default["kept_kib"] < 4 * 1024  # glibc's default unmaps it at once


def test_a_users_own_malloc_settings_are_left_alone():
    assert _probe(MALLOC_TRIM_THRESHOLD_="1048576")["applied"] is False
    assert _probe(GLIBC_TUNABLES="glibc.malloc.trim_threshold=1048576")["applied"] is False
