"""A throwaway two-machine network for the remote-agent tests: real sshd, real ssh, real packets.

Two network namespaces ("local" and "remote") joined by a veth pair, private addresses only
inside them. The remote runs its own sshd with host and user keys made for this run, in a
private mount namespace whose /root is a temp directory (the remote user's clean home, with
~/.ssh/authorized_keys and ~/.local/bin/claude). The code under test reaches it through
AGENT_DISPATCH_SSH: a two-line script that enters the local namespace and runs the system ssh
with a config of its own (ssh takes ~ from passwd, not $HOME, so a throwaway HOME would not be
seen). Everything the lab starts lives in one of its namespaces: teardown kills those, then
deletes the link and the namespaces. Leftovers of crashed runs (names carry the creator's pid)
are removed at start.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent
PREFIX = "adx"  # namespace and link names: adx<pid>l / adx<pid>r / adx<pid>a / adx<pid>b
SSHD = "/usr/sbin/sshd"
# The remote's python for the fake CLI: a system one (the remote's /root is a temp dir, so an
# interpreter under /root, e.g. pyenv's, does not exist there).
REMOTE_PYTHON = next((p for p in ("/usr/bin/python3", "/usr/local/bin/python3") if os.path.exists(p)),
                     "/usr/bin/python3")
LOCAL_ADDR, REMOTE_ADDR = "10.77.0.1", "10.77.0.2"
ABSENT_ADDR = "10.77.0.3"  # on the link, nobody answers ARP: "No route to host" after ~3 s
BLACKHOLE_ADDR = "10.77.0.4"  # a permanent neighbour entry to nowhere: packets vanish silently

FAKE_LAUNCHER = """#!{python}
# The remote host's `claude`: behaves as tests/fakeclaude.py's main(), or runs ./.fake.py.
import os, sys
sys.path.insert(0, {tests!r})
os.environ.setdefault("FAKE_CLAUDE_RECORD", os.path.join(os.getcwd(), ".runs.jsonl"))
from fakeclaude import *  # noqa
body = os.path.join(os.getcwd(), ".fake.py")
if os.path.exists(body):
    exec(compile(open(body).read(), body, "exec"))
else:
    main()
"""

SSHD_CONFIG = """\
ListenAddress {addr}:22
HostKey {lab}/host_key
AuthorizedKeysFile .ssh/authorized_keys
StrictModes yes
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin prohibit-password
PidFile none
ClientAliveInterval 1
ClientAliveCountMax 3
MaxSessions 50
MaxStartups 50:30:100
LogLevel VERBOSE
"""

SSH_CONFIG = """\
Host remote-box
  HostName {addr}
Host *
  User root
  IdentityFile {lab}/id_user
  UserKnownHostsFile {lab}/known_hosts
  StrictHostKeyChecking yes
  GlobalKnownHostsFile /dev/null
"""

# ssh reads options first-wins: these beat agent-dispatch's own -o values, so a cut link is
# noticed in ~2 s instead of production's 15.
SSH_WRAPPER = """#!/bin/sh
exec nsenter --net=/run/netns/{ns} /usr/bin/ssh -F {lab}/ssh_config \\
  -o ServerAliveInterval=1 -o ServerAliveCountMax=2 "$@"
"""


def missing_requirements() -> str | None:
    """Why the lab cannot run here, or None."""
    if os.geteuid() != 0:
        return "the remote-agent tier needs root (network namespaces, sshd)"
    for tool, package in ((SSHD, "openssh-server"), ("/usr/bin/ssh", "openssh-client"),
                          (shutil.which("ip"), "iproute2"), (shutil.which("nsenter"), "util-linux"),
                          (shutil.which("unshare"), "util-linux"), (REMOTE_PYTHON, "python3")):
        if not tool or not os.path.exists(tool):
            return f"the remote-agent tier needs {package} ({tool or 'its tool'} is missing)"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"network namespaces are not available: {probe.stderr.strip()}"
    return None


def _ip(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    argv = ["ip", *(["-n", ns] if ns else []), *args]
    return subprocess.run(argv, capture_output=True, text=True, check=check)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def namespace_pids(ns: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
    return [int(word) for word in out.stdout.split() if word.isdigit()]


def _destroy(ns_names: list[str], link: str | None) -> None:
    for ns in ns_names:
        for _ in range(3):
            pids = namespace_pids(ns)
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
    if link:
        _ip("link", "del", link, check=False)
    for ns in ns_names:
        _ip("netns", "del", ns, check=False)


def clean_leftovers() -> None:
    """Remove namespaces of earlier lab runs whose creating process is gone."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith(PREFIX) and name[len(PREFIX):-1].isdigit() and name[-1] in "lr":
            if not _pid_alive(int(name[len(PREFIX):-1])):
                _destroy([name], None)


