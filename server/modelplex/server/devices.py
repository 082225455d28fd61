"""Device placement: which device each instance of a model runs on.

Placement is a pure function of the requested devices and a
:class:`DeviceInventory`, so it is tested against fake inventories; the real
inventory comes from torch.cuda.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from modelplex.errors import ConfigError

__all__ = ["DeviceInventory", "place", "torch_inventory"]

_CUDA = re.compile(r"^cuda(?::(\d+))?$")


@dataclass
class DeviceInventory:
    """The visible CUDA devices and how to ask each for its free memory."""

    cuda_count: int = 0
    free_memory: Callable[[int], int] = field(default=lambda index: 0)
    """Free bytes on cuda:index, asked at placement time."""


def torch_inventory() -> DeviceInventory:
    """The inventory of this process as torch sees it."""
    import torch

    if not torch.cuda.is_available():
        return DeviceInventory(0)

    def free(index: int) -> int:
        return int(torch.cuda.mem_get_info(index)[0])

    return DeviceInventory(torch.cuda.device_count(), free)


def _normalise(device: str, inventory: DeviceInventory) -> str:
    d = device.strip().lower()
    if d == "cpu":
        return "cpu"
    m = _CUDA.match(d)
    if not m:
        raise ConfigError(f"unknown device {device!r}: use 'cpu', 'cuda', 'cuda:N' or 'auto'")
    index = int(m.group(1) or 0)
    if index >= inventory.cuda_count:
        visible = ", ".join(f"cuda:{i}" for i in range(inventory.cuda_count)) or "none"
        raise ConfigError(
            f"device {device!r} does not exist: this machine has {inventory.cuda_count} visible CUDA "
            f"device(s) ({visible}). Use 'cpu' or 'auto', or fix CUDA_VISIBLE_DEVICES."
        )
    return f"cuda:{index}"


def place(
    devices: Sequence[str],
    instances_per_device: int,
    inventory: DeviceInventory,
) -> list[str]:
    """One device per instance, in order.

    ``auto`` picks the visible GPU with the most free memory now, or ``cpu``
    when there is none. The registry places a model just before loading it, so
    models loaded earlier count against their GPU's free memory.
    A named device that does not exist raises ConfigError: never a silent
    fallback to the CPU.
    """
    out: list[str] = []
    picked: dict[str, int] = {}
    for device in devices:
        if device.strip().lower() == "auto":
            if inventory.cuda_count == 0:
                chosen = "cpu"
            else:
                # Several "auto" entries of one model spread over the GPUs first.
                free = {i: inventory.free_memory(i) for i in range(inventory.cuda_count)}
                best = max(free, key=lambda i: (-picked.get(f"cuda:{i}", 0), free[i], -i))
                chosen = f"cuda:{best}"
        else:
            chosen = _normalise(device, inventory)
        picked[chosen] = picked.get(chosen, 0) + 1
        out.extend([chosen] * instances_per_device)
    return out


def available_bytes(device: str, inventory: DeviceInventory) -> int | None:
    """Memory a new model may take on ``device`` now: free GPU memory, or the host's
    MemAvailable for ``cpu``; None when unknown."""
    if device.startswith("cuda"):
        index = int(device.partition(":")[2] or 0)
        return inventory.free_memory(index) or None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None
