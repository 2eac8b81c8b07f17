"""JupyterHub knowledge: ``svctl init jupyterhub`` (scaffold), the ``jupyterhub`` preset's
orphaned-proxy cleanup (preset), and ``svctl check``'s doctor (doctor, probe).

The JupyterHub behaviour behind every rule is described in docs/jupyterhub.md; the config file is only ever parsed
(pyconfig), never executed by svctl itself.
"""
