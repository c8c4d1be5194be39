"""Generated gRPC code for the gpupool.v1 API (regenerate with scripts/gen_proto.py)."""
