"""Remote agents: the ssh set-up of a first and of a later dispatch to one host, over a real link.

    sudo .venv/bin/python bench/bench_ssh.py [--runs 15]

Needs root (it builds tests/netlab.py's lab: two network namespaces, a veth link, an sshd with
keys made for the run). Prints medians in milliseconds:

- ssh set-up, first dispatch: no shared connection yet; `ensure_master` (TCP, key exchange,
  auth) and then one session through it, until the remote command has started.
- ssh set-up, later dispatch: the master is up; from `ensure_master` (which finds it) through
  spawning the run's `ssh` (the very options agent-dispatch uses, a remote `date +%s.%N` in place
  of the supervisor) to the remote command's first instruction. Both ends share one clock
  (namespaces, one kernel). The lab reaches its namespace through a wrapper script (sh + nsenter)
  that production does not have; its start-up cost is printed beside it.
- a whole remote dispatch (`run_claude`, remote supervisor + fake CLI in python) first/later,
  and a local dispatch of the same fake, for scale.

Target (issue 14): the later dispatch's ssh set-up under 20 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from agent_dispatch.models import EffectiveAgent  # noqa: E402
from agent_dispatch.runner import RunSpec, run_claude  # noqa: E402
from agent_dispatch.transports import ssh  # noqa: E402
from netlab import Lab, missing_requirements  # noqa: E402


def session_setup_ms(target: ssh.SshTarget) -> float:
    """A later dispatch's ssh set-up: ensure_master (finds the live master) plus one session through it."""
    began = time.time()
    socket, failure = ssh.start_master_now(target)
    assert failure is None, failure
    argv = [ssh.ssh_command(), *target.common_args(), *ssh._control_args(socket), "-n", "--", target.host,
            "date", "+%s.%N"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, stdin=subprocess.DEVNULL).stdout
    return (float(out.strip()) - began) * 1000


def client_start_ms(argv: list[str]) -> float:
    """Starting an ssh client that only prints its configuration (`-G`): no network at all."""
    began = time.monotonic()
    subprocess.run(argv, capture_output=True, check=True, stdin=subprocess.DEVNULL)
    return (time.monotonic() - began) * 1000


def first_setup_ms(target: ssh.SshTarget, lab: Lab) -> float:
    lab.drop_connections()
    began = time.time()
    socket, failure = ssh.start_master_now(target)
    assert failure is None, failure
    argv = [ssh.ssh_command(), *target.common_args(), *ssh._control_args(socket), "-n", "--", target.host,
            "date", "+%s.%N"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, stdin=subprocess.DEVNULL).stdout
    return (float(out.strip()) - began) * 1000


def dispatch_ms(agent: EffectiveAgent, claude: str = "claude") -> float:
    began = time.monotonic()
    result = anyio.run(lambda: run_claude(RunSpec(agent=agent, prompt="ping", claude=claude)))
    assert result.success, result
    return (time.monotonic() - began) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    reason = missing_requirements()
    if reason:
        sys.exit(f"bench_ssh: {reason}")
    lab = Lab().start()
    try:
        os.environ.update(lab.env())
        project = lab.dir / "bench-project"
        project.mkdir()
        target = ssh.SshTarget("remote-box")
        remote = EffectiveAgent(name="far", directory=str(project), timeout=60, host="remote-box")
        local_fake = lab.dir / "local-claude"
        local_fake.write_text(lab.launcher)
        local_fake.chmod(0o755)
        local = EffectiveAgent(name="near", directory=str(project), timeout=60)

        first = [first_setup_ms(target, lab) for _ in range(max(3, runs // 3))]
        ssh.start_master_now(target)
        later = [session_setup_ms(target) for _ in range(runs)]
        wrapped = [client_start_ms([lab.ssh, "-G", "remote-box"]) for _ in range(runs)]
        bare = [client_start_ms(["/usr/bin/ssh", "-F", str(lab.dir / "ssh_config"), "-G", "remote-box"])
                for _ in range(runs)]
        first_dispatch = []
        for _ in range(max(3, runs // 3)):
            lab.drop_connections()
            first_dispatch.append(dispatch_ms(remote))
        later_dispatch = [dispatch_ms(remote) for _ in range(runs)]
        local_dispatch = [dispatch_ms(local, str(local_fake)) for _ in range(runs)]

        def row(label: str, values: list[float], target_ms: float | None = None) -> None:
            median = statistics.median(values)
            verdict = "" if target_ms is None else ("  PASS" if median < target_ms else "  FAIL")
            print(f"{label:<52} median {median:7.1f} ms  (min {min(values):.1f}, max {max(values):.1f}, "
                  f"n={len(values)}){verdict}" + (f"  target < {target_ms:g} ms" if target_ms else ""))

        row("ssh set-up, first dispatch (handshake + session)", first)
        row("ssh set-up, later dispatch (shared connection)", later, 20)
        row("  of which: the lab's ssh wrapper (sh + nsenter + ssh -G)", wrapped)
        row("  for comparison: bare /usr/bin/ssh -G", bare)
        print(f"{'  later set-up minus the wrapped client start (medians)':<52} "
              f"{statistics.median(later) - statistics.median(wrapped):7.1f} ms  (what the shared connection costs)")
        print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cpus (figures grow with it)")
        row("remote dispatch, first (run_claude, fake CLI)", first_dispatch)
        row("remote dispatch, later (run_claude, fake CLI)", later_dispatch)
        row("local dispatch of the same fake CLI", local_dispatch)
    finally:
        lab.close()


if __name__ == "__main__":
    main()
