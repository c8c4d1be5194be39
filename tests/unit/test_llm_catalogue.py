"""The LLM catalogue: weight bytes per dtype, KV bytes per token, name aliases, load times."""

from __future__ import annotations

import pytest

from scheduler.domain.llm_catalogue import (
    LLM_CATALOGUE,
    canonical_model_name,
    lookup,
    model_size_bytes,
    normalise_model_name,
    weight_bytes,
)
from scheduler.domain.model_loading import (
    GPU,
    HOST_RAM,
    LOCAL_DISK,
    REMOTE,
    LoadBandwidths,
)


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [("fp32", 280e9), ("bf16", 140e9), ("fp16", 140e9), ("fp8", 70e9), ("int8", 70e9),
     ("int4", 35e9), ("BFloat16", 140e9), ("awq", 35e9)],
)  # fmt: skip
def test_weight_bytes_per_dtype(dtype: str, expected: float) -> None:
    assert weight_bytes(70, dtype) == round(expected)


def test_weight_bytes_rejects_unknown_dtype() -> None:
    with pytest.raises(ValueError, match="unknown dtype"):
        weight_bytes(7, "fp6")


def test_catalogue_has_the_model_card_figures() -> None:
    assert set(LLM_CATALOGUE) >= {
        "llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b", "mixtral-8x7b",
        "qwen2.5-72b", "mistral-7b", "deepseek-v3",
    }  # fmt: skip
    llama70 = LLM_CATALOGUE["llama-3.1-70b"]
    assert (llama70.num_layers, llama70.num_kv_heads, llama70.head_dim) == (80, 8, 128)
    # 2 (K and V) x 8 heads x 128 dims x 80 layers x 2 bytes = 320 KiB per token.
    assert llama70.kv_bytes_per_token() == 327_680
    assert llama70.kv_bytes_per_token("fp8") == 163_840
    assert llama70.kv_bytes(1000) == 327_680_000
    # MLA caches 576 elements per layer: 61 x 576 x 2 bytes.
    assert LLM_CATALOGUE["deepseek-v3"].kv_bytes_per_token() == 61 * 576 * 2


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("meta-llama/Meta-Llama-3.1-70B-Instruct", "llama-3.1-70b"),
        ("meta-llama/Llama-3.1-8B-Instruct", "llama-3.1-8b"),
        ("mistralai/Mistral-7B-Instruct-v0.3", "mistral-7b"),
        ("mistralai/Mixtral-8x7B-Instruct-v0.1", "mixtral-8x7b"),
        ("Qwen/Qwen2.5-72B-Instruct", "qwen2.5-72b"),
        ("deepseek-ai/DeepSeek-V3", "deepseek-v3"),
        ("Llama-3.1-70B-Instruct-FP8", "llama-3.1-70b-fp8"),
    ],
)
def test_hugging_face_ids_normalise_to_catalogue_names(name: str, key: str) -> None:
    assert normalise_model_name(name) == key
    assert canonical_model_name(name) == key


def test_model_size_bytes() -> None:
    assert model_size_bytes("llama-3.1-8b") == 16_060_000_000
    assert model_size_bytes("LLAMA-3.1-8B") == 16_060_000_000, "case-insensitive"
    assert model_size_bytes("meta-llama/Llama-3.1-8B-Instruct") == 16_060_000_000
    assert model_size_bytes("llama-3.1-70b", "int4") == 35_300_000_000
    assert model_size_bytes("llama-3.1-70b-fp8") == 70_600_000_000
    assert model_size_bytes("my-own-model") is None
    assert lookup("my-own-model") == (None, "bf16")
    assert canonical_model_name("Acme/My-Own-Model") == "my-own-model"


def test_load_seconds_per_tier() -> None:
    bandwidths = LoadBandwidths()
    size = 140_000_000_000  # 70B in bf16
    assert bandwidths.seconds(size, GPU) == 0.0
    assert bandwidths.seconds(size, HOST_RAM, "A100-80GB") == pytest.approx(5.6)  # PCIe Gen4
    assert bandwidths.seconds(size, HOST_RAM, "H100-80GB") == pytest.approx(2.8)  # PCIe Gen5
    assert bandwidths.seconds(size, LOCAL_DISK) == pytest.approx(28.0)
    assert bandwidths.seconds(size, REMOTE) == pytest.approx(140.0)
    assert LoadBandwidths(remote_gbps=2.0).seconds(size, REMOTE) == pytest.approx(70.0)
