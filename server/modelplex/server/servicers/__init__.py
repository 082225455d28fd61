"""Thin gRPC servicers: protobuf in, core call, protobuf out. One module per service."""
