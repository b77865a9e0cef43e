"""How a run reaches its CLI: locally (the runner spawns it), or on another machine over ssh.

A transport wraps an argv + environment + directory into what the runner spawns; it never knows
which CLI it carries. `ssh` is the only remote transport.
"""
