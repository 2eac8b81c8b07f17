"""JupyterHub knowledge: ``svctl init jupyterhub`` (scaffold), the ``jupyterhub`` preset's
orphaned-proxy cleanup (preset), and ``svctl check``'s doctor (doctor, probe).

Facts behind every rule are in spec/jupyterhub-facts.md; the config file is only ever parsed
(pyconfig), never executed by svctl itself.
"""
