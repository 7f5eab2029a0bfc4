"""DESIGN.md's dependency rules, checked on the source and on a fresh interpreter."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = {"training", "exports", "service", "monitoring"}


def module_level_imports(path: Path) -> set[str]:
    """Top-level package names imported outside any function body."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_core_imports_no_stage_and_no_torch_at_module_level() -> None:
    for path in (ROOT / "shiftwatch").rglob("*.py"):
        bad = module_level_imports(path) & (STAGES | {"torch"})
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)} at module level"


def test_serving_stages_never_import_torch_or_training() -> None:
    for stage in ("service", "monitoring"):
        for path in (ROOT / stage).rglob("*.py") if (ROOT / stage).exists() else []:
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    names = (
                        [a.name for a in node.names]
                        if isinstance(node, ast.Import)
                        else [node.module or ""]
                    )
                    assert not any(n.split(".")[0] in {"torch", "training"} for n in names), path


def test_importing_the_core_and_cli_loads_no_torch_and_no_stage() -> None:
    code = (
        "import sys, shiftwatch, shiftwatch.cli, shiftwatch.data, shiftwatch.features, "
        "shiftwatch.metrics, shiftwatch.tokenizer, shiftwatch.bundle, shiftwatch.names\n"
        f"loaded = {{m.split('.')[0] for m in sys.modules}} & set({sorted(STAGES | {'torch'})!r})\n"
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