class Lab:
    """One lab: `start()`, then `ssh_env()` for the code under test; `close()` tears it all down."""

    def __init__(self, expose: dict[str, str | os.PathLike[str]] | None = None) -> None:
        """`expose`: local directories the remote host should see, at `self.exposed(name)`
        (bound in its private mount namespace before its /root is replaced)."""
        self.expose = {name: Path(path) for name, path in (expose or {}).items()}
        self._relays: list[socket.socket] = []
        tag = f"{PREFIX}{os.getpid()}"
        self.local_ns, self.remote_ns = tag + "l", tag + "r"
        self.link_local, self.link_remote = tag + "a", tag + "b"
        # Short paths: the control sockets live under here and a socket path is limited to ~107 bytes.
        self.dir = Path(tempfile.mkdtemp(prefix="adlab-"))
        self.remote_home = self.dir / "home"
        self.sshd: subprocess.Popen | None = None
        self.runtime_dir = self.dir / "rt"

    # ---- set-up --------------------------------------------------------------------------

    def start(self) -> Lab:
        clean_leftovers()
        try:
            self._network()
            self._keys()
            self._remote_home()
            self._start_sshd()
            self._client()
        except BaseException:
            self.close()
            raise
        return self

    def _network(self) -> None:
        _destroy([self.local_ns, self.remote_ns], self.link_local)  # our own pid's leftovers
        _ip("netns", "add", self.local_ns)
        _ip("netns", "add", self.remote_ns)
        _ip("link", "add", self.link_local, "netns", self.local_ns, "type", "veth",
            "peer", "name", self.link_remote, "netns", self.remote_ns)
        for ns, dev, addr in ((self.local_ns, self.link_local, LOCAL_ADDR),
                              (self.remote_ns, self.link_remote, REMOTE_ADDR)):
            _ip("addr", "add", f"{addr}/29", "dev", dev, ns=ns)
            _ip("link", "set", dev, "up", ns=ns)
            _ip("link", "set", "lo", "up", ns=ns)
        _ip("neigh", "add", BLACKHOLE_ADDR, "lladdr", "02:00:00:00:77:04", "dev", self.link_local,
            "nud", "permanent", ns=self.local_ns)

    def _keys(self) -> None:
        self.dir.chmod(0o700)
        for name in ("host_key", "id_user"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "adlab", "-f",
                            str(self.dir / name)], check=True)
        host_pub = (self.dir / "host_key.pub").read_text().split()
        known = f"{REMOTE_ADDR} {host_pub[0]} {host_pub[1]}\n"
        (self.dir / "known_hosts").write_text(known)

    def _remote_home(self) -> None:
        home = self.remote_home
        (home / ".ssh").mkdir(parents=True, mode=0o700)
        home.chmod(0o700)
        keys = home / ".ssh" / "authorized_keys"
        keys.write_text((self.dir / "id_user.pub").read_text())
        keys.chmod(0o600)
        self.launcher = FAKE_LAUNCHER.format(python=REMOTE_PYTHON, tests=str(TESTS_DIR))
        self.install_remote_cli(self.launcher)

    def install_remote_cli(self, text: str | None, name: str = "claude") -> None:
        """Put an executable `name` in the remote user's ~/.local/bin (None removes it)."""
        bindir = self.remote_home / ".local" / "bin"
        bindir.mkdir(parents=True, exist_ok=True)
        target = bindir / name
        if text is None:
            target.unlink(missing_ok=True)
            return
        target.write_text(text)
        target.chmod(0o755)

    def _start_sshd(self) -> None:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        config = self.dir / "sshd_config"
        config.write_text(SSHD_CONFIG.format(addr=REMOTE_ADDR, lab=self.dir))
        self.sshd_log = self.dir / "sshd.log"
        binds = []
        for name, source in self.expose.items():
            self.exposed(name).mkdir(parents=True, exist_ok=True)
            binds.append(f"mount --bind {source} {self.exposed(name)} && ")
        script = "".join(binds) + f"mount --bind {self.remote_home} /root && exec {SSHD} -D -e -f {config}"
        with open(self.sshd_log, "wb") as log:
            self.sshd = subprocess.Popen(
                ["ip", "netns", "exec", self.remote_ns, "unshare", "--mount", "--propagation", "private",
                 "sh", "-c", script],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            )
        deadline = time.monotonic() + 20
        while b"Server listening" not in self.sshd_log.read_bytes():
            if self.sshd.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sshd did not start: {self.sshd_log.read_text()}")
            time.sleep(0.05)

    def _client(self) -> None:
        (self.dir / "ssh_config").write_text(SSH_CONFIG.format(addr=REMOTE_ADDR, lab=self.dir))
        wrapper = self.dir / "ssh"
        wrapper.write_text(SSH_WRAPPER.format(ns=self.local_ns, lab=self.dir))
        wrapper.chmod(0o755)
        self.ssh = str(wrapper)
        self.runtime_dir.mkdir(mode=0o700)

    # ---- use -----------------------------------------------------------------------------

    def exposed(self, name: str) -> Path:
        return self.dir / "exposed" / name

    def relay(self, port: int) -> int:
        """A port on the remote host's 127.0.0.1 that leads to 127.0.0.1:`port` here (a stand-in API).

        The listening socket is made by a thread that entered the remote network namespace (a
        namespace is per thread); connections out of it are made from this one.
        """
        box: dict[str, object] = {}

        def listen_there() -> None:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{self.remote_ns}", os.O_RDONLY)
            try:
                if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
                    box["error"] = OSError(ctypes.get_errno(), "setns failed")
                    return
            finally:
                os.close(fd)
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sock.listen(64)
            box["sock"] = sock

        worker = threading.Thread(target=listen_there)
        worker.start()
        worker.join()
        if "error" in box:
            raise box["error"]  # type: ignore[misc]
        listener: socket.socket = box["sock"]  # type: ignore[assignment]
        self._relays.append(listener)
        threading.Thread(target=_accept_loop, args=(listener, port), daemon=True).start()
        return listener.getsockname()[1]

    def env(self) -> dict[str, str]:
        """What the code under test needs in its environment to reach the lab."""
        return {"AGENT_DISPATCH_SSH": self.ssh, "AGENT_DISPATCH_RUNTIME_DIR": str(self.runtime_dir)}

    def run_remote(self, command: str, timeout: float = 30) -> subprocess.CompletedProcess:
        """Run a shell command on the remote host through the lab's ssh (not the code under test)."""
        return subprocess.run([self.ssh, "-o", "BatchMode=yes", "-o", "ControlPath=none", REMOTE_ADDR, command],
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def remote_processes(self, needle: str) -> list[int]:
        """Pids of processes in the remote namespace whose command line contains `needle`."""
        found = []
        for pid in namespace_pids(self.remote_ns):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if needle.encode() in cmdline:
                found.append(pid)
        return found

    def local_processes(self, needle: str) -> list[int]:
        found = []
        for pid in namespace_pids(self.local_ns):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if needle.encode() in cmdline:
                found.append(pid)
        return found

    def cut(self) -> None:
        """Take the link down on both ends (packets stop; nothing is told)."""
        _ip("link", "set", self.link_local, "down", ns=self.local_ns)
        _ip("link", "set", self.link_remote, "down", ns=self.remote_ns)

    def mend(self) -> None:
        for ns, dev in ((self.local_ns, self.link_local), (self.remote_ns, self.link_remote)):
            _ip("link", "set", dev, "up", ns=ns)

    def drop_connections(self) -> None:
        """End every shared ssh connection the code under test holds (the next run makes a new one)."""
        for pid in self.local_processes("ControlMaster=yes"):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while self.local_processes("ControlMaster=yes") and time.monotonic() < deadline:
            time.sleep(0.05)

    def close(self) -> None:
        for listener in self._relays:
            with contextlib.suppress(OSError):
                listener.close()
        if self.sshd is not None and self.sshd.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(self.sshd.pid, signal.SIGKILL)
            self.sshd.wait(timeout=10)
        _destroy([self.local_ns, self.remote_ns], self.link_local)
        shutil.rmtree(self.dir, ignore_errors=True)


def _accept_loop(listener: socket.socket, port: int) -> None:
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", port), timeout=10)
            upstream.settimeout(None)
        except OSError:
            conn.close()
            continue
        for src, dst in ((conn, upstream), (upstream, conn)):
            threading.Thread(target=_pipe, args=(src, dst), daemon=True).start()


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


def wait_until(predicate, timeout: float = 20.0, pause: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(pause)
    return bool(predicate())

