"""Generated protobuf and gRPC modules for modelplex.v1 (see scripts/gen_protos.py)."""
