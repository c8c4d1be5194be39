"""Worker templates: how to launch a parallel inference engine per rank.

Pure (no I/O beyond reading the file in `load_templates`), shared by the
scheduler, which rejects a bad WorkerSpec at Allocate, and the agent, which
renders the command line on the node. See deploy/worker-templates.yaml.
"""

from __future__ import annotations

import re
import shlex
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from scheduler.domain.errors import InvalidArgument

DEFAULT_TEMPLATES_FILE = Path(__file__).resolve().parents[2] / "deploy" / "worker-templates.yaml"

# Values the agent fills in for every launch (see agent/workers/env.py).
BUILTIN_PLACEHOLDERS = frozenset(
    {
        "rank",
        "local_rank",
        "world_size",
        "local_world_size",
        "node_rank",
        "nnodes",
        "tp",
        "pp",
        "ep",
        "cp",
        "master_addr",
        "master_port",
        "allocation_id",
        "gpu_memory_utilization",
        "checkpoint_socket",
        "resume_from",
    }
)
LAUNCH_MODES = ("per_rank", "per_node")
READINESS_KINDS = ("none", "http", "tcp", "log")
MAX_ARG_LENGTH = 4096
_PLACEHOLDER = re.compile(r"\{(\*?)([a-z_][a-z0-9_]*)\}")


@dataclass(frozen=True)
class Readiness:
    """When a started worker counts as ready: `none` = as soon as it runs."""

    kind: str = "none"
    target: str = ""  # http: URL; tcp: port; log: regex (placeholders allowed but for log)
    timeout_s: float = 600.0


@dataclass(frozen=True)
class RestartPolicy:
    """A failed gang restarts up to max_restarts times, waiting backoff_s ×
    2^(n-1) (capped) before the n-th restart; then it is FAILED."""

    max_restarts: int = 3
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0

    def delay(self, restart: int) -> float:
        return float(min(self.backoff_s * 2 ** max(restart - 1, 0), self.max_backoff_s))


@dataclass(frozen=True)
class CheckpointHook:
    """How a worker is asked to checkpoint: a signal, then a JSON request on a
    UNIX socket (path pattern) or an HTTP POST (URL pattern) it serves."""

    signal: str = ""
    socket: str = ""
    http: str = ""

    @property
    def signal_number(self) -> int | None:
        return int(getattr(signal, self.signal)) if self.signal else None


@dataclass(frozen=True)
class WorkerTemplate:
    name: str
    command: tuple[str, ...]
    launch: str = "per_rank"
    required_args: tuple[str, ...] = ()
    optional_args: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    readiness: Readiness = field(default_factory=Readiness)
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    stop_timeout_s: float = 30.0
    checkpoint: CheckpointHook | None = None

    @property
    def allowed_args(self) -> tuple[str, ...]:
        return (*self.required_args, *self.optional_args)

    def describe_args(self) -> str:
        required = ", ".join(self.required_args) or "none"
        optional = ", ".join(f"{k}={v!r}" for k, v in self.optional_args.items()) or "none"
        return f"required: {required}; optional: {optional}"


def _placeholders(text: str) -> set[str]:
    return {m.group(2) for m in _PLACEHOLDER.finditer(text)}


