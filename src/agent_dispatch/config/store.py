"""agents.yaml on disk: reading it safely, writing it atomically under a cross-process lock.

Reading (`ConfigStore.load`): the safe YAML loader (libyaml's when present), duplicate keys
refused, then the pydantic schema of `models.AppConfig`. Every failure (unreadable, not UTF-8,
bad YAML, not a mapping, wrong schema) is a `ConfigError` whose message names the file and
whose hint says how to fix it. A missing file is an empty configuration. A parsed config is
reused until the file's (mtime, size, inode) change.

Writing (`ConfigStore.modify`): under an exclusive `flock` on a lock file beside the config
(bounded wait), load fresh, apply the change, validate what will be written, then replace the
file atomically (temporary file in the same directory + `os.replace`; a symlinked agents.yaml
stays a symlink and its target is replaced). The file is 0o600, its directory 0o700. A change
that fails at any step leaves the file byte-for-byte as it was.

pydantic and yaml are imported inside the functions that need them: `agent-dispatch list`
must not pay for pydantic when it can avoid it (see `ConfigStore.agents`).
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from agent_dispatch import __version__
from agent_dispatch.config.paths import CONFIG_ENV, config_path, example_hint
from agent_dispatch.errors import BadArgumentError, ConfigError
from agent_dispatch.files import tighten_dir

if TYPE_CHECKING:
    from pydantic import ValidationError

    from agent_dispatch.models import AgentConfig, AppConfig

T = TypeVar("T")

LOCK_TIMEOUT = 10.0
MAX_CONFIG_BYTES = 4 * 1024 * 1024
STARTER = (
    "# agent-dispatch: the agents a Claude Code session can hand work to.\n"
    "# `agent-dispatch example` prints every key with comments; add agents with `agent-dispatch add NAME DIR`.\n"
    "agents: {}\n"
)
AGENT_FIELDS = (
    "directory", "description", "timeout", "model", "max_budget_usd", "permission_mode",
    "allowed_tools", "disallowed_tools", "instructions", "capabilities", "risky_capabilities",
    "host", "ssh_options",
    "runtime",
)


# --- YAML ---------------------------------------------------------------------------------

_loader_class: Any = None


def _yaml_loader() -> Any:
    """A safe loader (libyaml's when present) that refuses duplicate keys instead of dropping one."""
    global _loader_class
    if _loader_class is None:
        import yaml

        base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

        class UniqueKeyLoader(base):  # type: ignore[misc, valid-type]
            def construct_mapping(self, node: Any, deep: bool = False) -> Any:
                seen: set[Any] = set()
                for key_node, _ in getattr(node, "value", ()):
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue  # `<<:` merges may be overridden on purpose
                    key = self.construct_object(key_node, deep=deep)
                    with contextlib.suppress(TypeError):  # unhashable keys: the base reports them
                        if key in seen:
                            raise yaml.constructor.ConstructorError(
                                "while constructing a mapping", node.start_mark,
                                f"found duplicate key {key!r}", key_node.start_mark,
                            )
                        seen.add(key)
                return super().construct_mapping(node, deep=deep)

        _loader_class = UniqueKeyLoader
    return _loader_class


def _yaml_problem(exc: Exception, text: str = "") -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or str(exc).splitlines()[0]
    if mark is None:
        return str(problem)
    where = f"line {mark.line + 1}, column {mark.column + 1}"
    lines = text.splitlines()
    line = lines[mark.line] if 0 <= mark.line < len(lines) else ""
    if "\t" in line[: len(line) - len(line.lstrip())] or "'\\t'" in str(problem):
        return f"a tab character ({where}): YAML does not allow tabs for indentation; indent with spaces"
    return f"{problem} ({where})"


def _leading_comments(data: bytes | None) -> str:
    """The comment block at the top of the file, kept across saves."""
    if not data:
        return ""
    kept = []
    for line in data.decode("utf-8", errors="replace").splitlines():
        if not line.startswith("#"):
            break
        kept.append(line)
    return "\n".join(kept) + "\n" if kept else ""


# --- validation messages ------------------------------------------------------------------


def describe_validation(exc: ValidationError, limit: int = 3) -> str:
    """A pydantic ValidationError as one readable line: "agents.x.timeout: ...; unknown key 'y' in ..."."""
    parts = []
    errors = exc.errors()
    for err in errors[:limit]:
        loc = [str(part) for part in err["loc"]]
        if err["type"] == "extra_forbidden":
            where = f" in {'.'.join(loc[:-1])}" if len(loc) > 1 else " at the top level"
            parts.append(f"unknown key {loc[-1]!r}{where}{_did_you_mean(err['loc'])}")
        elif len(loc) == 2 and loc[0] == "agents" and err["type"] in ("dict_type", "model_type"):
            parts.append(_agent_not_a_mapping(loc[1], err.get("input")))
        else:
            message = err["msg"].removeprefix("Value error, ")
            parts.append(f"{'.'.join(loc)}: {message}" if loc else message)
    more = len(errors) - limit
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _agent_not_a_mapping(name: str, value: Any) -> str:
    """Usually indentation: the agent's keys were not indented under its name."""
    from agent_dispatch.models import AgentConfig

    if name in AgentConfig.model_fields:
        return (f"agents.{name}: `{name}:` sits directly under `agents:`; indent it (with spaces) under the "
                "agent's name")
    shown = "empty" if value is None else f"a {type(value).__name__}"
    return (f"agents.{name}: an agent must be a mapping of its keys (`directory:` ...), not {shown}; "
            "indent its keys under the name")


def _did_you_mean(loc: tuple[Any, ...]) -> str:
    """` (did you mean 'timeout'?)` for a misspelt key, from the fields of the model at `loc`."""
    import difflib

    model = _model_at(loc[:-1])
    if model is None or not isinstance(loc[-1], str):
        return ""
    close = difflib.get_close_matches(loc[-1].lower(), list(model.model_fields), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _model_at(loc: tuple[Any, ...]) -> Any:
    """The pydantic model that validates the mapping at `loc` in agents.yaml, or None."""
    import typing

    from pydantic import BaseModel

    from agent_dispatch.models import AppConfig

    def inner(annotation: Any) -> tuple[Any, bool]:
        """(model, keyed): the model inside `annotation`; keyed when it is the value of a dict."""
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return annotation, False
        origin, args = typing.get_origin(annotation), typing.get_args(annotation)
        if origin is dict and len(args) == 2:
            found, _ = inner(args[1])
            return found, True
        for arg in args:
            found, keyed = inner(arg)
            if found is not None:
                return found, keyed
        return None, False

    model: Any = AppConfig
    index = 0
    while index < len(loc):
        field = model.model_fields.get(loc[index]) if isinstance(loc[index], str) else None
        if field is None:
            return None
        model, keyed = inner(field.annotation)
        if model is None:
            return None
        index += 2 if keyed else 1
    return model


def _validation_error(path: Path, exc: ValidationError) -> ConfigError:
    return ConfigError(
        f"{path} is not a valid agents.yaml: {describe_validation(exc)}",
        f"Edit {path}, then check it with `agent-dispatch doctor`. {example_hint()}",
    )


# --- the store ----------------------------------------------------------------------------

_StatKey = tuple[int, int, int, int]


class AgentRecord:
    """A read-only agent entry with the attributes of `models.AgentConfig`, built without
    pydantic from bytes that passed validation earlier (see `ConfigStore.agents`)."""

    __slots__ = AGENT_FIELDS

    def __init__(self, entry: Mapping[str, Any]) -> None:
        for field in AGENT_FIELDS:
            setattr(self, field, entry.get(field, "" if field == "description" else None))


class ConfigStore:
    """agents.yaml on disk. `load()` to read, `modify(fn)` to change; safe across processes."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(os.path.abspath(os.path.expanduser(os.fspath(path)))) if path is not None else config_path()
        self._cached: tuple[_StatKey, AppConfig] | None = None
        self._parsed_for_writes: dict[str, Any] = {}  # see roundtrip.render(reuse=...)

    @property
    def lock_path(self) -> Path:
        return self.path.parent / f".{self.path.name}.lock"

    @property
    def stamp_path(self) -> Path:
        return self.path.parent / f".{self.path.name}.checked"

    def exists(self) -> bool:
        return self.path.exists()

    def load(self) -> AppConfig:
        """The validated configuration (an empty one when the file is missing). Treat it as
        read-only: it is shared with later calls; change the file through `modify`."""
        cached = self._cached
        if cached is not None and cached[0] == self._stat_key():
            return cached[1]
        key, data = self._read()
        config = self._validate(self._parse(data), data)
        if key is not None:
            self._cached = (key, config)
        return config

    def agents(self) -> Mapping[str, AgentConfig | AgentRecord]:
        """The configured agents, validated, for read-only listing.

        Importing pydantic costs more than a whole `agent-dispatch list` may take, so when these
        exact bytes were validated before (a stamp beside the config holds their fingerprint) the
        entries come back as `AgentRecord`s built from the parsed YAML alone.
        """
        cached = self._cached
        if cached is not None and cached[0] == self._stat_key():
            return cached[1].agents
        key, data = self._read()
        if data is not None and self._stamp_matches(data):
            raw = self._parse(data)
            return {name: AgentRecord(entry) for name, entry in (raw.get("agents") or {}).items()}
        return self.load().agents

    def modify(self, fn: Callable[[AppConfig], T]) -> T:
        """Apply `fn` to a freshly loaded config under the cross-process lock and save the result.

        `fn` changes the config in place and may raise to abort (nothing is written). Returns
        what `fn` returned. Raises ConfigError when the file cannot be read or written or the
        lock is not obtained within LOCK_TIMEOUT seconds; BadArgumentError when the changed
        config would not validate.
        """
        from pydantic import ValidationError

        from agent_dispatch.config import roundtrip
        from agent_dispatch.models import AppConfig

        self._prepare_directory()
        roundtrip.prepare()
        with self._locked():
            _, data = self._read()
            config = self._validate(self._parse(data), data)
            before = _serialisable(config)
            result = fn(config)
            out = _serialisable(config)
            try:
                checked = AppConfig.model_validate(out)
            except ValidationError as exc:
                raise BadArgumentError(
                    f"the change would leave an invalid agents.yaml: {describe_validation(exc)}",
                    f"Check the values given; {example_hint()}",
                ) from None
            text = self._edited_text(data, before, out)
            self._write(text)
            self._remember(checked, text)
        return result

    def _edited_text(self, data: bytes | None, before: dict[str, Any], after: dict[str, Any]) -> bytes:
        """The file's bytes with the change from `before` to `after` made in place (comments, order
        and style kept, see `roundtrip`), or written afresh when that cannot be done faithfully.
        Either way the text must read back as exactly `after`."""
        from agent_dispatch.config import roundtrip

        original = data.decode("utf-8") if data else None
        try:
            edited = roundtrip.render(original, before, after, self._parsed_for_writes)
        except Exception:  # noqa: BLE001 (a round-trip quirk must never cost the change)
            edited = None
        if edited is not None and self._reads_as(edited, after):
            return edited.encode("utf-8")
        self._parsed_for_writes.clear()
        return roundtrip.fresh_text(after, _leading_comments(data)).encode("utf-8")

    def _reads_as(self, text: str, expected: dict[str, Any]) -> bool:
        from pydantic import ValidationError

        from agent_dispatch.models import AppConfig

        try:
            return _serialisable(AppConfig.model_validate(self._parse(text.encode("utf-8")))) == expected
        except (ConfigError, ValidationError):
            return False

    def create(self, text: str = STARTER) -> bool:
        """Create the config holding `text` unless a file is already there (never overwrites).
        A dangling symlink counts as missing: its target is created. True when created."""
        self._prepare_directory()
        with self._locked():
            if self.path.exists():
                return False
            self._write(text.encode("utf-8"))
        return True

    # -- reading --

    def _stat_key(self) -> _StatKey | None:
        try:
            st = os.stat(self.path)
        except (OSError, ValueError):
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)

    def _read(self) -> tuple[_StatKey | None, bytes | None]:
        """(stat key, bytes) of the file; (None, None) when it does not exist."""
        path = self.path
        try:
            # O_NONBLOCK: a FIFO planted at the config path must not hang the reader.
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            return None, None
        except PermissionError:
            raise ConfigError(f"cannot read {path}: permission denied",
                              f"Make it readable by you: chmod 600 {path}") from None
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror or exc}",
                              f"Check that {path} is a readable file.") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            if stat.S_ISDIR(st.st_mode):
                raise ConfigError(f"cannot read {path}: it is a directory, not a file",
                                  f"Move the directory away, or point {CONFIG_ENV} at the agents.yaml file.")
            raise ConfigError(f"cannot read {path}: it is not a regular file",
                              f"Replace {path} with a YAML file. {example_hint()}")
        with os.fdopen(fd, "rb") as fh:
            try:
                data = fh.read(MAX_CONFIG_BYTES + 1)
            except OSError as exc:
                raise ConfigError(f"cannot read {path}: {exc.strerror or exc}",
                                  f"Check that {path} is a readable file.") from None
        if len(data) > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path} is larger than {MAX_CONFIG_BYTES // (1024 * 1024)} MiB",
                              f"Check that {path} really is agents.yaml.")
        return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev), data

    def _parse(self, data: bytes | None) -> dict[str, Any]:
        """Bytes -> the top-level mapping, agent directories normalised. Raises ConfigError."""
        if data is None:
            return {}
        path = self.path
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise ConfigError(
                f"{path} is not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line})",
                f"Save {path} as UTF-8, e.g. `iconv -f latin1 -t utf-8`.",
            ) from None
        import yaml

        try:
            raw = yaml.load(text.removeprefix("\ufeff"), Loader=_yaml_loader())  # noqa: S506 (a SafeLoader subclass)
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"{path} is not valid YAML: {_yaml_problem(exc, text)}",
                f"Fix the YAML syntax in {path}. {example_hint()}",
            ) from None
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            kind = {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(
                type(raw), type(raw).__name__
            )
            raise ConfigError(
                f"{path} must hold a mapping with an `agents:` key at the top, not a {kind}",
                f"Start {path} with `agents:`. {example_hint()}",
            )
        return self._normalise(raw)

    def _normalise(self, raw: dict[str, Any]) -> dict[str, Any]:
        agents = raw.get("agents")
        if not isinstance(agents, dict):
            return raw
        fixed = {}
        for name, entry in agents.items():
            if not isinstance(name, str):
                raise ConfigError(
                    f"{self.path}: agent name {name!r} must be text",
                    f"Quote it in {self.path}: '{name}':",
                )
            if isinstance(entry, dict) and isinstance(entry.get("directory"), str) and entry["directory"].strip():
                entry = {**entry, "directory": self._absolute(entry["directory"])}
            fixed[name] = entry
        return {**raw, "agents": fixed}

    def _absolute(self, directory: str) -> str:
        """`~` expanded; a relative directory is taken relative to the config file's directory."""
        return os.path.normpath(os.path.join(self.path.parent, os.path.expanduser(directory)))

    def _validate(self, raw: dict[str, Any], data: bytes | None) -> AppConfig:
        from pydantic import ValidationError

        from agent_dispatch.models import AppConfig

        try:
            config = AppConfig.model_validate(raw)
        except ValidationError as exc:
            raise _validation_error(self.path, exc) from None
        if data is not None:
            self._stamp(data)
        return config

    # -- the validated-bytes stamp --

    def _fingerprint(self, data: bytes) -> str:
        import hashlib

        digest = hashlib.sha256(_schema_identity())
        digest.update(b"\0" + os.fsencode(self.path) + b"\0" + data)
        return digest.hexdigest()

    def _stamp_matches(self, data: bytes) -> bool:
        try:
            return self.stamp_path.read_text(encoding="ascii").strip() == self._fingerprint(data)
        except (OSError, ValueError):
            return False

    def _stamp(self, data: bytes) -> None:
        """Record that these bytes validated; best effort (a read-only directory just stays slow)."""
        if self._stamp_matches(data):
            return
        with contextlib.suppress(OSError):
            if self.path.parent.is_dir():
                _atomic_write(self.stamp_path, (self._fingerprint(data) + "\n").encode())

    # -- writing --

    def _remember(self, config: AppConfig, data: bytes) -> None:
        key = self._stat_key()
        self._cached = (key, config) if key is not None else None
        self._stamp(data)

    def _prepare_directory(self) -> None:
        directory = self.path.parent
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            tighten_dir(directory)
        except OSError as exc:
            raise ConfigError(f"cannot create {directory}: {exc.strerror or exc}",
                              f"Create {directory} yourself (mkdir -p -m 700 {directory}).") from None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        import fcntl

        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        except OSError as exc:
            raise ConfigError(f"cannot open the lock file {self.lock_path}: {exc.strerror or exc}",
                              f"Check that {self.path.parent} is writable by you.") from None
        try:
            deadline = time.monotonic() + LOCK_TIMEOUT
            delay = 0.002
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise ConfigError(
                            f"{self.path} is being changed by another agent-dispatch process "
                            f"(waited {LOCK_TIMEOUT:g} s for {self.lock_path})",
                            "Try again in a moment.",
                        ) from None
                    time.sleep(delay)
                    # Short polls: a writer that loops must not starve another between its writes.
                    delay = min(delay * 2, 0.005)
            yield
        finally:
            os.close(fd)  # closing releases the flock

    def _write(self, data: bytes) -> None:
        # Replace the symlink's target, not the link: a symlinked agents.yaml stays a symlink.
        target = Path(os.path.realpath(self.path))
        try:
            _atomic_write(target, data)
        except OSError as exc:
            raise ConfigError(f"cannot write {self.path}: {exc.strerror or exc}",
                              f"Check that {target.parent} is writable and the disk is not full.") from None


def _schema_identity() -> bytes:
    """Changes whenever the rules that validated a stamp could have changed: the version and the
    source of the schema and of this loader (contents, not mtimes: wheels carry fixed mtimes)."""
    parts = [__version__.encode()]
    models = Path(__file__).parent.parent / "models"
    for path in (*sorted(models.glob("*.py")), Path(__file__)):
        try:
            parts.append(path.read_bytes())
        except OSError:
            parts.append(b"?")
    return b"\0".join(parts)


def _atomic_write(target: Path, data: bytes) -> None:
    """Write `data` to a temporary 0o600 file beside `target`, fsync it, then rename it over `target`."""
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _serialisable(config: AppConfig) -> dict[str, Any]:
    """What goes into the file: empty optional agent keys pruned (an explicit `[]` tool list kept),
    and only the settings the file already had or a change set."""
    agents = {}
    for name, agent in config.agents.items():
        dumped = {key: _prune(value) if isinstance(value, dict) else value for key, value in agent.model_dump().items()}
        agents[name] = {key: value for key, value in dumped.items() if value is not None and value != ""}
    out: dict[str, Any] = {"agents": agents}
    if config.groups:
        out["groups"] = {name: _group_data(group) for name, group in config.groups.items()}
    settings = _prune(config.settings.model_dump(exclude_unset=True))
    if settings:
        out["settings"] = settings
    return out


def _group_data(group: Any) -> dict[str, Any]:
    """A group as written: empty texts left out, each member's use_for only when set."""
    out: dict[str, Any] = {key: getattr(group, key) for key in ("description", "shared_context") if getattr(group, key)}
    out["members"] = [
        {"agent": m.agent, **({"use_for": m.use_for} if m.use_for else {})} for m in group.members
    ]
    return out


def _prune(data: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            value = _prune(value)
            if not value:
                continue
        if value is not None:
            out[key] = value
    return out
