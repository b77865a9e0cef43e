"""Limits that span processes, and what runs under them.

    user      UserSlots: the per-user concurrency slots (flock'd slot files, a FIFO ticket queue,
              lends for nested dispatches); SLOT_ENV, parent_slot()
    running   Registry: the entries `agent-dispatch ps` / `list_running` show

Both live in the per-user runtime directory (`config.runtime_dir()`); the per-server FIFO
limiter is `agent_dispatch.limiter`.
"""

from agent_dispatch.limits.running import Entry, Registry
from agent_dispatch.limits.user import SLOT_ENV, Held, UserSlots, parent_slot

__all__ = ["SLOT_ENV", "Entry", "Held", "Registry", "UserSlots", "parent_slot"]
