"""Shared fixtures: installed example plugins, PNG makers, running servers."""

from __future__ import annotations

import importlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))  # probe_plugin


def _user_caches() -> dict[str, set[str]]:
    """Every file under the real torch hub and Hugging Face caches of this user."""
    home = Path.home() / ".cache"
    roots = [
        Path(os.environ.get("TORCH_HOME", home / "torch")) / "hub",
        Path(os.environ.get("HF_HOME", home / "huggingface")),
    ]
    return {str(r): {str(p.relative_to(r)) for p in r.rglob("*")} if r.is_dir() else set() for r in roots}


@pytest.fixture(scope="session", autouse=True)
def real_caches_untouched():
    """No test writes into the user's real model caches: a test that pins torch.hub's folder
    globally (instead of monkeypatching it) would leave random "pretrained" weights there, and
    a later real server would serve them."""
    before = _user_caches()
    yield
    after = _user_caches()
    added = {root: sorted(after[root] - before[root]) for root in after if after[root] - before[root]}
    assert not added, f"the tests wrote into the real model caches: {added}"


@pytest.fixture(scope="session")
def example_plugins(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example plugins under examples/, pip-installed as their own
    distributions into a folder that is then put on sys.path."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(ROOT / "examples" / "modelplex-example-plugin"),
            str(ROOT / "examples" / "broken-plugin"),
        ],
        check=True,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    yield target
    sys.path.remove(str(target))
    for name in [m for m in sys.modules if m.startswith(("modelplex_example", "modelplex_broken_example"))]:
        del sys.modules[name]
    importlib.invalidate_caches()


def png(color: tuple[int, int, int], size: tuple[int, int] = (40, 30), fmt: str = "PNG") -> bytes:
    """An image file of one colour."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture
def make_image():
    return png


@pytest.fixture
def probe_server():
    """Start a server with the probe plugin and the given [[models]] entries; yields a factory."""
    from contextlib import ExitStack

    from modelplex.testing import running_server
    from probe_plugin import PLUGINS, PROBES

    with ExitStack() as stack:

        def start(*models: dict, **config: object):
            return stack.enter_context(running_server({"models": list(models), **config}, extra_plugins=PLUGINS))

        yield start
    PROBES.clear()
