"""Dependencies between services (`requires = [...]`): which services to load, and in what order.

The graph code is pure (names in, names out). Loading reads only the service files it needs:
a start loads the closure of the service's requirements (every file, so an unknown name or a
cycle is found before anything starts); a stop needs the services that require this one, found
by a cheap scan of the config dir (only files that mention `requires` are parsed), because
`svctl stop` of a service nobody requires is timed against start-stop-daemon.

Unknown names and cycles are a ConfigError (exit 6) naming the file and the cycle
("a -> b -> c -> a"). config.py has checked each file's own list (names, no self, no repeats).
"""

from __future__ import annotations

import os

SUFFIX = ".toml"
MAX_SCAN_BYTES = 1 << 20  # the most a service file may be (config.MAX_FILE_BYTES)


# ---- pure graph code --------------------------------------------------------------------------


def find_cycle(edges: dict[str, tuple[str, ...]]) -> list[str] | None:
    """A cycle in EDGES (name -> the names it points to) as [a, b, c, a], or None.
    Names without an entry have no edges. Deterministic: roots and edges in sorted/listed order."""
    done: set[str] = set()
    for root in sorted(edges):
        path: list[str] = []
        on_path: set[str] = set()
        stack = [(root, iter(edges.get(root, ())))] if root not in done else []
        if stack:
            path.append(root)
            on_path.add(root)
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                on_path.discard(node)
                done.add(node)
            elif child in on_path:
                return path[path.index(child):] + [child]
            elif child not in done:
                stack.append((child, iter(edges.get(child, ()))))
                path.append(child)
                on_path.add(child)
    return None


def post_order(root: str, edges: dict[str, tuple[str, ...]]) -> list[str]:
    """Every name reachable from ROOT, each after everything it points to, ROOT last.
    With `requires` edges: the start order (requirements first); with reversed edges
    (name -> its dependents): the stop order (dependents first). EDGES must be acyclic."""
    order: list[str] = []
    seen = {root}
    stack = [(root, iter(edges.get(root, ())))]
    while stack:
        node, children = stack[-1]
        child = next(children, None)
        if child is None:
            stack.pop()
            order.append(node)
        elif child not in seen:
            seen.add(child)
            stack.append((child, iter(edges.get(child, ()))))
    return order


