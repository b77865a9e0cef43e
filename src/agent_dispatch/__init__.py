"""agent-dispatch: hand work from one Claude Code session to agents in other project directories."""

__version__ = "0.1.0"
