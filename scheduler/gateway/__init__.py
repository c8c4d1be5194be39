"""`gpupool gateway`: the OpenAI-compatible HTTP gateway in front of deployments' replicas."""
