"""Worker templates: the shipped file loads, the program is always the
file's, every argument is typed and checked, bad specs are refused with
what is allowed named (and bad values quoted short), and commands render
as argv with splats of allowed flags only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from scheduler.domain.errors import InvalidArgument
from scheduler.domain.worker_args import QUOTE_CHARS
from scheduler.domain.worker_templates import (
    DEFAULT_TEMPLATES_FILE,
    RestartPolicy,
    WorkerTemplate,
    check_args,
    check_env,
    load_templates,
    parse_templates,
    render_command,
    validate_worker,
)

TEMPLATES = load_templates(DEFAULT_TEMPLATES_FILE)
SCRIPT = "/opt/gpupool/workers/train.py"
# The request that ran a root shell when the python template took its
# interpreter from the request.
EXPLOIT = {"python": "/bin/sh", "script": "-c", "script_args": "'id > pwned.txt; echo pwned'"}
# An environment that runs a shell command in any Python program: the
# warnings filter imports `antigravity`, which opens $BROWSER.
ENV_EXPLOIT = {"PYTHONWARNINGS": "ignore::antigravity.x", "BROWSER": "sh -c 'id > pwned.txt' %s"}
ARGS = {
    "vllm": {"model": "m"},
    "sglang": {"model": "m"},
    "torchrun": {"script": SCRIPT},
    "python": {"script": SCRIPT},
}


def _one(args: dict[str, Any], command: list[str] | None = None) -> WorkerTemplate:
    """A template `t` of one typed argument `a` (placed in the command)."""
    body = {"command": command or ["run", "{a}"], "args": {"a": args}}
    return parse_templates({"templates": {"t": body}})["t"]


def _refused(template: WorkerTemplate, value: str, match: str | None = None) -> str:
    with pytest.raises(InvalidArgument, match=match) as info:
        check_args(template, {"a": value})
    message = info.value.message
    assert "'a'" in message, "the message names the argument"
    return message


def test_the_shipped_templates_load() -> None:
    assert {"vllm", "sglang", "torchrun", "python"} <= set(TEMPLATES)
    assert TEMPLATES["vllm"].launch == "per_node"
    assert TEMPLATES["python"].checkpoint is not None


def test_no_shipped_template_takes_its_program_from_a_request() -> None:
    for template in TEMPLATES.values():
        assert "{" not in template.command[0], template.name
    assert TEMPLATES["python"].command[0] == "python3"
    assert TEMPLATES["python"].args["script"].type == "path"


def test_the_shell_exploit_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="takes no argument 'python'"):
        validate_worker(TEMPLATES, "python", EXPLOIT)
    without_python = {k: v for k, v in EXPLOIT.items() if k != "python"}
    with pytest.raises(InvalidArgument, match="'script' must not begin with '-'"):
        validate_worker(TEMPLATES, "python", without_python)
    for program in ("/bin/sh", "/usr/bin/python3", "sh"):
        with pytest.raises(InvalidArgument, match="'script'"):
            validate_worker(TEMPLATES, "python", {"script": program})
    for template in ("torchrun", "python"):
        with pytest.raises(InvalidArgument, match="'script_args'"):
            validate_worker(TEMPLATES, template, {"script": SCRIPT, "script_args": "-c 'id'"})


def test_unknown_template_and_args_name_what_is_allowed() -> None:
    with pytest.raises(InvalidArgument, match=r"unknown worker template 'vlm'.*known: python"):
        validate_worker(TEMPLATES, "vlm", {})
    with pytest.raises(InvalidArgument, match=r"takes no argument 'tp'.*model \(model, required\)"):
        validate_worker(TEMPLATES, "vllm", {"model": "m", "tp": "2"})
    with pytest.raises(InvalidArgument, match="needs 'model'"):
        validate_worker(TEMPLATES, "vllm", {})
    assert validate_worker(TEMPLATES, "vllm", {"model": "m"}).name == "vllm"
    assert validate_worker(TEMPLATES, "python", {"script": SCRIPT}).name == "python"


def test_vllm_renders_layout_and_memory_share() -> None:
    argv = render_command(
        TEMPLATES["vllm"],
        {"model": "meta-llama/Llama-3.1-8B", "extra_args": "--max-model-len 8192 --dtype=half"},
        {"tp": "4", "pp": "2", "gpu_memory_utilization": "0.45"},
    )
    assert argv[:3] == ["vllm", "serve", "meta-llama/Llama-3.1-8B"]
    assert argv[argv.index("--tensor-parallel-size") + 1] == "4"
    assert argv[argv.index("--pipeline-parallel-size") + 1] == "2"
    assert argv[argv.index("--gpu-memory-utilization") + 1] == "0.45"
    assert argv[argv.index("--port") + 1] == "8000", "the default"
    assert argv[-3:] == ["--max-model-len", "8192", "--dtype=half"]


def test_vllm_refuses_trust_remote_code_and_other_flags_it_does_not_allow() -> None:
    for extra in (
        "--trust-remote-code",
        "--trust-remote-code=true",
        "--max-model-len 8192 --trust-remote-code",
        "--trust-remote",  # argparse would take the abbreviation
        "--port 1",  # the template's own flags are not a request's
        "--host=0.0.0.0",
        "--",
        "-",
    ):
        with pytest.raises(InvalidArgument, match="'extra_args' uses flag"):
            validate_worker(TEMPLATES, "vllm", {"model": "m", "extra_args": extra})
        with pytest.raises(InvalidArgument):
            render_command(TEMPLATES["vllm"], {"model": "m", "extra_args": extra}, {})


def test_render_checks_the_arguments_again() -> None:
    with pytest.raises(InvalidArgument, match="'script'"):
        render_command(TEMPLATES["python"], {"script": "/bin/sh"}, {})
    with pytest.raises(InvalidArgument, match="takes no argument 'python'"):
        render_command(TEMPLATES["python"], EXPLOIT, {})
    argv = render_command(TEMPLATES["python"], {"script": "/opt/gpupool/workers/./a.py"}, {})
    assert argv == ["python3", "/opt/gpupool/workers/a.py"], "normalised; empty splat: no words"


def test_a_placeholder_program_is_refused_at_load() -> None:
    for program in ("{python}", "{rank}", "/usr/bin/{tool}", "{*flags}"):
        body = {
            "command": [program, "x"],
            "args": {
                "python": {"type": "string", "default": "python3"},
                "tool": {"type": "string", "default": "t"},
                "flags": {"type": "flags", "allow": ["--x"]},
            },
        }
        with pytest.raises(InvalidArgument, match=r"worker template 'evil'.*program"):
            parse_templates({"templates": {"evil": body}})


def test_splats_are_whole_elements_of_flags_arguments() -> None:
    with pytest.raises(InvalidArgument, match="splat"):
        _one({"type": "string", "default": "x"}, ["run", "{*a}"])
    with pytest.raises(InvalidArgument, match="splat"):
        _one({"type": "flags", "allow": ["--x"]}, ["run", "--opts={*a}"])
    with pytest.raises(InvalidArgument, match="only splatted"):
        _one({"type": "flags", "allow": ["--x"]}, ["run", "{a}"])
    template = _one({"type": "flags", "allow": ["--x", "--y"]}, ["run", "{*a}"])
    assert render_command(template, {"a": "--x 1 --y"}, {}) == ["run", "--x", "1", "--y"]
    assert render_command(template, {}, {}) == ["run"]


def test_bad_template_files_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="unknown placeholders"):
        parse_templates({"templates": {"x": {"command": ["run", "{nope}"]}}})
    with pytest.raises(InvalidArgument, match="shadow built-in"):
        parse_templates(
            {
                "templates": {
                    "x": {"command": ["run"], "args": {"rank": {"type": "int", "default": 1}}}
                }
            }
        )
    with pytest.raises(InvalidArgument, match="unknown signal"):
        parse_templates(
            {"templates": {"x": {"command": ["run"], "checkpoint": {"signal": "SIGNOPE"}}}}
        )
    with pytest.raises(InvalidArgument, match="must be a mapping with a type"):
        parse_templates({"templates": {"x": {"command": ["run"], "args": {"required": ["m"]}}}})
    bad_args: list[tuple[dict[str, Any], str]] = [
        ({"type": "shell"}, "with a type"),
        ({"type": "int"}, "needs a default"),
        ({"type": "int", "required": True, "default": 1}, "takes no default"),
        ({"type": "port", "default": 70000}, "above 65535"),
        ({"type": "path", "required": True}, "needs `roots`"),
        ({"type": "path", "required": True, "roots": ["relative/dir"]}, "absolute"),
        ({"type": "path", "required": True, "roots": ["/"]}, "every path"),
        ({"type": "path", "required": True, "roots": ["{templates_dir}"]}, "templates file"),
        ({"type": "flags"}, "need `allow`"),
        ({"type": "flags", "allow": ["x"]}, "must be flags"),
        ({"type": "choice", "default": "a"}, "needs `choices`"),
        ({"type": "choice", "choices": ["a"], "default": "b"}, "not one of"),
        ({"type": "int", "default": 1, "mni": 0}, "unknown keys"),
    ]
    for body, match in bad_args:
        with pytest.raises(InvalidArgument, match=match):
            _one(body)


def test_roots_may_name_the_templates_files_directory(tmp_path: Path) -> None:
    path = tmp_path / "templates.yaml"
    path.write_text(
        "templates:\n  t:\n    command: [run, '{s}']\n"
        "    args: {s: {type: path, required: true, roots: ['{templates_dir}/scripts']}}\n"
    )
    template = load_templates(path)["t"]
    assert template.args["s"].roots == (f"{tmp_path.resolve()}/scripts",)
    check_args(template, {"s": f"{tmp_path.resolve()}/scripts/a.py"})
    with pytest.raises(InvalidArgument, match="outside"):
        check_args(template, {"s": f"{tmp_path.resolve()}/other.py"})


def test_model() -> None:
    model = _one({"type": "model", "required": True})
    for good in ("m", "meta-llama/Llama-3.1-8B", "Qwen/Qwen2.5-0.5B-Instruct", "a_b.c-d"):
        assert check_args(model, {"a": good}) == {"a": good}
    for bad in ("-m", "--trust-remote-code", "/etc/passwd", "../x", "a/../b", "a b", "a;b", "m\n"):
        _refused(model, bad)
    _refused(model, "./local", "not a model name")
    _refused(model, "m" * 257, "longer than 256")


def test_path() -> None:
    path = _one({"type": "path", "required": True, "roots": ["/opt/w", "/srv/w/"]})
    assert check_args(path, {"a": "/opt/w/a.py"}) == {"a": "/opt/w/a.py"}
    assert check_args(path, {"a": "/srv/w//b/./c.py"}) == {"a": "/srv/w/b/c.py"}
    _refused(path, "w/a.py", "absolute")
    _refused(path, "./a.py", "absolute")
    _refused(path, "/opt/w/../../etc/passwd", r"'\.\.' component")
    _refused(path, "/opt/w/..", r"'\.\.' component")
    _refused(path, "/opt/wx/a.py", "outside the template's roots")
    _refused(path, "/bin/sh", "outside the template's roots")
    _refused(path, "/opt/w/a\x00.py", "NUL or control")
    _refused(path, "/opt/w/a b.py", "character")
    _refused(path, "-c", "must not begin with '-'")


def test_int_float_and_port() -> None:
    n = _one({"type": "int", "default": 1, "min": 1, "max": 1024})
    assert check_args(n, {}) == {"a": "1"}
    assert check_args(n, {"a": "1024"}) == {"a": "1024"}
    _refused(n, "0", "below 1")
    _refused(n, "1025", "above 1024")
    for bad in ("1.5", "0x10", "1_000", " 1", "+1", "", "nan"):
        _refused(n, bad, "not an integer")
    _refused(n, "-1", "must not begin with '-'")
    f = _one({"type": "float", "default": 0.5, "max": 1})
    assert check_args(f, {"a": ".25"}) == {"a": ".25"}
    assert check_args(f, {"a": "1e-3"}) == {"a": "1e-3"}
    for bad in ("inf", "nan", "1e999", "1.2.3", "0.5x"):
        _refused(f, bad)
    _refused(f, "2", "above 1")
    port = _one({"type": "port", "default": 8000})
    assert check_args(port, {"a": "65535"}) == {"a": "65535"}
    for bad in ("0", "65536", "80a", "http"):
        _refused(port, bad)


def test_choice_and_string() -> None:
    dtype = _one({"type": "choice", "choices": ["auto", "float16", "bfloat16"], "default": "auto"})
    assert check_args(dtype, {"a": "bfloat16"}) == {"a": "bfloat16"}
    message = _refused(dtype, "float8", "not one of")
    assert "auto, float16, bfloat16" in message, "says what is allowed"
    name = _one({"type": "string", "default": "x"})
    assert check_args(name, {"a": "my-run_1.2:a/b=c"}) == {"a": "my-run_1.2:a/b=c"}
    for bad in ("-x", "a b", "$(id)", "a;b", "`id`", "a\tb", "é"):
        _refused(name, bad)


def test_flags() -> None:
    flags = _one({"type": "flags", "allow": ["--steps", "--out", "--eager"]}, ["run", "{*a}"])
    good = "--steps 8 --out=/tmp/o --eager --steps=9"
    assert check_args(flags, {"a": good}) == {"a": good}
    _refused(flags, "--steps 8 9", "follows no flag")
    _refused(flags, "stray", "follows no flag")
    _refused(flags, "--steps -1", "'-1', which is not allowed")
    _refused(flags, "--steps=-1", "value a flag may not take")
    _refused(flags, "--out '$(id)'", "value a flag may not take")
    _refused(flags, "--out 'a b'", "value a flag may not take")
    _refused(flags, "--out=", "value a flag may not take")
    _refused(flags, "--exec x", "'--exec', which is not allowed")
    _refused(flags, "--steps '8", "unbalanced")
    _refused(flags, "--eager " * 65, "more than 64 words")


def test_long_bad_values_are_quoted_short() -> None:
    model = _one({"type": "model", "required": True})
    for bad in ("x;" * 5000, "-" + "a" * 5000, "a" * 300):
        message = _refused(model, bad)
        assert "a" * (QUOTE_CHARS + 1) not in message and "x;" * 40 not in message
        assert len(message) < 400
    flags = _one({"type": "flags", "allow": ["--x"]}, ["run", "{*a}"])
    message = _refused(flags, "--x " + "y" * 2000)
    assert len(message) < 400
    with pytest.raises(InvalidArgument) as info:
        validate_worker(TEMPLATES, "v" * 5000, {})
    assert len(info.value.message) < 400


def test_restart_backoff_doubles_up_to_its_cap() -> None:
    policy = RestartPolicy(max_restarts=5, backoff_s=1.0, max_backoff_s=5.0)
    assert [policy.delay(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]


def _env_refused(template: str, env: dict[str, str], match: str) -> str:
    with pytest.raises(InvalidArgument, match=match) as info:
        validate_worker(TEMPLATES, template, ARGS[template], env)
    return info.value.message


def test_the_env_exploit_is_refused_by_every_shipped_template() -> None:
    for template in ARGS:
        message = _env_refused(template, ENV_EXPLOIT, "environment variable 'BROWSER'")
        assert "'PYTHONWARNINGS'" in message, "every refused variable is named"
        assert "allowed: " in message and "NCCL_DEBUG" in message, "says what is allowed"
        with pytest.raises(InvalidArgument, match="'PYTHONWARNINGS'"):
            check_env(TEMPLATES[template], {"PYTHONWARNINGS": ENV_EXPLOIT["PYTHONWARNINGS"]})


def test_loader_and_search_path_variables_are_refused() -> None:
    for name, value in (
        ("LD_PRELOAD", "/tmp/evil.so"),
        ("LD_LIBRARY_PATH", "/tmp"),
        ("PATH", "/tmp/bin:/usr/bin"),
        ("PYTHONPATH", "/tmp"),
        ("PYTHONSTARTUP", "/tmp/x.py"),
        ("NCCL_NET_PLUGIN", "/tmp/libnccl-net.so"),
        ("HF_HOME", "/tmp/hf"),
        ("RANK", "7"),
        ("CUDA_VISIBLE_DEVICES", "0,1,2,3"),
        ("GPUPOOL_MEMORY_LIMIT_MIB", "999999"),
    ):
        for template in ARGS:
            _env_refused(template, {name: value}, f"environment variable '{name}'")


def test_an_allowed_variable_passes() -> None:
    env = {"NCCL_DEBUG": "INFO", "HF_HUB_OFFLINE": "1"}
    assert validate_worker(TEMPLATES, "vllm", ARGS["vllm"], env).name == "vllm"
    assert check_env(TEMPLATES["vllm"], env) == env
    assert check_env(TEMPLATES["python"], {"LOG_LEVEL": "debug"}) == {"LOG_LEVEL": "debug"}
    assert check_env(TEMPLATES["python"], {}) == {}
    _env_refused("python", {"HF_HUB_OFFLINE": "1"}, "'HF_HUB_OFFLINE'.*allowed: LOG_LEVEL")


def test_env_values_are_bounded_and_free_of_control_characters() -> None:
    for value in ("INFO\nLD_PRELOAD=/tmp/x.so", "INFO\x00", "\x1b[2J", "a\x7f", "\r"):
        _env_refused("vllm", {"NCCL_DEBUG": value}, "'NCCL_DEBUG' contains a NUL or control")
    message = _env_refused("vllm", {"NCCL_DEBUG": "I" * 5000}, "longer than 1024")
    assert "I" * (QUOTE_CHARS + 1) not in message and len(message) < 400
    message = _env_refused("vllm", {"X" * 5000: "1"}, "environment variable")
    assert "X" * (QUOTE_CHARS + 1) not in message and len(message) < 400
    many = {f"V{i}": "1" for i in range(65)}
    _env_refused("vllm", many, "65 entries; limit 64")


def test_a_template_without_env_allow_takes_no_env() -> None:
    template = _one({"type": "string", "default": "x"})
    assert template.env_allow == ()
    with pytest.raises(InvalidArgument, match=r"'NCCL_DEBUG' \(allowed: none\)"):
        check_env(template, {"NCCL_DEBUG": "INFO"})


def test_env_allow_refuses_patterns_and_code_loading_names_at_load() -> None:
    def load(allow: object) -> WorkerTemplate:
        body = {"command": ["run"], "env_allow": allow}
        return parse_templates({"templates": {"t": body}})["t"]

    assert load(["NCCL_DEBUG", "NCCL_DEBUG"]).env_allow == ("NCCL_DEBUG",)
    for bad in ("VLLM_*", "*", "A B", "", "1X"):
        with pytest.raises(InvalidArgument, match="not variable names"):
            load([bad])
    for never in (
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "DYLD_INSERT_LIBRARIES",
        "PATH",
        "PYTHONPATH",
        "PYTHONWARNINGS",
        "PYTHONSTARTUP",
        "BROWSER",
        "NCCL_NET_PLUGIN",
        "NCCL_TUNER_PLUGIN",
        "NCCL_DEBUG_FILE",
        "NCCL_CONF_FILE",
        "VLLM_PLUGINS",
        "VLLM_LOGGING_CONFIG_PATH",
        "HF_HOME",
        "TRITON_CACHE_DIR",
        "HF_ENDPOINT",
        "HF_TOKEN",
        "https_proxy",
        "RANK",
        "MASTER_ADDR",
        "GPUPOOL_RANKS",
        "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE",
    ):
        with pytest.raises(InvalidArgument, match=f"{never} may never be set"):
            load(["NCCL_DEBUG", never])
    with pytest.raises(InvalidArgument, match="list of variable names"):
        load("NCCL_DEBUG")


def test_no_shipped_template_lets_a_request_load_code_through_env() -> None:
    for template in TEMPLATES.values():
        for name in template.env_allow:
            assert not name.startswith(("LD_", "PYTHON", "GPUPOOL_")), (template.name, name)
            assert not any(
                part in name for part in ("PATH", "PLUGIN", "BROWSER", "_FILE", "_DIR", "HOME")
            ), (template.name, name)
