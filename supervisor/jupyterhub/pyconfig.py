"""Read ``c.Class.trait = value`` settings out of a jupyterhub_config.py without running it (pure).

The config is Python, and svctl often runs as root: executing a file just to inspect it would run
whatever it imports. So the doctor and the preset parse it with ``ast`` and fold the few expression
shapes real configs use for paths and addresses (literals, module-level names, ``os.path.join`` and
aliases of it such as the seed's ``pjoin``, string ``+``, f-strings, ``os.environ.get(k, default)``).
Anything else evaluates to UNKNOWN, and callers treat UNKNOWN as "can't tell", never as a value.
"""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass, field


class _Unknown:
    """A value the reader could not fold (a function call, an env var without default, ...)."""

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN = _Unknown()

# Names that mean os.path.join once imported the usual ways.
# The config may be a user's, and root reads it (svctl check, the preset before each start). What
# folding builds is bounded: `x = x + x` fifty times would ask for 2**50 bytes, and `b = [a, a]`
# nested fifty deep is tiny in memory but 2**50 long once printed (the doctor repr()s values).
MAX_FOLDED = 1 << 16  # characters of a folded string, or of a container as printed (roughly)
MAX_DEPTH = 32  # containers in containers: repr() recurses once per level
_JOIN_DOTTED = ("os.path.join", "path.join", "posixpath.join")


@dataclass(frozen=True)
class Setting:
    value: object  # a str/int/bool/float/None/set/list/dict/tuple, or UNKNOWN
    line: int


@dataclass
class ConfigFile:
    """The settings assigned at module level, last assignment wins (as in traitlets)."""

    settings: dict[str, Setting] = field(default_factory=dict)
    syntax_error: str | None = None

    def get(self, key: str, default: object = None) -> object:
        setting = self.settings.get(key)
        return default if setting is None else setting.value

    def line(self, key: str) -> int | None:
        setting = self.settings.get(key)
        return None if setting is None else setting.line

    def has(self, key: str) -> bool:
        return key in self.settings


def parse_config(source: str, filename: str = "jupyterhub_config.py") -> ConfigFile:
    """Parse SOURCE; a syntax error is recorded (with its line), never raised.

    The file may be a user's, so anything ast raises is "not valid Python": a NUL byte is a
    ValueError on Python 3.11.2 (a SyntaxError without a line on 3.11.7, one with a line on 3.12),
    deep nesting a RecursionError or MemoryError."""
    nul = source.find("\0")
    if nul >= 0:
        return ConfigFile(syntax_error=f"line {source.count(chr(10), 0, nul) + 1}: the file contains a NUL byte")
    try:
        tree = ast.parse(source, filename=filename)
    except SyntaxError as exc:
        where = f"line {exc.lineno}: " if exc.lineno else ""
        return ConfigFile(syntax_error=f"{where}{exc.msg}")
    except (RecursionError, MemoryError):
        return ConfigFile(syntax_error="nested too deeply for Python to parse")
    except ValueError as exc:  # e.g. "source code string cannot contain null bytes" (3.11.2)
        return ConfigFile(syntax_error=str(exc) or "not readable as Python source")
    reader = _Reader()
    for statement in tree.body:
        try:
            reader.statement(statement)
        except RecursionError:  # an expression nested too deeply to fold: its settings are unknown
            for child in ast.walk(statement):
                if isinstance(child, ast.Assign):
                    for target in child.targets:
                        reader.assign(target, None, child.lineno)
    return ConfigFile(settings=reader.settings)


def read_config(path: str, limit: int = 4 << 20) -> ConfigFile:
    """parse_config on a file; OSError propagates so callers can say why the file is unreadable.

    Read through userfiles (as whoever controls its directory; a FIFO or device is refused, never
    waited on), at most LIMIT bytes: the hub's user may own this file."""
    from supervisor.unix import userfiles

    raw = userfiles.read_bytes(path, limit)
    if raw is None:
        raise FileNotFoundError(2, "No such file or directory", path)
    return parse_config(raw.decode("utf-8", errors="replace"), path)


