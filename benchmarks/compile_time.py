"""How long a fresh checkout waits for numba: the kernels compiled from a cold cache, then loaded from a warm one.

    python benchmarks/compile_time.py

Runs the same short script twice in fresh Python processes that share an empty ``NUMBA_CACHE_DIR`` (a temporary
folder; the checkout's own cache is not touched): the first process compiles (as a fresh clone's first test or
first ``train.py`` does), the second loads what the first cached. Each process times the import, the first
reset, the first step of a small batch (the serial kernel) and the first step of a batch of
``core.PARALLEL_FROM`` (the parallel kernel). The ratio cold / warm is what numba's cache saves.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile

PROBE = """
import json, time
t0 = time.perf_counter()
import numpy as np
from payroute_env.core import PARALLEL_FROM
from payroute_env.vector_env import PaymentRoutingVectorEnv
t1 = time.perf_counter()
small = PaymentRoutingVectorEnv(4, "double11_2013")
small.reset(seed=0)
t2 = time.perf_counter()
small.step(np.zeros(small.action_space.shape, dtype=np.float32))
t3 = time.perf_counter()
large = PaymentRoutingVectorEnv(PARALLEL_FROM, "double11_2013")
large.reset(seed=0)
large.step(np.zeros(large.action_space.shape, dtype=np.float32))
t4 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "first reset": t2 - t1, "first step, serial kernel": t3 - t2,
                  "first step, parallel kernel": t4 - t3}))
"""


def timed_run(cache_dir: str) -> dict[str, float]:
    """The probe's timings in a fresh process whose numba cache is ``cache_dir``."""
    env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as cache:
        cold, warm = timed_run(cache), timed_run(cache)
    print(f"{'':30} {'cold cache':>11} {'warm cache':>11} {'ratio':>7}")
    for key in cold:
        print(f"{key:30} {cold[key]:10.1f}s {warm[key]:10.2f}s {cold[key] / max(warm[key], 1e-9):7.0f}")
    total_cold, total_warm = sum(cold.values()), sum(warm.values())
    print(f"{'total':30} {total_cold:10.1f}s {total_warm:10.2f}s {total_cold / total_warm:7.0f}")


if __name__ == "__main__":
    main()
