"""Typed worker-template arguments: what a request may put in a worker's argv.

A template declares each argument with a type (deploy/worker-templates.yaml);
a request's value is checked against it at Allocate (the scheduler) and
again before launch (the agent, against its own file). Pure: the agent alone
resolves symlinks (agent/workers/admission.py).

Every value of every type is bounded, has no NUL or control character, and,
except `flags`, does not begin with `-` (no option injection). Error
messages quote at most QUOTE_CHARS of a bad value.

A request's worker.env is checked here too (check_env_vars): only the exact
names a template's `env_allow` lists, values bounded and free of control
characters. An environment variable can run code (LD_PRELOAD, PATH,
PYTHONPATH, PYTHONWARNINGS with BROWSER, NCCL plugins), so the default is
none, and a few families may never be listed at all.
"""

from __future__ import annotations

import math
import posixpath
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scheduler.domain.errors import InvalidArgument

ARG_TYPES = ("model", "path", "int", "float", "port", "choice", "flags", "string")
MAX_ARG_LENGTH = 4096
MAX_FLAG_WORDS = 64
QUOTE_CHARS = 64

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# A model name or hub id (org/name); `..`, a leading `-`, `/` or `.` are refused below.
_MODEL = re.compile(r"[A-Za-z0-9._/-]{1,256}")
_PATH = re.compile(r"/[A-Za-z0-9._/+@%,=:-]*")
_INT = re.compile(r"[0-9]{1,18}")
_FLOAT = re.compile(r"[0-9]{0,18}\.?[0-9]{1,18}(?:[eE][+-]?[0-9]{1,3})?")
_STRING = re.compile(r"[A-Za-z0-9_.:/=+@%,][A-Za-z0-9_.:/=+@%,-]*")
# A flag's value: conservative, and no leading `-` (that would be another flag).
_FLAG_VALUE = re.compile(r"[A-Za-z0-9_./][A-Za-z0-9_./:,+=@%-]{0,1023}")
_FLAG = re.compile(r"--?[A-Za-z0-9][A-Za-z0-9_.-]*")
_TYPE_LENGTH = {"model": 256, "string": 256, "choice": 256, "path": MAX_ARG_LENGTH}


def quote(value: str) -> str:
    """A bad value, as a message may show it: repr'd, cut at QUOTE_CHARS."""
    if len(value) <= QUOTE_CHARS:
        return repr(value)
    return f"{value[:QUOTE_CHARS]!r}… ({len(value)} characters)"


@dataclass(frozen=True)
class ArgSpec:
    """One declared argument. `roots` (path) are normalised absolute
    directories; `allow` (flags) the exact flags a value may use."""

    name: str
    type: str
    required: bool = False
    default: str | None = None
    choices: tuple[str, ...] = ()
    roots: tuple[str, ...] = ()
    allow: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    max_length: int = MAX_ARG_LENGTH

    def describe(self) -> str:
        """What is allowed, in a few words, for an error message."""
        if self.type == "choice":
            what = f"one of {', '.join(self.choices)}"
        elif self.type == "path":
            what = f"an absolute path under {' or '.join(self.roots)}"
        elif self.type == "flags":
            what = f"flags among {', '.join(self.allow) or 'none'}"
        elif self.type in ("int", "float") and (self.minimum, self.maximum) != (None, None):
            low = "" if self.minimum is None else f"{self.minimum:g} ≤ "
            high = "" if self.maximum is None else f" ≤ {self.maximum:g}"
            what = f"{'an integer' if self.type == 'int' else 'a number'} {low}n{high}"
        else:
            what = {
                "model": "a model name or hub id (letters, digits, ._-/)",
                "int": "a non-negative integer",
                "float": "a non-negative finite number",
                "port": "a port 1-65535",
                "string": "letters, digits and _.:/=+@%,- not starting with -",
            }[self.type]
        return what

    def summary(self) -> str:
        if self.required:
            return f"{self.name} ({self.type}, required)"
        return f"{self.name} ({self.type}, default {self.default!r})"

    def check(self, template: str, value: str) -> str:
        """The value, normalised (a path), or InvalidArgument naming the
        template, the argument and what is allowed."""
        problem = self._problem(value)
        if problem:
            raise InvalidArgument(
                f"worker template {template!r}: argument {self.name!r} {problem}; "
                f"allowed: {self.describe()}; got {quote(value)}"
            )
        return posixpath.normpath(value) if self.type == "path" else value

    def _problem(self, value: str) -> str:
        if not isinstance(value, str):
            return "must be a string"
        if len(value) > min(self.max_length, MAX_ARG_LENGTH):
            return f"is longer than {min(self.max_length, MAX_ARG_LENGTH)} characters"
        if _CONTROL.search(value):
            return "contains a NUL or control character"
        if self.type == "flags":
            return _flags_problem(value, self.allow)
        if value.startswith("-"):
            return "must not begin with '-'"
        check = _CHECKS[self.type]
        return check(self, value)


