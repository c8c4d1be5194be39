"""Worker templates: the shipped file loads, bad specs are refused with the
allowed arguments named, and commands render with splats."""

from __future__ import annotations

import pytest

from scheduler.domain.errors import InvalidArgument
from scheduler.domain.worker_templates import (
    DEFAULT_TEMPLATES_FILE,
    RestartPolicy,
    load_templates,
    parse_templates,
    render_command,
    validate_worker,
)


def test_the_shipped_templates_load() -> None:
    templates = load_templates(DEFAULT_TEMPLATES_FILE)
    assert {"vllm", "sglang", "torchrun", "python"} <= set(templates)
    assert templates["vllm"].launch == "per_node"
    assert templates["python"].checkpoint is not None


def test_unknown_template_and_args_name_what_is_allowed() -> None:
    templates = load_templates(DEFAULT_TEMPLATES_FILE)
    with pytest.raises(InvalidArgument, match=r"unknown worker template 'vlm'.*known: python"):
        validate_worker(templates, "vlm", {})
    with pytest.raises(InvalidArgument, match=r"takes no argument 'tp'.*required: model"):
        validate_worker(templates, "vllm", {"model": "m", "tp": "2"})
    with pytest.raises(InvalidArgument, match="needs 'model'"):
        validate_worker(templates, "vllm", {})
    assert validate_worker(templates, "vllm", {"model": "m"}).name == "vllm"


def test_vllm_renders_layout_and_memory_share() -> None:
    vllm = load_templates(DEFAULT_TEMPLATES_FILE)["vllm"]
    argv = render_command(
        vllm,
        {"model": "meta-llama/Llama-3.1-8B", "extra_args": "--max-model-len 8192"},
        {"tp": "4", "pp": "2", "gpu_memory_utilization": "0.45"},
    )
    assert argv[:3] == ["vllm", "serve", "meta-llama/Llama-3.1-8B"]
    assert argv[argv.index("--tensor-parallel-size") + 1] == "4"
    assert argv[argv.index("--pipeline-parallel-size") + 1] == "2"
    assert argv[argv.index("--gpu-memory-utilization") + 1] == "0.45"
    assert argv[-2:] == ["--max-model-len", "8192"]


def test_bad_template_files_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="unknown placeholders"):
        parse_templates({"templates": {"x": {"command": ["run", "{nope}"]}}})
    with pytest.raises(InvalidArgument, match="shadow built-in"):
        parse_templates({"templates": {"x": {"command": ["run"], "args": {"required": ["rank"]}}}})
    with pytest.raises(InvalidArgument, match="unknown signal"):
        parse_templates(
            {"templates": {"x": {"command": ["run"], "checkpoint": {"signal": "SIGNOPE"}}}}
        )


def test_restart_backoff_doubles_up_to_its_cap() -> None:
    policy = RestartPolicy(max_restarts=5, backoff_s=1.0, max_backoff_s=5.0)
    assert [policy.delay(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]
