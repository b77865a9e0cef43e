"""A run's runtime and argv: the agent's runtime (agent_dispatch.runtimes) builds it from its RunSpec."""

from __future__ import annotations

from agent_dispatch.runs.spec import RunSpec
from agent_dispatch.runtimes import Runtime, get_runtime


def runtime_of(spec: RunSpec) -> Runtime:
    """The runtime of the spec's agent: how its CLI is called and read."""
    return get_runtime(getattr(spec.agent, "runtime", None) or "claude")


def build_argv(spec: RunSpec, session_id: str | None = None) -> list[str]:
    """The argv for `spec`, built by its agent's runtime (argv[0] is `spec.claude` as given).

    Raises InvalidInputFailure, before anything runs, for any value that would follow an option
    and starts with '-' (or holds a NUL byte), or for a setting the runtime cannot honour.
    """
    return runtime_of(spec).build_argv(spec, session_id)
