"""Generated protobuf and gRPC modules for modelplex.contrib.detection.v1 (see gen_protos.py)."""
