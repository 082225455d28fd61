"""The committed generated code matches protos/ (regenerate with scripts/gen_protos.py)."""

from __future__ import annotations

import filecmp
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import gen_protos  # noqa: E402


def test_generated_code_is_up_to_date(tmp_path):
    written = gen_protos.generate(tmp_path)
    committed = gen_protos.PACKAGE_DIR
    fresh = sorted(p.name for p in written)
    assert sorted(p.name for p in committed.iterdir() if p.is_file()) == fresh
    stale = [name for name in fresh if not filecmp.cmp(tmp_path / name, committed / name, shallow=False)]
    assert not stale, f"generated code is stale: {stale}; run .venv/bin/python scripts/gen_protos.py"


def test_every_service_and_rpc_is_documented():
    """Each service and RPC in protos/ carries a comment, the API's reference text."""
    import re

    undocumented = []
    for proto in (ROOT / "protos" / "modelplex" / "v1").glob("*.proto"):
        lines = proto.read_text().splitlines()
        for i, line in enumerate(lines):
            if re.match(r"\s*(rpc|service) ", line) and not lines[i - 1].strip().startswith("//"):
                undocumented.append(f"{proto.name}:{i + 1}: {line.strip()}")
    assert not undocumented, undocumented
