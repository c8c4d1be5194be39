"""Scrape the inference engines this node runs and report their figures.

Every allocation in the desired state whose worker takes a `port` argument
and whose rank 0 is on this node serves HTTP there (vllm, sglang, the
simulated engine); its /metrics is scraped every period and the figures go
to the scheduler as one EngineMetricsReport (deployments keep them per
replica; the autoscaler reads them).

Parsed with prometheus-client's parser; vLLM's names and SGLang's:

| figure | vLLM | SGLang |
|---|---|---|
| KV-cache use, 0..1 | vllm:kv_cache_usage_perc, vllm:gpu_cache_usage_perc | sglang:token_usage |
| running | vllm:num_requests_running | sglang:num_running_reqs |
| waiting | vllm:num_requests_waiting | sglang:num_queue_reqs |
| prompt tokens | vllm:prompt_tokens_total | sglang:prompt_tokens_total |
| generated tokens | vllm:generation_tokens_total | sglang:generation_tokens_total |

Several label sets of one name (engines of a data-parallel group) add up;
KV use takes their mean.
"""

from __future__ import annotations

import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from gpupool.v1 import agents_pb2, types_pb2

log = logging.getLogger(__name__)

SCRAPE_TIMEOUT_S = 1.0
MAX_METRICS_BYTES = 4 * 1024 * 1024

_KV = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc", "sglang:token_usage")
_SUMS = {
    "running": ("vllm:num_requests_running", "sglang:num_running_reqs"),
    "waiting": ("vllm:num_requests_waiting", "sglang:num_queue_reqs"),
    "prompt": ("vllm:prompt_tokens_total", "sglang:prompt_tokens_total"),
    "generation": ("vllm:generation_tokens_total", "sglang:generation_tokens_total"),
}


@dataclass(frozen=True)
class EngineFigures:
    kv_cache_usage: float = 0.0
    num_requests_running: int = 0
    num_requests_waiting: int = 0
    prompt_tokens_total: int = 0
    generation_tokens_total: int = 0


def parse_metrics(text: str) -> EngineFigures:
    """The figures of one engine's /metrics page (ValueError if it is no
    Prometheus text)."""
    samples: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(float(sample.value))
    kv = next((samples[n] for n in _KV if n in samples), [])
    sums = {
        key: sum(next((samples[n] for n in names if n in samples), []))
        for key, names in _SUMS.items()
    }
    return EngineFigures(
        kv_cache_usage=min(max(sum(kv) / len(kv), 0.0), 1.0) if kv else 0.0,
        num_requests_running=int(sums["running"]),
        num_requests_waiting=int(sums["waiting"]),
        prompt_tokens_total=int(sums["prompt"]),
        generation_tokens_total=int(sums["generation"]),
    )


def engine_ports(node: str, allocations: Iterable[types_pb2.Allocation]) -> dict[str, int]:
    """allocation id → the port its engine serves on this node (rank 0 here)."""
    ports: dict[str, int] = {}
    for allocation in allocations:
        port = allocation.worker.args.get("port", "") if allocation.HasField("worker") else ""
        if not port.isdigit() or not allocation.bindings:
            continue
        first = min(allocation.bindings, key=lambda b: b.rank)
        if first.node == node and 0 < int(port) < 65536:
            ports[allocation.id] = int(port)
    return ports


def scrape(host: str, port: int) -> agents_pb2.EngineMetrics:
    """One engine's figures, or ok=False with the error."""
    url = f"http://{host}:{port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT_S) as response:
            text = response.read(MAX_METRICS_BYTES).decode("utf-8", "replace")
        figures = parse_metrics(text)
    except (OSError, ValueError, urllib.error.URLError) as exc:
        return agents_pb2.EngineMetrics(ok=False, error=str(exc)[:512])
    return agents_pb2.EngineMetrics(
        ok=True,
        kv_cache_usage=figures.kv_cache_usage,
        num_requests_running=figures.num_requests_running,
        num_requests_waiting=figures.num_requests_waiting,
        prompt_tokens_total=figures.prompt_tokens_total,
        generation_tokens_total=figures.generation_tokens_total,
    )


class EngineScraper:
    """A thread that scrapes this node's engines every `interval_s` and sends
    the report with `send` (dropped while the agent is disconnected)."""

    def __init__(
        self,
        node: str,
        send: Callable[[agents_pb2.AgentMessage], None],
        interval_s: float,
        host: str = "127.0.0.1",
    ) -> None:
        self._node = node
        self._send = send
        self.interval_s = interval_s
        self._host = host
        self._ports: Mapping[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="engine-metrics", daemon=True)

    def observe(self, allocations: Iterable[types_pb2.Allocation]) -> None:
        """The desired state's allocations: which engines to scrape from now on."""
        self._ports = engine_ports(self._node, allocations)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def scrape_once(self) -> agents_pb2.EngineMetricsReport | None:
        ports = dict(self._ports)
        if not ports:
            return None
        engines = []
        for allocation_id, port in sorted(ports.items()):
            figures = scrape(self._host, port)
            figures.allocation_id = allocation_id
            engines.append(figures)
        return agents_pb2.EngineMetricsReport(engines=engines)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                report = self.scrape_once()
            except Exception:  # a scrape must never end the thread
                log.exception("scraping engine metrics failed")
                continue
            if report is not None:
                self._send(agents_pb2.AgentMessage(engine_metrics=report))