def _model_problem(spec: ArgSpec, value: str) -> str:
    if not _MODEL.fullmatch(value) or ".." in value or value[0] in "/.":
        return "is not a model name"
    return ""


def _path_problem(spec: ArgSpec, value: str) -> str:
    if not value.startswith("/"):
        return "must be an absolute path"
    if not _PATH.fullmatch(value):
        return "has a character a path may not use"
    if ".." in value.split("/"):
        return "must not have a '..' component"
    if not under_roots(posixpath.normpath(value), spec.roots):
        return "is outside the template's roots"
    return ""


def _number_problem(spec: ArgSpec, value: str) -> str:
    pattern = _INT if spec.type in ("int", "port") else _FLOAT
    if not pattern.fullmatch(value):
        return f"is not {'an integer' if spec.type != 'float' else 'a number'}"
    number = float(value)
    if not math.isfinite(number):
        return "is not finite"
    if spec.minimum is not None and number < spec.minimum:
        return f"is below {spec.minimum:g}"
    if spec.maximum is not None and number > spec.maximum:
        return f"is above {spec.maximum:g}"
    return ""


def _choice_problem(spec: ArgSpec, value: str) -> str:
    return "" if value in spec.choices else "is not one of the choices"


def _string_problem(spec: ArgSpec, value: str) -> str:
    return "" if _STRING.fullmatch(value) else "has a character a string may not use"


_CHECKS = {
    "model": _model_problem,
    "path": _path_problem,
    "int": _number_problem,
    "float": _number_problem,
    "port": _number_problem,
    "choice": _choice_problem,
    "string": _string_problem,
}


def under_roots(path: str, roots: Sequence[str]) -> bool:
    """True when a normalised absolute path is one of the roots or below one."""
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def split_flags(value: str) -> list[str]:
    """The argv words of a `flags` value (shlex rules; never a shell)."""
    try:
        return shlex.split(value)
    except ValueError as exc:
        raise InvalidArgument(f"cannot split {quote(value)} into words: {exc}") from exc


def _flags_problem(value: str, allow: Sequence[str]) -> str:
    try:
        words = split_flags(value)
    except InvalidArgument:
        return "is not a list of words (unbalanced quotes)"
    if len(words) > MAX_FLAG_WORDS:
        return f"has more than {MAX_FLAG_WORDS} words"
    value_may_follow = False
    for word in words:
        if word.startswith("-"):
            flag, has_value, flag_value = word.partition("=")
            if flag not in allow:
                return f"uses flag {quote(flag)}, which is not allowed"
            if has_value and not _FLAG_VALUE.fullmatch(flag_value):
                return f"has a value a flag may not take: {quote(flag_value)}"
            value_may_follow = not has_value
            continue
        if not value_may_follow:
            return f"has a word that follows no flag: {quote(word)}"
        if not _FLAG_VALUE.fullmatch(word):
            return f"has a value a flag may not take: {quote(word)}"
        value_may_follow = False
    return ""


