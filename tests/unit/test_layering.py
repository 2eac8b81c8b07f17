"""The core is pure: no module under supervisor/core imports anything that touches the OS."""

import ast
import subprocess
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "supervisor" / "core"
FORBIDDEN = {"os", "sys", "time", "signal", "subprocess", "socket", "select", "selectors", "threading",
             "psutil", "watchdog", "daemon", "lockfile", "structlog", "fcntl", "ctypes", "supervisor.unix",
             "supervisor.runtime", "supervisor.cli", "pathlib", "shutil", "tempfile", "asyncio"}


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_core_imports_no_os_modules():
    offenders = {}
    for path in CORE.glob("*.py"):
        bad = {name for name in imported_modules(path)
               if name in FORBIDDEN or any(name.startswith(f"{f}.") for f in FORBIDDEN)}
        if bad:
            offenders[path.name] = sorted(bad)
    assert not offenders, f"supervisor/core must stay pure: {offenders}"


def test_status_path_imports_no_heavy_modules():
    """`svctl status` is run by monitoring every few seconds: it must not pay for psutil & co."""
    code = ("import sys; from supervisor.commands import status; "
            "print(sorted(m for m in ('psutil','daemon','watchdog','structlog','lockfile') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_module_sizes_stay_readable():
    root = CORE.parent
    big = {str(p.relative_to(root)): n for p in root.rglob("*.py") if (n := len(p.read_text().splitlines())) > 450}
    assert not big, f"modules over 450 lines: {big}"
