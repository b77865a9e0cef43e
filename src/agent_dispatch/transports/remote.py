"""The small programs agent-dispatch runs on a remote host, sent as `python3 -c` words.

Nothing is installed on the remote: each program travels as one quoted argument, its inputs as
further quoted arguments (sys.argv), so no caller or config value is ever read by the remote
shell. They run on any python3 (3.6+) and print only what the local side parses.

SUPERVISOR   runs the agent CLI in a directory, in its own session, and ends the CLI's whole
             process group when the ssh channel closes (stdout/stderr hang up), when its own
             deadline passes, or when the CLI exits (nothing the run started survives it).
PROBE        lists a directory and reads the few files project detection needs, as one JSON line.
"""

from __future__ import annotations

# Exit codes the supervisor uses for its own failures (ssh itself uses 255; a shell 126/127).
EXIT_NO_DIRECTORY = 111
EXIT_NO_CLI = 112
MARK = "agent-dispatch-remote:"  # prefix of the supervisor's own stderr lines

# Where a user-level install of an agent CLI usually lives; a non-interactive ssh shell often
# lacks these on PATH.
EXTRA_PATH = (".local/bin", ".claude/local", ".npm-global/bin", "bin", ".bun/bin", ".volta/bin")

SUPERVISOR = r"""
import os, select, signal, subprocess, sys, time
MARK = 'agent-dispatch-remote:'
def say(text):
    sys.stderr.write(MARK + ' ' + text + '\n')
    sys.stderr.flush()
def alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except OSError:
        return False
def end_group(child):
    # The exited leader stays unreaped until the first signal, so its group id cannot be reused.
    try:
        os.killpg(child.pid, signal.SIGTERM)
    except OSError:
        pass
    child.wait()
    for sig, grace in ((None, 1.0), (signal.SIGKILL, 2.0)):
        if sig is not None:
            try:
                os.killpg(child.pid, sig)
            except OSError:
                return
        until = time.time() + grace
        while alive(child.pid) and time.time() < until:
            time.sleep(0.02)
def main():
    directory, limit, extra, argv = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4:]
    try:
        os.chdir(os.path.expanduser(directory))
    except OSError as exc:
        say('cannot enter the directory %s: %s' % (directory, exc.strerror))
        return @NO_DIR@
    home = os.path.expanduser('~')
    path = os.pathsep.join([os.environ.get('PATH', '')] + [os.path.join(home, p) for p in extra.split(':') if p])
    os.environ['PATH'] = path
    exe = None
    for d in path.split(os.pathsep):
        cand = os.path.join(d, argv[0])
        if d and os.path.isfile(cand) and os.access(cand, os.X_OK):
            exe = cand
            break
    if exe is None:
        say('%s was not found on the PATH of this host' % argv[0])
        return @NO_CLI@
    try:
        child = subprocess.Popen([exe] + argv[1:], start_new_session=True)
    except OSError as exc:
        say('cannot start %s: %s' % (exe, exc.strerror))
        return @NO_CLI@
    poller = select.poll()
    for fd in (1, 2):
        poller.register(fd, 0)  # only hang-ups and errors: the channel went away
    wake_r, wake_w = os.pipe()  # SIGCHLD wakes the poll at once when the CLI exits
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    poller.register(wake_r, select.POLLIN)
    deadline = time.time() + limit
    why = None
    while True:
        # WNOWAIT leaves the exited child unreaped, so its group id cannot be reused before the kill.
        info = os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        if info is not None and info.si_pid:
            break
        left = deadline - time.time()
        if left <= 0:
            why = 'its deadline passed'
            break
        events = poller.poll(min(left, 1.0) * 1000)
        if any(fd != wake_r for fd, _ in events):
            why = 'the connection closed'
            break
        if events:
            os.read(wake_r, 512)
    end_group(child)
    code = child.returncode
    if why:
        try:
            say('stopped the run: ' + why)
        except OSError:
            pass
    return code if code >= 0 else 128 - code
sys.exit(main())
""".replace("@NO_DIR@", str(EXIT_NO_DIRECTORY)).replace("@NO_CLI@", str(EXIT_NO_CLI))

PROBE = r"""
import json, os, sys
directory, wanted, limit = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
out = {'ok': False}
try:
    path = os.path.expanduser(directory)
    if not os.path.exists(path):
        out['problem'] = 'directory does not exist'
    elif not os.path.isdir(path):
        out['problem'] = 'not a directory'
    else:
        names = os.listdir(path)
        out['ok'] = True
        out['dirs'] = [n for n in names if os.path.isdir(os.path.join(path, n))]
        out['files'] = [n for n in names if os.path.isfile(os.path.join(path, n))]
        texts = {}
        for rel in wanted:
            full = os.path.join(path, rel)
            if os.path.isfile(full):
                try:
                    with open(full, 'rb') as fh:
                        texts[rel] = fh.read(limit).decode('latin-1')
                except OSError:
                    pass
        out['texts'] = texts
except OSError as exc:
    out['problem'] = 'cannot read the directory: %s' % (exc.strerror or exc)
sys.stdout.write(json.dumps(out) + '\n')
"""
