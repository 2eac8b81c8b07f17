"""The pure core loads no heavy standard modules: dataclasses alone cost the supervisor's start ~30 ms
and ~2.5 MB (inspect, ast), typing ~5 ms and ~1.5 MB (issue 15)."""

import ast
import subprocess
import sys

HEAVY = ("dataclasses", "typing", "inspect", "ast")


def test_core_imports_neither_dataclasses_nor_typing():
    code = ("import supervisor.core.events, supervisor.core.machine, supervisor.core.backoff, "
            "supervisor.core.liveness; import sys; print(sorted(sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    modules = set(ast.literal_eval(loaded))
    assert "supervisor.core.machine" in modules
    assert not modules & set(HEAVY), f"the core loads {sorted(modules & set(HEAVY))}"
