"""Generated protobuf and gRPC modules for modelplex.v1 and the Open Inference Protocol's
package `inference` (see scripts/gen_protos.py)."""
