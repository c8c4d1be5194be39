"""`gpupool engine simulate`: run the simulated engine (what a worker
template launches in place of vllm)."""

from __future__ import annotations

import logging

import click
from aiohttp import web

from scheduler.domain.errors import GpupoolError
from scheduler.serving.engine_sim.engine import SimulatedEngine
from scheduler.serving.engine_sim.server import create_app
from scheduler.serving.performance import (
    DEFAULT_BLOCK_TOKENS,
    DEFAULT_MAX_BATCHED_TOKENS,
    DEFAULT_MAX_NUM_SEQS,
    engine_performance,
)

log = logging.getLogger(__name__)


@click.group()
def engine() -> None:
    """Inference engines gpupool can run by itself."""


@engine.command()
@click.option("--model", required=True, help="LLM catalogue name or HF id (llama-3.1-8b).")
@click.option(
    "--served-model-name", default="", help="The name clients ask for [default: --model]."
)
@click.option("--gpu-model", default="H100-80GB", show_default=True, help="GPU catalogue model.")
@click.option("--gpus", default=1, show_default=True, help="GPUs (tensor parallel degree).")
@click.option("--dtype", default="", help="Weights dtype [default: from the name, else bf16].")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--max-num-seqs", default=DEFAULT_MAX_NUM_SEQS, show_default=True, type=click.IntRange(1)
)
@click.option(
    "--block-size", default=DEFAULT_BLOCK_TOKENS, show_default=True, type=click.IntRange(1)
)
@click.option(
    "--max-num-batched-tokens",
    default=DEFAULT_MAX_BATCHED_TOKENS,
    show_default=True,
    type=click.IntRange(1),
)
@click.option(
    "--kv-blocks",
    default=0,
    type=click.IntRange(0),
    help="KV cache size in blocks [default: from GPU memory].",
)
@click.option(
    "--speedup",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0.01, 1000),
    help="Run this many times faster than the GPU would.",
)
@click.option(
    "--load-seconds",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Seconds /health answers 503 (the weight load).",
)
def simulate(
    model: str,
    served_model_name: str,
    gpu_model: str,
    gpus: int,
    dtype: str,
    host: str,
    port: int,
    max_num_seqs: int,
    block_size: int,
    max_num_batched_tokens: int,
    kv_blocks: int,
    speedup: float,
    load_seconds: float,
) -> None:
    """An OpenAI-compatible server with vLLM's /metrics, at the speed of the
    GPU catalogue's figures (prefill compute-bound, decode memory-bound)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        performance = engine_performance(
            gpu_model,
            model,
            dtype=dtype or None,
            gpu_count=gpus,
            block_tokens=block_size,
            max_num_seqs=max_num_seqs,
            max_batched_tokens=max_num_batched_tokens,
        )
        simulated = SimulatedEngine(performance, kv_blocks or None, speedup)
    except (GpupoolError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    log.info(
        "simulating %s on %d× %s: prefill %.0f tokens/s, decode %.0f tokens/s alone, "
        "KV cache %d blocks of %d tokens",
        model,
        gpus,
        gpu_model,
        performance.prefill_tokens_per_s,
        performance.decode_tokens_per_s(1),
        simulated.total_blocks,
        block_size,
    )
    app = create_app(simulated, model, served_model_name or model, load_seconds)
    web.run_app(app, host=host, port=port, print=None, access_log=None)
