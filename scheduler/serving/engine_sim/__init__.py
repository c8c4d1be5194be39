"""The simulated inference engine (`gpupool engine simulate`): a real
OpenAI-compatible HTTP server whose speed comes from the performance model
(scheduler/serving/performance.py), with a KV cache of blocks, a prefix
cache and a bounded batch (scheduler/serving/kv_cache.py)."""
