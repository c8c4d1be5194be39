"""What this node agrees to launch: a gang's worker spec checked again,
before every launch, against the node's own worker templates.

The scheduler checked the spec at Allocate against its file; this node's
file may differ and is the one that counts. On top of the checks of
scheduler.domain.worker_args, a `path` argument is resolved through its
symlinks (os.path.realpath) and must still be under one of its roots
(resolved the same way), so a link in a root cannot point outside it; and
the spec's env may set only the variables this node's template lists in
env_allow (a variable such as LD_PRELOAD, PATH, PYTHONWARNINGS or BROWSER
would run code as the agent's user).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from agent.workers.gang import GangSpec
from scheduler.domain.errors import InvalidArgument
from scheduler.domain.worker_args import quote, under_roots
from scheduler.domain.worker_templates import WorkerTemplate, check_args, check_env


def admit(templates: Mapping[str, WorkerTemplate], spec: GangSpec) -> WorkerTemplate:
    """This node's template for the gang, or InvalidArgument saying why the
    node refuses to launch it."""
    template = templates.get(spec.template)
    if template is None:
        raise InvalidArgument(f"this node has no worker template {quote(spec.template)}")
    values = check_args(template, spec.args)
    check_env(template, spec.env)
    for name, arg in template.args.items():
        if arg.type != "path" or not values[name]:
            continue
        resolved = os.path.realpath(values[name])
        roots = [os.path.realpath(root) for root in arg.roots]
        if not under_roots(resolved, roots):
            raise InvalidArgument(
                f"worker template {template.name!r}: argument {name!r} resolves to "
                f"{quote(resolved)}, outside the template's roots ({', '.join(arg.roots)})"
            )
    return template