def _dotted(node: ast.expr) -> str | None:
    """``os.path.join`` -> "os.path.join"; anything that isn't a dotted name -> None."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


class _Reader:
    def __init__(self) -> None:
        self.settings: dict[str, Setting] = {}
        self.names: dict[str, object] = {}
        self.join_aliases: set[str] = set(_JOIN_DOTTED)
        # id -> (printed size, depth, the container itself: kept alive so that its id stays its own)
        self._sizes: dict[int, tuple[int, int, object]] = {}

    def statement(self, node: ast.stmt) -> None:
        # Only top-level straight-line code is read: a setting inside an `if` may or may not apply,
        # so it is recorded as UNKNOWN rather than guessed (it still counts as "set").
        if isinstance(node, ast.Assign):
            for target in node.targets:
                self.assign(target, node.value, node.lineno)
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            self.assign(node.target, node.value, node.lineno)
        elif isinstance(node, ast.AugAssign):
            self.assign(node.target, None, node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module in ("os.path", "posixpath"):
            for alias in node.names:
                if alias.name == "join":
                    self.join_aliases.add(alias.asname or "join")
        elif isinstance(node, (ast.If, ast.For, ast.While, ast.With, ast.Try)):
            for child in ast.walk(node):
                if isinstance(child, ast.Assign):
                    for target in child.targets:
                        self.assign(target, None, child.lineno)

    def assign(self, target: ast.expr, value_node: ast.expr | None, line: int) -> None:
        value = UNKNOWN if value_node is None else self.evaluate(value_node)
        name = _dotted(target)
        if name is None:
            return
        if name.startswith("c.") and name.count(".") == 2:
            self.settings[name[2:]] = Setting(value, line)
        elif "." not in name:
            self.names[name] = value
            if value_node is not None and _dotted(value_node) in self.join_aliases:
                self.join_aliases.add(name)

    def evaluate(self, node: ast.expr) -> object:
        value = self._fold(node)
        if isinstance(value, (list, tuple, set, dict)):
            size, depth = self._measure(value)
            if size > MAX_FOLDED or depth > MAX_DEPTH:
                return UNKNOWN
        return value

    def _measure(self, value: object) -> tuple[int, int]:
        """(about how long repr(VALUE) is, how deeply it nests). Every container here was made by
        evaluate, whose members were measured first: memoised, the cost is one step per member."""
        if isinstance(value, (str, bytes)):
            return len(value) + 2, 0
        if isinstance(value, int):
            return value.bit_length() // 3 + 1, 0
        if not isinstance(value, (list, tuple, set, frozenset, dict)):
            return 8, 0
        known = self._sizes.get(id(value))
        if known is not None:
            return known[0], known[1]
        members = [*value.keys(), *value.values()] if isinstance(value, dict) else list(value)
        size, depth = 2, 0
        for member in members:
            member_size, member_depth = self._measure(member)
            size, depth = size + member_size + 2, max(depth, member_depth)
        self._sizes[id(value)] = (size, depth + 1, value)
        return size, depth + 1

    def _fold(self, node: ast.expr) -> object:  # noqa: PLR0911 (one return per node shape)
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return self.names.get(node.id, UNKNOWN)
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            items = [self.evaluate(item) for item in node.elts]
            if any(item is UNKNOWN for item in items):
                return UNKNOWN
            try:
                return {ast.List: list, ast.Tuple: tuple, ast.Set: set}[type(node)](items)
            except TypeError:  # {[1]}: an unhashable member, which Python itself would refuse
                return UNKNOWN
        if isinstance(node, ast.Dict):
            return self._dict(node)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            left, right = self.evaluate(node.left), self.evaluate(node.right)
            if isinstance(left, str) and isinstance(right, str) and len(left) + len(right) <= MAX_FOLDED:
                return left + right
            return UNKNOWN
        if isinstance(node, ast.JoinedStr):
            return self._fstring(node)
        if isinstance(node, ast.Call):
            return self._call(node)
        return UNKNOWN

    def _dict(self, node: ast.Dict) -> object:
        result = {}
        for key_node, value_node in zip(node.keys, node.values, strict=False):
            if key_node is None:
                return UNKNOWN
            key, value = self.evaluate(key_node), self.evaluate(value_node)
            if key is UNKNOWN or value is UNKNOWN:
                return UNKNOWN
            try:
                result[key] = value
            except TypeError:  # an unhashable key
                return UNKNOWN
        return result

    def _fstring(self, node: ast.JoinedStr) -> object:
        parts: list[str] = []
        for part in node.values:
            if isinstance(part, ast.Constant):
                parts.append(str(part.value))
            elif isinstance(part, ast.FormattedValue) and part.format_spec is None and part.conversion == -1:
                value = self.evaluate(part.value)
                if value is UNKNOWN:
                    return UNKNOWN
                parts.append(str(value))
            else:
                return UNKNOWN
        joined = "".join(parts)
        return joined if len(joined) <= MAX_FOLDED else UNKNOWN

    def _call(self, node: ast.Call) -> object:
        function = _dotted(node.func)
        if node.keywords:
            return UNKNOWN
        arguments = [self.evaluate(argument) for argument in node.args]
        if function in self.join_aliases:
            if arguments and all(isinstance(argument, str) for argument in arguments) \
                    and sum(len(argument) for argument in arguments) <= MAX_FOLDED:  # type: ignore[arg-type]
                return os.path.join(*arguments)  # type: ignore[arg-type]
            return UNKNOWN
        if function in ("os.environ.get", "os.getenv") and len(arguments) == 2:
            # The effective value depends on the service's environment; the default is what a
            # plain `svctl init` config sees, and is the best a static reader can do.
            return arguments[1]
        if function in ("set", "list", "tuple") and len(arguments) == 1 and arguments[0] is not UNKNOWN:
            try:
                return {"set": set, "list": list, "tuple": tuple}[function](arguments[0])  # type: ignore[call-overload]
            except TypeError:
                return UNKNOWN
        if function in ("set", "list", "dict", "tuple") and not arguments:
            return {"set": set, "list": list, "dict": dict, "tuple": tuple}[function]()
        return UNKNOWN


def config_path_from_command(command: tuple[str, ...], working_directory: str) -> str:
    """Where the hub reads its config: ``-f X``/``--config X``/``--config=X``, else ./jupyterhub_config.py."""
    for index, word in enumerate(command):
        for flag in ("-f", "--config", "--JupyterHub.config_file"):
            if word == flag and index + 1 < len(command):
                return os.path.join(working_directory, command[index + 1])
            if word.startswith(flag + "="):
                return os.path.join(working_directory, word[len(flag) + 1:])
    return os.path.join(working_directory, "jupyterhub_config.py")
