"""Known LLMs: architecture figures from their model cards, and weight/KV sizes.

Pure and general on purpose: warm placement uses it for the bytes a cold
start has to move, and automatic layout (TP sizing) can use the same figures
for weights plus KV cache per token.

Figures come from each model's Hugging Face card and config.json:
meta-llama/Llama-3.1-{8B,70B,405B}, mistralai/Mixtral-8x7B-v0.1,
Qwen/Qwen2.5-72B, mistralai/Mistral-7B-v0.3, deepseek-ai/DeepSeek-V3.
Parameter counts are the cards' totals (MoE models: all experts, since all
of them must be resident).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from scheduler.domain.errors import quoted

# Bytes per parameter (and per KV-cache element) for each storage dtype.
DTYPE_BYTES: dict[str, float] = {
    "fp32": 4.0,
    "bf16": 2.0,
    "fp16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "int4": 0.5,
}
DEFAULT_DTYPE = "bf16"
_DTYPE_ALIASES = {
    "float32": "fp32",
    "bfloat16": "bf16",
    "float16": "fp16",
    "half": "fp16",
    "e4m3": "fp8",
    "w8a8": "int8",
    "awq": "int4",
    "gptq": "int4",
    "w4a16": "int4",
}


def normalise_dtype(dtype: str) -> str:
    """The canonical dtype name (bf16, fp8 …); ValueError if unknown."""
    name = dtype.strip().lower()
    name = _DTYPE_ALIASES.get(name, name)
    if name not in DTYPE_BYTES:
        raise ValueError(f"unknown dtype {quoted(dtype)} (known: {', '.join(DTYPE_BYTES)})")
    return name


def weight_bytes(params_billion: float, dtype: str = DEFAULT_DTYPE) -> int:
    """Bytes of the weights alone: parameters × bytes per parameter (no overheads)."""
    if params_billion < 0:
        raise ValueError("params_billion must not be negative")
    return round(params_billion * 1e9 * DTYPE_BYTES[normalise_dtype(dtype)])


@dataclass(frozen=True)
class LlmModel:
    name: str  # catalogue name, lower case, e.g. "llama-3.1-70b"
    params_billion: float
    num_layers: int
    num_kv_heads: int
    head_dim: int
    hidden_size: int
    max_context: int  # tokens
    # Elements cached per token and layer when the model does not cache plain
    # K and V heads (DeepSeek's MLA caches a compressed latent); None: 2 × kv heads × head dim.
    kv_elements_per_layer: int | None = None
    hf_ids: tuple[str, ...] = ()  # Hugging Face ids that name this model

    def weight_bytes(self, dtype: str = DEFAULT_DTYPE) -> int:
        return weight_bytes(self.params_billion, dtype)

    def kv_bytes_per_token(self, dtype: str = DEFAULT_DTYPE) -> int:
        """KV-cache bytes one token takes across all layers (whole model, before TP split)."""
        per_layer = self.kv_elements_per_layer or 2 * self.num_kv_heads * self.head_dim
        return int(per_layer * self.num_layers * DTYPE_BYTES[normalise_dtype(dtype)])

    def kv_bytes(self, tokens: int, dtype: str = DEFAULT_DTYPE) -> int:
        """KV-cache bytes for `tokens` tokens in flight (summed over all sequences)."""
        return tokens * self.kv_bytes_per_token(dtype)


LLM_CATALOGUE: dict[str, LlmModel] = {
    m.name: m
    for m in (
        LlmModel(
            "llama-3.1-8b", 8.03, 32, 8, 128, 4096, 131072,
            hf_ids=("meta-llama/Llama-3.1-8B", "meta-llama/Meta-Llama-3.1-8B-Instruct"),
        ),
        LlmModel(
            "llama-3.1-70b", 70.6, 80, 8, 128, 8192, 131072,
            hf_ids=("meta-llama/Llama-3.1-70B", "meta-llama/Meta-Llama-3.1-70B-Instruct"),
        ),
        LlmModel(
            "llama-3.1-405b", 405.9, 126, 8, 128, 16384, 131072,
            hf_ids=("meta-llama/Llama-3.1-405B", "meta-llama/Meta-Llama-3.1-405B-Instruct"),
        ),
        LlmModel(
            "mixtral-8x7b", 46.7, 32, 8, 128, 4096, 32768,
            hf_ids=("mistralai/Mixtral-8x7B-v0.1", "mistralai/Mixtral-8x7B-Instruct-v0.1"),
        ),
        LlmModel(
            "qwen2.5-72b", 72.7, 80, 8, 128, 8192, 131072,
            hf_ids=("Qwen/Qwen2.5-72B", "Qwen/Qwen2.5-72B-Instruct"),
        ),
        LlmModel(
            "mistral-7b", 7.25, 32, 8, 128, 4096, 32768,
            hf_ids=("mistralai/Mistral-7B-v0.3", "mistralai/Mistral-7B-Instruct-v0.3"),
        ),
        # MLA: kv_lora_rank 512 + qk_rope_head_dim 64 elements cached per token and layer.
        LlmModel(
            "deepseek-v3", 671.0, 61, 128, 128, 7168, 131072,
            kv_elements_per_layer=576,
            hf_ids=("deepseek-ai/DeepSeek-V3", "deepseek-ai/DeepSeek-V3-Base"),
        ),
    )
}  # fmt: skip

# Suffixes that name a variant of the same weights (same size in the same dtype).
_VARIANT_SUFFIX = re.compile(r"-(instruct|chat|base|hf|it)$|-v\d+\.\d+$")
_DTYPE_SUFFIX = re.compile(r"-(fp32|bf16|fp16|fp8|int8|int4|awq|gptq|w4a16|w8a8)$")


def normalise_model_name(name: str) -> str:
    """A comparable key: lower case, no organisation prefix, no variant suffixes.

    "meta-llama/Meta-Llama-3.1-70B-Instruct" -> "llama-3.1-70b". The dtype
    suffix (-fp8, -awq …) stays: it changes the size.
    """
    key = name.strip().lower()
    key = key.rsplit("/", 1)[-1]
    key = key.removeprefix("meta-")
    dtype_match = _DTYPE_SUFFIX.search(key)
    dtype = dtype_match.group(0) if dtype_match else ""
    key = key.removesuffix(dtype)
    while True:
        stripped = _VARIANT_SUFFIX.sub("", key)
        if stripped == key:
            break
        key = stripped
    return key + dtype


def lookup(name: str) -> tuple[LlmModel | None, str]:
    """(catalogue entry or None, dtype) for a catalogue name or a Hugging Face id.

    The dtype is the one a -fp8/-awq/… suffix names, else bf16.
    """
    key = normalise_model_name(name)
    dtype = DEFAULT_DTYPE
    match = _DTYPE_SUFFIX.search(key)
    if match:
        dtype = normalise_dtype(match.group(1))
        key = key.removesuffix(match.group(0))
    model = LLM_CATALOGUE.get(key) or _BY_HF_ID.get(name.strip().lower())
    return model, dtype


def model_size_bytes(name: str, dtype: str | None = None) -> int | None:
    """Weight bytes of a known model, else None.

    The dtype is the one given, else the one the name carries (-fp8 …), else bf16.
    """
    model, named_dtype = lookup(name)
    if model is None:
        return None
    return model.weight_bytes(dtype or named_dtype)


def canonical_model_name(name: str) -> str:
    """The catalogue name (with a dtype suffix if one was named) or the normalised key.

    Residency reports and requests are compared by this, so "meta-llama/Llama-3.1-8B-Instruct"
    and "llama-3.1-8b" mean the same weights.
    """
    model, dtype = lookup(name)
    if model is None:
        return normalise_model_name(name)
    return model.name if dtype == DEFAULT_DTYPE else f"{model.name}-{dtype}"


_BY_HF_ID: dict[str, LlmModel] = {
    hf.lower(): m for m in LLM_CATALOGUE.values() for hf in m.hf_ids
}  # fmt: skip
