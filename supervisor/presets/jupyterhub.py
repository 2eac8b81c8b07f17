"""The ``jupyterhub`` preset: what a JupyterHub service needs beyond a plain one.

Each method imports its part of supervisor/jupyterhub/ when called: the supervisor of a hub pays
only for the clean-up at each start, ``svctl check`` only for the doctor.
"""

from __future__ import annotations

from supervisor.presets import Preset


def _before_start(config) -> tuple[list[str], str | None]:
    from supervisor.jupyterhub.preset import before_start

    return before_start(config)


class JupyterHubPreset(Preset):
    name = "jupyterhub"
    scaffolds = True

    def before_start(self, config) -> tuple[list[str], str | None]:
        """The orphaned proxy a crashed hub left behind is stopped; another hub holding the hub's
        ports refuses the start (supervisor/jupyterhub/preset.py). In a child (unix/apart.py): it
        needs psutil and the config parser (ast), which the hub's supervisor would keep for good."""
        from supervisor.unix.apart import run_apart

        lines, refusal = run_apart(_before_start, config)
        return list(lines), refusal

    def keeps_escapee(self, pid: int) -> bool:
        """Users' servers outlive a hub restart (svctl's config has ``cleanup_servers = False``):
        told by their environment (supervisor/unix/escapees.py is_user_server)."""
        from supervisor.unix.escapees import is_user_server

        return is_user_server(pid)

    def doctor(self, config) -> list:
        """The hub's config read, the facts gathered and judged (supervisor/jupyterhub/probe.py)."""
        from supervisor.jupyterhub.probe import run_doctor

        return run_doctor(config)

    def init(self, context, options) -> int:
        """``svctl init jupyterhub``: the hub, its proxy, certificates, boot files
        (supervisor/commands/init.py over supervisor/jupyterhub/scaffold.py)."""
        from supervisor.commands.init import init_jupyterhub

        return init_jupyterhub(context, options)
