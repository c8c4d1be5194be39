"""The agent's engine scrape: vLLM's and SGLang's names through
prometheus-client's parser, and which allocations it scrapes."""

from __future__ import annotations

from agent.engine_metrics import engine_ports, parse_metrics
from gpupool.v1 import types_pb2

VLLM = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="meta-llama/Llama-3.1-8B"} 7.0
vllm:num_requests_running{engine="1",model_name="meta-llama/Llama-3.1-8B"} 5.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="meta-llama/Llama-3.1-8B"} 3.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="meta-llama/Llama-3.1-8B"} 0.5
vllm:kv_cache_usage_perc{engine="1",model_name="meta-llama/Llama-3.1-8B"} 0.7
# TYPE vllm:prompt_tokens counter
vllm:prompt_tokens_total{engine="0",model_name="meta-llama/Llama-3.1-8B"} 1234.0
vllm:prompt_tokens_created{engine="0",model_name="meta-llama/Llama-3.1-8B"} 1.7e9
# TYPE vllm:generation_tokens counter
vllm:generation_tokens_total{engine="0",model_name="meta-llama/Llama-3.1-8B"} 567.0
"""

OLD_VLLM = """\
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{model_name="m"} 0.25
"""

SGLANG = """\
# TYPE sglang:token_usage gauge
sglang:token_usage{model_name="qwen"} 0.9
# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{model_name="qwen"} 12.0
# TYPE sglang:num_queue_reqs gauge
sglang:num_queue_reqs{model_name="qwen"} 4.0
# TYPE sglang:prompt_tokens counter
sglang:prompt_tokens_total{model_name="qwen"} 10.0
# TYPE sglang:generation_tokens counter
sglang:generation_tokens_total{model_name="qwen"} 20.0
"""


def test_vllm_names_sum_engines_and_average_kv() -> None:
    figures = parse_metrics(VLLM)
    assert figures.num_requests_running == 12
    assert figures.num_requests_waiting == 3
    assert abs(figures.kv_cache_usage - 0.6) < 1e-9
    assert (figures.prompt_tokens_total, figures.generation_tokens_total) == (1234, 567)


def test_the_old_vllm_kv_name_and_sglang_names() -> None:
    assert parse_metrics(OLD_VLLM).kv_cache_usage == 0.25
    figures = parse_metrics(SGLANG)
    assert figures.kv_cache_usage == 0.9
    assert (figures.num_requests_running, figures.num_requests_waiting) == (12, 4)
    assert (figures.prompt_tokens_total, figures.generation_tokens_total) == (10, 20)


def test_only_engines_whose_rank_0_is_here_are_scraped() -> None:
    def allocation(allocation_id: str, port: str, nodes: list[str]) -> types_pb2.Allocation:
        return types_pb2.Allocation(
            id=allocation_id,
            worker=types_pb2.WorkerSpec(template="sim-engine", args={"port": port}),
            bindings=[types_pb2.GpuBinding(node=n, rank=i) for i, n in enumerate(nodes)],
        )

    allocations = [
        allocation("a", "18000", ["h100-0"]),
        allocation("b", "18001", ["h100-1", "h100-0"]),  # rank 0 elsewhere
        allocation("c", "", ["h100-0"]),  # serves no port
        types_pb2.Allocation(id="d", bindings=[types_pb2.GpuBinding(node="h100-0")]),
    ]
    assert engine_ports("h100-0", allocations) == {"a": 18000}
