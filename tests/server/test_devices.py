"""Device placement against fake inventories; a real CUDA run where a GPU is present."""

from __future__ import annotations

import pytest

from modelplex.errors import ConfigError
from modelplex.server.devices import DeviceInventory, place, torch_inventory


def gpus(*free_gib: int) -> DeviceInventory:
    return DeviceInventory(len(free_gib), lambda i: free_gib[i] << 30)


def test_cpu_and_instances_per_device():
    assert place(["cpu"], 2, gpus()) == ["cpu", "cpu"]


def test_auto_without_gpus_is_cpu():
    assert place(["auto"], 1, gpus()) == ["cpu"]


def test_auto_picks_the_gpu_with_most_free_memory():
    assert place(["auto"], 1, gpus(3, 20, 7)) == ["cuda:1"]


def test_explicit_gpus_and_alias():
    assert place(["cuda:0", "cuda:1"], 2, gpus(1, 1)) == ["cuda:0", "cuda:0", "cuda:1", "cuda:1"]
    assert place(["cuda"], 1, gpus(1)) == ["cuda:0"]


@pytest.mark.parametrize(
    ("device", "inventory", "message"),
    [
        (
            "cuda:2",
            gpus(1, 1),
            "device 'cuda:2' does not exist: this machine has 2 visible CUDA device(s) (cuda:0, cuda:1)",
        ),
        ("cuda", gpus(), "has 0 visible CUDA device(s) (none)"),
        ("gpu0", gpus(1), "unknown device 'gpu0'"),
        ("cuda:x", gpus(1), "unknown device"),
    ],
)
def test_missing_or_bad_device_is_an_error_never_a_fallback(device, inventory, message):
    with pytest.raises(ConfigError) as info:
        place([device], 1, inventory)
    assert message in str(info.value)


def test_registry_binds_each_instance_to_its_device(probe_server):
    """Placement through the registry with a fake two-GPU inventory: the factory of each
    instance is handed its own device (the probe model itself does not touch CUDA)."""
    from modelplex.testing import running_server
    from probe_plugin import PLUGINS, PROBES, probe_model

    config = {"models": [probe_model(devices=["cuda:0", "cuda:1"], instances_per_device=1)]}
    with running_server(config, extra_plugins=PLUGINS, inventory=gpus(8, 8)) as server:
        from modelplex_client import Client

        with Client(server.address) as client:
            info = client.get_model("probe")
    assert sorted(PROBES["probe"].devices) == ["cuda:0", "cuda:1"]
    assert [i.device for i in info.instances] == ["cuda:0", "cuda:1"]
    PROBES.clear()


def test_registry_refuses_a_device_that_does_not_exist(probe_server):
    from probe_plugin import probe_model

    with pytest.raises(ConfigError, match="model 'probe': device 'cuda:0' does not exist"):
        probe_server(probe_model(devices=["cuda:0"]))


cuda = pytest.mark.skipif(torch_inventory().cuda_count == 0, reason="needs a CUDA GPU")


@pytest.mark.cuda
@cuda
def test_real_cuda_inventory_places_auto_on_a_gpu():
    inv = torch_inventory()
    assert place(["auto"], 1, inv)[0].startswith("cuda:")


def test_several_auto_entries_spread_over_the_gpus():
    assert place(["auto", "auto"], 1, gpus(10, 9)) == ["cuda:0", "cuda:1"]
    assert place(["auto", "auto", "auto"], 1, gpus(10, 9)) == ["cuda:0", "cuda:1", "cuda:0"]
