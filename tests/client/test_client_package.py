"""The client installs and imports without torch."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_client_depends_on_grpc_and_protobuf_only():
    project = tomllib.loads((ROOT / "clients" / "python" / "pyproject.toml").read_text())["project"]
    names = {d.split(">")[0].split("=")[0].split("<")[0].strip() for d in project["dependencies"]}
    assert names == {"grpcio", "grpcio-health-checking", "protobuf"}


def test_client_imports_without_torch():
    code = (
        "import sys; import modelplex_client, modelplex_client.cli, modelplex_client.aio;"
        "assert 'torch' not in sys.modules and 'modelplex' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