def reverse(edges: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """name -> the names that point to it (sorted)."""
    reversed_: dict[str, list[str]] = {}
    for name in sorted(edges):
        for target in edges[name]:
            reversed_.setdefault(target, []).append(name)
    return {name: tuple(sources) for name, sources in reversed_.items()}


def cycle_text(cycle: list[str]) -> str:
    return " -> ".join(cycle)


# ---- loading ----------------------------------------------------------------------------------


def _cycle_error(cycle: list[str], configs: dict, config_dir: str | None = None):
    from supervisor.errors import ConfigError

    # the cycle's first name, sorted, is not always loaded here (dependents() does not load NAME)
    first = next((known for known in cycle if known in configs), None)
    if first is not None:
        cycle = cycle[cycle.index(first):-1] + cycle[:cycle.index(first)] + [first]
        path = configs[first].path
    else:
        path = os.path.join(config_dir or ".", cycle[0] + SUFFIX)
    return ConfigError(f"{path}: requires: a dependency cycle: {cycle_text(cycle)}")


def requirements(name: str, config_dir: str, load=None) -> list:
    """The ServiceConfigs to start for NAME, requirements first, NAME's own config last.
    LOAD(name, config_dir) -> ServiceConfig (default config.load, which raises ConfigError)."""
    if load is None:
        from supervisor.config import load
    from supervisor.config import service_path
    from supervisor.errors import ConfigError

    configs = {name: load(name, config_dir)}
    pending = [name]
    while pending:
        config = configs[pending.pop()]
        for needed in config.requires:
            if needed in configs:
                continue
            if not os.path.lexists(service_path(needed, config_dir)):
                raise ConfigError(f"{config.path}: requires: unknown service {needed!r} "
                                  f"(no {service_path(needed, config_dir)})")
            configs[needed] = load(needed, config_dir)
            pending.append(needed)
    edges = {known: configs[known].requires for known in configs}
    cycle = find_cycle(edges)
    if cycle:
        raise _cycle_error(cycle, configs)
    return [configs[known] for known in post_order(name, edges)]


def mentions_requires(config_dir: str, name: str) -> list[str]:
    """Names of the service files in CONFIG_DIR (other than NAME's) whose bytes contain both
    `requires` and NAME as a string, or any \\u/\\U escape: the only ones that might require it.
    No parsing, no trust checks (the files are loaded properly afterwards); unreadable entries
    are skipped (a load reports them)."""
    # a requirement is a TOML string: the name in quotes; a basic string may spell the key or
    # the name with escapes ("requ\u0069res", "\u0062ase"): such a file is parsed too (rare)
    needles = (b'"' + name.encode() + b'"', b"'" + name.encode() + b"'")
    found = []
    try:
        entries = os.listdir(config_dir)
    except OSError:
        return found
    for entry in entries:
        if not entry.endswith(SUFFIX) or entry == name + SUFFIX or entry.startswith("."):
            continue
        try:
            # a symlinked service file (NAME.toml -> a file elsewhere) is followed: the load that
            # follows judges its trust; the fd's S_ISREG check keeps FIFOs and devices out
            fd = os.open(os.path.join(config_dir, entry), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            import stat

            if not stat.S_ISREG(os.fstat(fd).st_mode):
                continue  # a FIFO or device must not hang or feed a stop
            raw = os.read(fd, MAX_SCAN_BYTES)
        except OSError:
            continue
        finally:
            os.close(fd)
        if b"\\u" in raw or b"\\U" in raw or (b"requires" in raw and (needles[0] in raw or needles[1] in raw)):
            found.append(entry[: -len(SUFFIX)])
    return sorted(found)


def dependents(name: str, config_dir: str, load=None, warn=None, requires: tuple[str, ...] = (),
               on_cycle=None, fallback=None) -> list:
    """The ServiceConfigs that require NAME, directly or not, in stop order (dependents first),
    without NAME itself. A candidate file that does not load is given to FALLBACK(candidate,
    error), which returns the definition to use instead (the one a running supervisor recorded)
    or None; with None it is skipped with WARN(message): a broken unrelated file must not keep a
    service from stopping (FALLBACK may raise to refuse). REQUIRES: NAME's own (so that a cycle
    through NAME is seen too). A cycle is a ConfigError, or, given ON_CYCLE (a stop, which must
    always be possible), ON_CYCLE(message) and the dependents found all the same."""
    if load is None:
        from supervisor.config import load
    from supervisor.errors import SvctlError

    def load_candidate(candidate: str, required: str):
        try:
            return load(candidate, config_dir)
        except SvctlError as exc:
            config = fallback(candidate, exc) if fallback is not None else None
            if config is None and warn is not None:
                warn(f"cannot tell whether {candidate} requires {required}: {exc}")
            return config

    candidates = mentions_requires(config_dir, name)
    if not candidates:
        return []  # the common case: nothing to load
    configs = {}
    for candidate in candidates:
        config = load_candidate(candidate, name)
        if config is not None:
            configs[candidate] = config
    edges = {known: configs[known].requires for known in configs}
    # a transitive dependent's file mentions its own requirement, not NAME: scan for each new name
    frontier = [known for known in configs if name in configs[known].requires]
    seen = set(frontier)
    while frontier:
        current = frontier.pop()
        for candidate in mentions_requires(config_dir, current):
            if candidate == name:
                continue
            if candidate not in configs:
                config = load_candidate(candidate, current)
                if config is None:
                    continue
                configs[candidate] = config
                edges[candidate] = config.requires
            if current in configs[candidate].requires and candidate not in seen:
                seen.add(candidate)
                frontier.append(candidate)
    reverse_edges = reverse({known: edges[known] for known in seen})
    cycle = find_cycle({**{known: edges[known] for known in seen}, name: tuple(requires)})
    if cycle:
        error = _cycle_error(cycle, configs, config_dir)
        if on_cycle is None:
            raise error
        on_cycle(f"{error}; stopping the dependents found all the same")
    return [configs[known] for known in post_order(name, reverse_edges)[:-1]]


def direct_requirement(config, among: set[str]) -> str:
    """The first of CONFIG's requirements in AMONG (for "stopping B first (requires A)")."""
    return next((needed for needed in config.requires if needed in among), config.requires[0])


def closure(names: list[str], config_dir: str, load=None) -> list:
    """The ServiceConfigs of NAMES and everything they require, each after its requirements (the
    start order of `svctl up`); unknown names and cycles raise ConfigError, as requirements() does."""
    if load is None:
        from supervisor.config import load
    cache: dict = {}

    def load_once(name: str, directory: str):
        if name not in cache:
            cache[name] = load(name, directory)
        return cache[name]

    order: dict[str, object] = {}
    for name in names:
        for config in requirements(name, config_dir, load_once):
            order.setdefault(config.name, config)
    return list(order.values())
