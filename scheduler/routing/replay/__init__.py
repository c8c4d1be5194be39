"""`gpupool route-sim`: replay an LLM request trace through the routing policies."""
