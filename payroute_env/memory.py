"""Memory a run will need, estimated before it starts, and the machine's memory to compare it with.

A batch of environments holds one state record per environment (about 6 KB for six banks), and a reset
builds a fresh batch while the old one is still alive. ``simulator_bytes`` counts that, with the
observations and their copies; the evaluators and ``train.py`` add what they keep beside it (episode records,
rollout and replay buffers) and call ``require`` before allocating anything. A run beyond the machine's
memory is then refused with one line naming the setting and the estimate, instead of being killed by the
kernel's out-of-memory killer an hour later, or failing with a traceback from deep inside numpy.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from . import core, observations
from .scenario import Scenario

__all__ = ["MemoryLimitError", "available_bytes", "describe_bytes", "require", "simulator_bytes"]

CHECK_FROM_BYTES = 256 * 2**20  # below this no run is refused: small runs never read the machine's memory


class MemoryLimitError(ValueError):
    """A run would need more memory than the machine has available; the message names the setting."""


def simulator_bytes(scenario: Scenario, num_envs: int, observe_internal: bool = False) -> int:
    """Peak bytes of a ``Simulator`` of ``num_envs`` environments, an upper estimate.

    A reset builds a new state batch (and per-environment working arrays as large again) while the old batch
    is alive, and observations are copied on their way out: four state records and four observation vectors
    per environment. ``tests/test_memory.py`` checks the figure against the peak that ``tracemalloc``
    measures over resets and steps (it lies between half of this and this).
    """
    state = core.state_bytes(scenario.n_banks, scenario.max_attempts)
    obs = 4 * observations.size(scenario.n_banks, observe_internal)  # float32
    return int(num_envs) * 4 * (state + obs)


def available_bytes() -> int | None:
    """Memory a new allocation can get without swapping (Linux ``MemAvailable``), else the physical memory;
    ``None`` when the system tells neither."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):
        return None


def describe_bytes(n: float) -> str:
    """``n`` bytes for people: ``512 MiB``, ``41.2 GiB``."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"


def require(parts: Sequence[tuple[str, int]], advice: str, available: int | None = None) -> int:
    """Refuse a run whose estimated memory (the sum of ``parts``, each ``(what, bytes)``) exceeds what the
    machine has available; return the estimate. ``advice`` names the setting to lower (``"lower --episodes"``).

    The largest part is named in the message, with the estimate and the memory available, on one line.
    """
    need = int(sum(size for _, size in parts))
    if need < CHECK_FROM_BYTES:
        return need
    have = available_bytes() if available is None else available
    if have is not None and need > have:
        what, size = max(parts, key=lambda part: part[1])
        raise MemoryLimitError(
            f"this run needs about {describe_bytes(need)} of memory, more than the {describe_bytes(have)} this "
            f"machine has available ({what}: {describe_bytes(size)}); {advice}"
        )
    return need