def _template(name: str, body: Mapping[str, Any]) -> WorkerTemplate:
    where = f"worker template {name!r}"
    command = body.get("command")
    if not isinstance(command, list) or not command:
        raise InvalidArgument(f"{where}: command must be a non-empty list")
    args = body.get("args") or {}
    required = tuple(str(a) for a in args.get("required") or ())
    optional = {str(k): str(v) for k, v in (args.get("optional") or {}).items()}
    clash = (set(required) | set(optional)) & BUILTIN_PLACEHOLDERS
    if clash:
        raise InvalidArgument(f"{where}: args {sorted(clash)} shadow built-in placeholders")
    known = set(required) | set(optional) | BUILTIN_PLACEHOLDERS
    for part in command:
        unknown = _placeholders(str(part)) - known
        if unknown:
            raise InvalidArgument(f"{where}: command uses unknown placeholders {sorted(unknown)}")
    launch = str(body.get("launch", "per_rank"))
    if launch not in LAUNCH_MODES:
        raise InvalidArgument(f"{where}: launch must be one of {LAUNCH_MODES}")
    ready = body.get("readiness") or {}
    kind = str(ready.get("kind", "none"))
    if kind not in READINESS_KINDS:
        raise InvalidArgument(f"{where}: readiness.kind must be one of {READINESS_KINDS}")
    target = str(ready.get("url") or ready.get("port") or ready.get("pattern") or "")
    if kind == "log":
        re.compile(target)
    restart = body.get("restart") or {}
    hook = body.get("checkpoint")
    checkpoint = None
    if hook:
        checkpoint = CheckpointHook(
            signal=str(hook.get("signal", "")),
            socket=str(hook.get("socket", "")),
            http=str(hook.get("http", "")),
        )
        if checkpoint.signal and not isinstance(getattr(signal, checkpoint.signal, None), int):
            raise InvalidArgument(f"{where}: unknown signal {checkpoint.signal!r}")
    return WorkerTemplate(
        name=name,
        command=tuple(str(p) for p in command),
        launch=launch,
        required_args=required,
        optional_args=optional,
        env={str(k): str(v) for k, v in (body.get("env") or {}).items()},
        readiness=Readiness(kind, target, float(ready.get("timeout_s", 600))),
        restart=RestartPolicy(
            max_restarts=int(restart.get("max_restarts", 3)),
            backoff_s=float(restart.get("backoff_s", 1.0)),
            max_backoff_s=float(restart.get("max_backoff_s", 60.0)),
        ),
        stop_timeout_s=float(body.get("stop_timeout_s", 30.0)),
        checkpoint=checkpoint,
    )


def parse_templates(document: Mapping[str, Any]) -> dict[str, WorkerTemplate]:
    templates = document.get("templates") or {}
    if not isinstance(templates, Mapping):
        raise InvalidArgument("worker templates: `templates` must be a mapping of name to template")
    return {str(name): _template(str(name), body or {}) for name, body in templates.items()}


def load_templates(path: Path) -> dict[str, WorkerTemplate]:
    return parse_templates(yaml.safe_load(path.read_text()) or {})


def validate_worker(
    templates: Mapping[str, WorkerTemplate], name: str, args: Mapping[str, str]
) -> WorkerTemplate:
    """The template a WorkerSpec names, or InvalidArgument saying what is allowed."""
    if name not in templates:
        known = ", ".join(sorted(templates)) or "none configured"
        raise InvalidArgument(f"unknown worker template {name!r} (known: {known})")
    template = templates[name]
    unknown = sorted(set(args) - set(template.allowed_args))
    if unknown:
        raise InvalidArgument(
            f"worker template {name!r} takes no argument {', '.join(map(repr, unknown))} "
            f"({template.describe_args()})"
        )
    missing = [a for a in template.required_args if not args.get(a)]
    if missing:
        raise InvalidArgument(
            f"worker template {name!r} needs {', '.join(map(repr, missing))} "
            f"({template.describe_args()})"
        )
    for key, value in args.items():
        if len(value) > MAX_ARG_LENGTH:
            raise InvalidArgument(f"worker argument {key!r} is longer than {MAX_ARG_LENGTH}")
    return template


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Fill {name} placeholders (a {*name} splat is left to render_command)."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(2), m.group(0)), text)


def render_command(
    template: WorkerTemplate, args: Mapping[str, str], builtins: Mapping[str, str]
) -> list[str]:
    """The argv for one launch. An element that is exactly "{*name}" expands
    to the shell-split words of that value (none when empty)."""
    values = {**template.optional_args, **args, **builtins}
    argv: list[str] = []
    for part in template.command:
        match = _PLACEHOLDER.fullmatch(part)
        if match and match.group(1) == "*":
            argv.extend(shlex.split(values.get(match.group(2), "")))
            continue
        argv.append(substitute(part, values))
    return argv