# -- the template file's `args:` ---------------------------------------------------


def parse_arg(template: str, name: str, body: Any, templates_dir: str | None) -> ArgSpec:
    """One entry of a template's `args:` (InvalidArgument naming it when wrong)."""
    here = f"worker template {template!r}: argument {name!r}"
    if not isinstance(body, Mapping) or body.get("type") not in ARG_TYPES:
        raise InvalidArgument(
            f"{here} must be a mapping with a type, one of {', '.join(ARG_TYPES)} "
            "(e.g. `model: {type: model, required: true}`)"
        )
    known = {"type", "required", "default", "choices", "roots", "allow", "min", "max"}
    extra = sorted(set(body) - known - {"max_length"})
    if extra:
        raise InvalidArgument(f"{here}: unknown keys {extra}")
    kind = str(body["type"])
    required = bool(body.get("required", False))
    default = body.get("default")
    if required and default is not None:
        raise InvalidArgument(f"{here}: a required argument takes no default")
    if not required and default is None:
        if kind != "flags":
            raise InvalidArgument(f"{here}: an optional argument needs a default")
        default = ""
    spec = ArgSpec(
        name=name,
        type=kind,
        required=required,
        default=None if default is None else _scalar(default),
        choices=tuple(str(c) for c in body.get("choices") or ()),
        roots=tuple(_root(here, str(r), templates_dir) for r in body.get("roots") or ()),
        allow=tuple(str(f) for f in body.get("allow") or ()),
        minimum=_bound(here, body.get("min")),
        maximum=_bound(here, body.get("max")),
        max_length=int(body.get("max_length", _TYPE_LENGTH.get(kind, MAX_ARG_LENGTH))),
    )
    if kind == "port":
        spec = ArgSpec(**{**vars(spec), "minimum": 1.0, "maximum": 65535.0})
    if kind == "choice" and not spec.choices:
        raise InvalidArgument(f"{here}: a choice needs `choices`")
    if kind == "path" and not spec.roots:
        raise InvalidArgument(f"{here}: a path needs `roots` (the directories it may be under)")
    if kind == "flags" and not spec.allow:
        raise InvalidArgument(f"{here}: flags need `allow` (the flags a request may pass)")
    bad = [f for f in spec.allow if not _FLAG.fullmatch(f)]
    if bad:
        raise InvalidArgument(f"{here}: `allow` entries must be flags such as --name: {bad}")
    if spec.default is not None and (spec.default or kind != "flags"):
        spec.check(template, spec.default)
    return spec


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _bound(where: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidArgument(f"{where}: min and max must be numbers")
    return float(value)


def _root(where: str, root: str, templates_dir: str | None) -> str:
    """A root as the file wrote it, {templates_dir} filled in, normalised."""
    if "{templates_dir}" in root:
        if templates_dir is None:
            raise InvalidArgument(f"{where}: {{templates_dir}} in roots needs a templates file")
        root = root.replace("{templates_dir}", templates_dir)
    if not root.startswith("/") or _CONTROL.search(root):
        raise InvalidArgument(f"{where}: roots must be absolute directories, not {quote(root)}")
    root = posixpath.normpath(root)
    if root == "/":
        raise InvalidArgument(f"{where}: `/` is not a root (every path is under it)")
    return root


# -- the environment a request may set (a template's `env_allow:`) -------------------

MAX_ENV_VARS = 64
MAX_ENV_VALUE = 1024
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
# The agent sets these for every launch (agent/workers/env.py); a request
# never may, whatever a template allows.
RESERVED_ENV = frozenset(
    {
        "CUDA_VISIBLE_DEVICES",
        "WORLD_SIZE",
        "RANK",
        "LOCAL_RANK",
        "LOCAL_WORLD_SIZE",
        "GROUP_RANK",
        "NODE_RANK",
        "MASTER_ADDR",
        "MASTER_PORT",
    }
)
# Names a template may not put in env_allow: the agent's own (GPUPOOL_*,
# the MPS share, device visibility) and the families known to make a
# program load or run code, or read or write a file, that the value names
# (the dynamic loader, interpreters' startup and warning hooks, BROWSER
# and friends, search paths, plugins, config, cache and module
# directories, log files). Not a complete list: env_allow is the
# protection; this only stops the worst mistakes at load.
_NEVER_ALLOWED = re.compile(
    r"(?:LD_|DYLD_|PYTHON|PERL|RUBY|NODE_|JAVA|BASH_|GCONV|GPUPOOL_|CUDA_MPS_|NVIDIA_|XDG_|SSL_)"
    r".*"
    r"|.*(?:PATH|PLUGIN|PRELOAD|LIBRARY|_LIB|MODULE|_DIR|DIRECTORY|_FILE|HOME|CACHE|CONF"
    r"|ROOT|PREFIX|EXEC|COMMAND|SCRIPT|HOOK).*"
    r"|BROWSER|EDITOR|VISUAL|PAGER|SHELL|ENV|IFS|PS4|TMPDIR|TERMINFO|HOSTALIASES"
    r"|LOCALDOMAIN|RES_OPTIONS|MALLOC_.*|GLIBC_.*|OPENSSL_.*|CURL_.*|GIT_.*|.*_PROXY"
    r"|HF_ENDPOINT|HF_TOKEN|.*_TOKEN|.*_KEY|.*_SECRET.*"
)


def parse_env_allow(template: str, body: Any) -> tuple[str, ...]:
    """A template's `env_allow:`: exact variable names (no patterns), none
    of them reserved for the agent or of a family known to load code."""
    here = f"worker template {template!r}: env_allow"
    if body is None:
        return ()
    if not isinstance(body, list) or not all(isinstance(n, str) for n in body):
        raise InvalidArgument(f"{here} must be a list of variable names")
    bad = [n for n in body if not _ENV_NAME.fullmatch(n)]
    if bad:
        raise InvalidArgument(
            f"{here}: {', '.join(quote(n) for n in bad[:8])} are not variable names "
            "(exact names only: no patterns such as VLLM_*)"
        )
    never = [n for n in body if n in RESERVED_ENV or _NEVER_ALLOWED.fullmatch(n.upper())]
    if never:
        raise InvalidArgument(
            f"{here}: {', '.join(never[:8])} may never be set by a request (the agent sets "
            "it, or it can make the worker load code or open a file it names)"
        )
    return tuple(dict.fromkeys(body))


def check_env_vars(template: str, allow: Sequence[str], env: Mapping[str, str]) -> dict[str, str]:
    """A request's environment for a worker, every name one of `allow`
    (exact) and every value bounded with no NUL or control character, or
    InvalidArgument naming the variable and what is allowed."""
    here = f"worker template {template!r}"
    allowed = f"allowed: {', '.join(allow) or 'none'}"
    if len(env) > MAX_ENV_VARS:
        raise InvalidArgument(f"{here}: worker.env has {len(env)} entries; limit {MAX_ENV_VARS}")
    refused = sorted(name for name in env if name not in allow or name in RESERVED_ENV)
    if refused:
        raise InvalidArgument(
            f"{here} does not let a request set environment variable "
            f"{', '.join(quote(n) for n in refused[:8])} ({allowed})"
        )
    for name, value in env.items():
        problem = ""
        if not isinstance(value, str):
            problem = "must be a string"
        elif len(value) > MAX_ENV_VALUE:
            problem = f"is longer than {MAX_ENV_VALUE} characters"
        elif _CONTROL.search(value):
            problem = "contains a NUL or control character"
        if problem:
            raise InvalidArgument(
                f"{here}: environment variable {name!r} {problem}; got {quote(str(value))}"
            )
    return dict(env)
