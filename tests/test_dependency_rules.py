"""DESIGN.md's dependency rules, checked on the source and on a fresh interpreter."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.mark.unit
def test_core_imports_no_stage_and_no_torch_at_module_level() -> None:
    for path in (ROOT / "shiftwatch").rglob("*.py"):
        bad = module_level_imports(path) & (STAGES | {"torch"})
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)} at module level"


@pytest.mark.unit
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


@pytest.mark.integration
def test_importing_the_core_and_cli_loads_no_torch_and_no_stage() -> None:
    code = (
        "import sys, shiftwatch, shiftwatch.cli, shiftwatch.data, shiftwatch.features, "
        "shiftwatch.metrics, shiftwatch.tokenizer, shiftwatch.bundle, shiftwatch.names\n"
        f"loaded = {{m.split('.')[0] for m in sys.modules}} & set({sorted(STAGES | {'torch'})!r})\n"
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# What the images run: the service (the Bento's service) and the monitor (its image's entry).
IMAGE_ENTRIES = {"service": "service.service", "monitor": "monitoring.__main__"}
FIRST_PARTY = STAGES | {"shiftwatch"}
# Never in an image: the training stack and the CLI; the serving image carries no analytics.
NEVER_IN_IMAGES = {"torch", "training", "exports", "typer", "shiftwatch.cli", "shiftwatch.replay"}
NOT_IN_SERVING = {"pandas", "pyarrow", "evidently", "scipy", "sklearn", "plotly", "matplotlib"}


def module_file(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imported_names(module: str, path: Path) -> set[str]:
    """Every module `path` imports, in any function or branch, with its parent packages."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                prefix = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{prefix}.{node.module}" if node.module else prefix
            else:
                base = node.module or ""
            names.add(base)
            names |= {f"{base}.{alias.name}" for alias in node.names}  # submodules, if any
    parents = {".".join(n.split(".")[:i]) for n in names for i in range(1, n.count(".") + 1)}
    return names | parents


def reachable(root: str) -> tuple[set[str], set[str]]:
    """First-party modules (by file) and third-party top-level packages `root` can import,
    following every import statement, function-level and conditional ones included."""
    first_party, third_party, todo = set(), set(), [root]
    while todo:
        module = todo.pop()
        if module in first_party:
            continue
        if module.split(".")[0] not in FIRST_PARTY:
            third_party.add(module.split(".")[0])
            continue
        path = module_file(module)
        if path is None:  # a name imported from a module, not a module
            continue
        first_party.add(module)
        todo.extend(imported_names(module, path))
    return first_party, third_party


def forbidden(first_party: set[str], third_party: set[str], names: set[str]) -> set[str]:
    reached = first_party | third_party
    return {m for m in reached for n in names if m == n or m.startswith(n + ".")}


@pytest.mark.unit
def test_the_images_never_reach_training_torch_or_the_cli() -> None:
    for image, entry in IMAGE_ENTRIES.items():
        first_party, third_party = reachable(entry)
        assert not forbidden(first_party, third_party, NEVER_IN_IMAGES), image


@pytest.mark.unit
def test_the_serving_image_reaches_no_analytics_stack() -> None:
    first_party, third_party = reachable(IMAGE_ENTRIES["service"])
    assert not forbidden(first_party, third_party, NOT_IN_SERVING)
    assert {"onnxruntime", "tokenizers", "bentoml"} <= third_party  # the walk does walk


@pytest.mark.unit
def test_the_bento_holds_every_module_the_images_run() -> None:
    """bentofile.yaml's include/exclude, matched by BentoML's own path spec, against every
    module file the two entries reach (main once shipped a monitor whose CLI was left out)."""
    import yaml
    from bentoml._internal.bento.build_config import BentoPathSpec

    config = yaml.safe_load((ROOT / "bentofile.yaml").read_text())
    spec = BentoPathSpec(config["include"], config.get("exclude", []), str(ROOT))
    for image, entry in IMAGE_ENTRIES.items():
        first_party, _ = reachable(entry)
        files = {str(module_file(m).relative_to(ROOT)) for m in first_party}
        assert "monitoring/__main__.py" in files or image == "service"
        missing = sorted(f for f in files if not spec.includes(f))
        assert not missing, f"the {image} image runs {missing}, which the Bento leaves out"
