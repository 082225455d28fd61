"""Generate the Python protobuf and gRPC code of the detection task from protos/.

The generated modules are committed under src/modelplex_detection/pb/, so that the
distribution installs without grpcio-tools. Run after any change to protos/, with
a Python that has grpcio-tools (modelplex's development environment has it):

    python gen_protos.py            # writes src/modelplex_detection/pb/
    python gen_protos.py --out DIR  # somewhere else (the tests compare the two)
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTOS = HERE / "protos"
PROTO_DIR = ("modelplex", "contrib", "detection", "v1")
PACKAGE_DIR = HERE / "src" / "modelplex_detection" / "pb"
IMPORT_PACKAGE = "modelplex_detection.pb"

# protoc writes `from modelplex.contrib.detection.v1 import detection_pb2` into the gRPC
# module; the generated modules live in this distribution's package instead, so that
# `modelplex` stays the server's package.
_IMPORT = re.compile(r"^from modelplex\.contrib\.detection\.v1 import ", re.MULTILINE)


def generate(out_dir: Path) -> list[Path]:
    """Generate into ``out_dir`` (flat: one module per proto file); return the files written."""
    import grpc_tools
    from grpc_tools import protoc  # a developer's tool, not a dependency of the distribution

    out_dir.mkdir(parents=True, exist_ok=True)
    protos = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.joinpath(*PROTO_DIR).glob("*.proto"))
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(tmp)
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
        for src in sorted(staging.joinpath(*PROTO_DIR).iterdir()):
            dst = out_dir / src.name
            dst.write_text(_IMPORT.sub(f"from {IMPORT_PACKAGE} import ", src.read_text()))
            written.append(dst)
    init = out_dir / "__init__.py"
    init.write_text(
        '"""Generated protobuf and gRPC modules for modelplex.contrib.detection.v1 (see gen_protos.py)."""\n'
    )
    written.append(init)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=PACKAGE_DIR)
    out = parser.parse_args().out
    if out == PACKAGE_DIR and out.exists():
        shutil.rmtree(out)  # no stale module of a removed proto file survives
    for path in generate(out):
        print(path.relative_to(HERE) if path.is_relative_to(HERE) else path, file=sys.stderr)


if __name__ == "__main__":
    main()
