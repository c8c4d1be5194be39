"""Worker templates: how to launch a parallel inference engine per rank.

Pure (no I/O beyond reading the file in `load_templates`), shared by the
scheduler, which rejects a bad WorkerSpec at Allocate, and the agent, which
checks it again against its own file and renders the argv on the node. See
deploy/worker-templates.yaml.

The program is the file's, never a request's: command[0] takes no
placeholder. A request fills only typed arguments (scheduler.domain.worker_args),
each a whole argv element or part of a literal one, or, for a `flags`
argument, a splat of allowed flags. Nothing goes through a shell.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from scheduler.domain.errors import InvalidArgument
from scheduler.domain.worker_args import (
    ArgSpec,
    check_env_vars,
    parse_arg,
    parse_env_allow,
    quote,
    split_flags,
)

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
    args: Mapping[str, ArgSpec] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    # The variables a request's worker.env may set (exact names; none by default).
    env_allow: tuple[str, ...] = ()
    readiness: Readiness = field(default_factory=Readiness)
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    stop_timeout_s: float = 30.0
    checkpoint: CheckpointHook | None = None

    @property
    def required_args(self) -> tuple[str, ...]:
        return tuple(name for name, spec in self.args.items() if spec.required)

    @property
    def optional_args(self) -> dict[str, str]:
        """The optional arguments with their defaults (readiness and
        checkpoint patterns are filled from these and the request's)."""
        return {n: s.default for n, s in self.args.items() if s.default is not None}

    @property
    def allowed_args(self) -> tuple[str, ...]:
        return tuple(self.args)

    def describe_args(self) -> str:
        return "; ".join(spec.summary() for spec in self.args.values()) or "no arguments"


def _placeholders(text: str) -> set[str]:
    return {m.group(2) for m in _PLACEHOLDER.finditer(text)}


def _check_command(where: str, command: tuple[str, ...], args: Mapping[str, ArgSpec]) -> None:
    """The program is the file's: no placeholder in command[0]; a {*name}
    splat is a whole element of a `flags` argument, and a `flags` argument
    is only ever splatted."""
    if "{" in command[0]:
        raise InvalidArgument(
            f"{where}: the program (command[0] = {command[0]!r}) must be fixed, not a placeholder"
        )
    known = set(args) | BUILTIN_PLACEHOLDERS
    for part in command:
        unknown = _placeholders(part) - known
        if unknown:
            raise InvalidArgument(f"{where}: command uses unknown placeholders {sorted(unknown)}")
        whole = _PLACEHOLDER.fullmatch(part)
        for match in _PLACEHOLDER.finditer(part):
            name, splat = match.group(2), match.group(1) == "*"
            is_flags = name in args and args[name].type == "flags"
            if splat and (whole is None or not is_flags):
                raise InvalidArgument(
                    f"{where}: {part!r}: a splat must be a whole element naming a flags argument"
                )
            if is_flags and not splat:
                raise InvalidArgument(f"{where}: {part!r}: a flags argument is only splatted")


def _check_pattern(where: str, what: str, text: str, args: Mapping[str, ArgSpec]) -> None:
    unknown = _placeholders(text) - set(args) - BUILTIN_PLACEHOLDERS
    if unknown or "{*" in text:
        raise InvalidArgument(f"{where}: {what} {text!r} uses unknown placeholders or a splat")


def _parse_args(where: str, name: str, body: Any, templates_dir: str | None) -> dict[str, ArgSpec]:
    if not isinstance(body, Mapping):
        raise InvalidArgument(f"{where}: args must map each argument's name to its type")
    args = {str(k): parse_arg(name, str(k), v, templates_dir) for k, v in body.items()}
    clash = set(args) & BUILTIN_PLACEHOLDERS
    if clash:
        raise InvalidArgument(f"{where}: args {sorted(clash)} shadow built-in placeholders")
    return args


def _template(name: str, body: Mapping[str, Any], templates_dir: str | None) -> WorkerTemplate:
    where = f"worker template {name!r}"
    command = body.get("command")
    if not isinstance(command, list) or not command:
        raise InvalidArgument(f"{where}: command must be a non-empty list")
    argv = tuple(str(p) for p in command)
    args = _parse_args(where, name, body.get("args") or {}, templates_dir)
    _check_command(where, argv, args)
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
    else:
        _check_pattern(where, "readiness", target, args)
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
        _check_pattern(where, "checkpoint.socket", checkpoint.socket, args)
        _check_pattern(where, "checkpoint.http", checkpoint.http, args)
    return WorkerTemplate(
        name=name,
        command=argv,
        launch=launch,
        args=args,
        env={str(k): str(v) for k, v in (body.get("env") or {}).items()},
        env_allow=parse_env_allow(name, body.get("env_allow")),
        readiness=Readiness(kind, target, float(ready.get("timeout_s", 600))),
        restart=RestartPolicy(
            max_restarts=int(restart.get("max_restarts", 3)),
            backoff_s=float(restart.get("backoff_s", 1.0)),
            max_backoff_s=float(restart.get("max_backoff_s", 60.0)),
        ),
        stop_timeout_s=float(body.get("stop_timeout_s", 30.0)),
        checkpoint=checkpoint,
    )


def parse_templates(
    document: Mapping[str, Any], templates_dir: str | None = None
) -> dict[str, WorkerTemplate]:
    """The templates of a file's document; `{templates_dir}` in roots is
    the directory of that file."""
    templates = document.get("templates") or {}
    if not isinstance(templates, Mapping):
        raise InvalidArgument("worker templates: `templates` must be a mapping of name to template")
    return {
        str(name): _template(str(name), body or {}, templates_dir)
        for name, body in templates.items()
    }


def load_templates(path: Path) -> dict[str, WorkerTemplate]:
    document = yaml.safe_load(path.read_text()) or {}
    return parse_templates(document, str(path.resolve().parent))


def check_args(template: WorkerTemplate, args: Mapping[str, str]) -> dict[str, str]:
    """Every argument's value, the defaults filled in and each checked
    against its type (paths normalised), or InvalidArgument saying what is
    allowed."""
    name = template.name
    unknown = sorted(set(args) - set(template.args))
    if unknown:
        raise InvalidArgument(
            f"worker template {name!r} takes no argument "
            f"{', '.join(quote(a) for a in unknown[:8])} ({template.describe_args()})"
        )
    missing = [a for a in template.required_args if not args.get(a)]
    if missing:
        raise InvalidArgument(
            f"worker template {name!r} needs {', '.join(map(repr, missing))} "
            f"({template.describe_args()})"
        )
    values = {}
    for key, spec in template.args.items():
        value = args.get(key, spec.default or "")
        values[key] = spec.check(name, value) if value or spec.type != "flags" else ""
    return values


def check_env(template: WorkerTemplate, env: Mapping[str, str]) -> dict[str, str]:
    """A request's worker.env, every variable one the template's env_allow
    names and every value bounded and free of control characters, or
    InvalidArgument naming the variable and the allowed list."""
    return check_env_vars(template.name, template.env_allow, env)


def validate_worker(
    templates: Mapping[str, WorkerTemplate],
    name: str,
    args: Mapping[str, str],
    env: Mapping[str, str] | None = None,
) -> WorkerTemplate:
    """The template a WorkerSpec names, or InvalidArgument saying what is
    allowed (its arguments and environment checked)."""
    if name not in templates:
        known = ", ".join(sorted(templates)) or "none configured"
        raise InvalidArgument(f"unknown worker template {quote(name)} (known: {known})")
    template = templates[name]
    check_args(template, args)
    check_env(template, env or {})
    return template


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Fill {name} placeholders (a {*name} splat is left to render_command)."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(2), m.group(0)), text)


def render_command(
    template: WorkerTemplate, args: Mapping[str, str], builtins: Mapping[str, str]
) -> list[str]:
    """The argv for one launch (never a shell command line), the arguments
    checked again. An element that is exactly "{*name}" expands to the
    words of that `flags` value (none when empty); any other placeholder
    fills its part of one element."""
    values = {**check_args(template, args), **builtins}
    argv: list[str] = []
    for part in template.command:
        match = _PLACEHOLDER.fullmatch(part)
        if match and match.group(1) == "*":
            argv.extend(split_flags(values.get(match.group(2), "")))
            continue
        argv.append(substitute(part, values))
    return argv
