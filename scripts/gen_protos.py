"""Generate the Python protobuf and gRPC code from protos/ into the client package.

The generated code is committed, so that the client installs without grpcio-tools;
tests/test_protos.py regenerates it into a temporary folder and fails if the
committed copy differs. Run after any change to protos/:

    .venv/bin/python scripts/gen_protos.py
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
PACKAGE_DIR = ROOT / "clients" / "python" / "src" / "modelplex_client" / "pb"
IMPORT_PACKAGE = "modelplex_client.pb"

# protoc writes `from modelplex.v1 import common_pb2` (and `from inference import ...` for the
# Open Inference Protocol's package); the generated modules live in the client package
# instead, so that `modelplex` stays the server's package.
_IMPORT = re.compile(r"^from (modelplex\.v1|inference) import ", re.MULTILINE)
# The proto packages compiled, as folders under protos/: modelplex's own API, and the Open
# Inference Protocol (package `inference`, KServe's and Triton's names; docs/oip.md).
PACKAGES = (("modelplex", "v1"), ("inference",))


def generate(out_dir: Path) -> list[Path]:
    """Generate into out_dir (flat: one module per proto file); return the files written."""
    import grpc_tools
    from grpc_tools import protoc  # only needed by developers, not by client users

    out_dir.mkdir(parents=True, exist_ok=True)
    staging = out_dir / "_staging"
    staging.mkdir(exist_ok=True)
    protos = sorted(str(p.relative_to(PROTOS)) for folder in PACKAGES for p in PROTOS.joinpath(*folder).glob("*.proto"))
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTOS}",
        f"-I{well_known}",
        f"--python_out={staging}",
        f"--pyi_out={staging}",
        f"--grpc_python_out={staging}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    written = []
    for src in sorted(src for folder in PACKAGES for src in staging.joinpath(*folder).iterdir()):
        text = _IMPORT.sub(f"from {IMPORT_PACKAGE} import ", src.read_text())
        dst = out_dir / src.name
        dst.write_text(text)
        written.append(dst)
        src.unlink()
    for d in sorted(staging.rglob("*"), reverse=True):
        d.rmdir()
    staging.rmdir()
    init = out_dir / "__init__.py"
    init.write_text(
        '"""Generated protobuf and gRPC modules for modelplex.v1 and the Open Inference Protocol\'s\n'
        'package `inference` (see scripts/gen_protos.py)."""\n'
    )
    written.append(init)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=PACKAGE_DIR)
    out = parser.parse_args().out
    for path in generate(out):
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path, file=sys.stderr)


if __name__ == "__main__":
    main()
