"""Presets: what a kind of service needs beyond a plain one (``preset = "NAME"`` in its file).

A preset is a Preset object; a service without one gets the base class, which does nothing, so the
supervisor, ``svctl check`` and ``svctl init`` ask the preset instead of comparing names:

- ``before_start(config)``: clean-up before each start (what a crash left behind), and a refusal
  when a start would only fail (the supervisor logs each line as "preset_cleanup" and fails the
  start with the refusal);
- ``keeps_escapee(pid)``: an escapee (supervisor/unix/escapees.py) kept on restarts and plain
  stops, on purpose (JupyterHub users' servers); ``stop-all`` takes it anyway;
- ``doctor(config)``: the findings ``svctl check`` adds for this kind of service;
- ``scaffolds`` / ``init(context, options)``: ``svctl init NAME`` writes a working setup.

This module is imported by the supervisor at every start, by ``svctl check`` and by config.py (for
NAMES): it imports nothing, and a preset's module is imported only when asked for (preset_for).

What a newcomer touches to add a preset:
1. one module in this package, NAME.py (as jupyterhub.py), with ``class NamePreset(Preset)``
   overriding what the kind of service needs; it imports its heavy parts inside its methods,
   never at module level;
2. one line in REGISTRY below: ``"NAME": ("supervisor.presets.NAME", "NamePreset"),``.
config.py then accepts ``preset = "NAME"`` (its PRESETS is NAMES), and the rest follows.
"""

from __future__ import annotations

# preset name -> (module, class): imported only by preset_for, so that listing the names is free
REGISTRY: dict[str, tuple[str, str]] = {
    "jupyterhub": ("supervisor.presets.jupyterhub", "JupyterHubPreset"),
}
NAMES: tuple[str, ...] = tuple(REGISTRY)


class Preset:
    """A plain service: no preset. Subclasses add what a kind of service needs."""

    name = ""
    scaffolds = False  # whether `svctl init NAME` exists for it (then init() is overridden)

    def before_start(self, config) -> tuple[list[str], str | None]:
        """Before each start: (clean-up lines, each logged as "preset_cleanup"; a refusal, the
        reason the start must fail with, or None to go on)."""
        return [], None

    def keeps_escapee(self, pid: int) -> bool:
        """Whether escapee PID (our un-reaped child) is kept on restarts and plain stops (never on a
        stop-all)."""
        return False

    def doctor(self, config) -> list:
        """The findings (supervisor.jupyterhub.doctor.Finding) `svctl check` adds to its own."""
        return []

    def init(self, context, options) -> int:
        """`svctl init NAME`: OPTIONS are the CLI's parsed `init` options; write the files, report
        them, return the exit code. Only called when `scaffolds` is True."""
        raise NotImplementedError(f"svctl init {self.name or '(no preset)'}")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name or '(none)'}>"


def preset_for(name: str | None) -> Preset:
    """The preset called NAME; a plain Preset for None, "" or a name nobody registered (config.py
    refuses those, so only a caller's slip can pass one)."""
    entry = REGISTRY.get(name) if name else None
    if entry is None:
        return Preset()
    from importlib import import_module

    module, class_name = entry
    return getattr(import_module(module), class_name)()


def scaffolding() -> tuple[str, ...]:
    """The names `svctl init NAME` takes."""
    return tuple(name for name in NAMES if preset_for(name).scaffolds)
