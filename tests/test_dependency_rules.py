"""DESIGN.md's layers, checked on the source: every import statement, function-level and
conditional ones included (docs/architecture.md draws them).

    orchestration/                 the CLI, replay, demo: may import everything below
    training/  exports/  service/  monitoring/   the stages: only the contracts, and
                                                 exports -> training
    shiftwatch/                    the contracts: nothing above
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONTRACTS = "shiftwatch"
STAGES = {"training", "exports", "service", "monitoring"}
ORCHESTRATION = "orchestration"
LAYERS = {CONTRACTS, ORCHESTRATION} | STAGES
STAGE_ARROWS = {("exports", "training")}  # the only arrow from one stage to another


def modules() -> dict[str, Path]:
    """Every first-party module, by dotted name."""
    found = {}
    for package in LAYERS:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def first_party_arrows() -> dict[str, set[str]]:
    """module -> the first-party modules it imports (a name imported from a package that is
    not a module of its own counts as the package)."""
    known = modules()
    arrows = {}
    for module, path in known.items():
        targets = set()
        for name in imported_names(module, path):
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module and not module.startswith(name + "."):
                targets.add(name)
        arrows[module] = targets
    return arrows


def layer(module: str) -> str:
    return module.split(".")[0]


@pytest.mark.unit
def test_every_arrow_points_down_the_layers() -> None:
    wrong = []
    for module, targets in first_party_arrows().items():
        for target in targets:
            source, goal = layer(module), layer(target)
            allowed = (
                goal == source
                or goal == CONTRACTS
                or source == ORCHESTRATION
                or (source, goal) in STAGE_ARROWS
            )
            if not allowed:
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports against the layers:\n" + "\n".join(sorted(wrong))


@pytest.mark.unit
def test_the_contracts_import_neither_torch_nor_a_cli_framework() -> None:
    for module, path in modules().items():
        if layer(module) == CONTRACTS:
            imported = {n.split(".")[0] for n in imported_names(module, path)}
            assert not imported & {"torch", "typer", "click"}, module


def cycle(arrows: dict[str, set[str]]) -> list[str]:
    """One import cycle among the modules, as a path back to its start; [] when none."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(module: str) -> list[str]:
        state[module] = 1
        path.append(module)
        for target in sorted(arrows.get(module, ())):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[module] = 2
        return []

    for module in sorted(arrows):
        if module not in state and (found := visit(module)):
            return found
    return []


@pytest.mark.unit
def test_no_import_cycle() -> None:
    assert cycle(first_party_arrows()) == []


@pytest.mark.unit
def test_the_cycle_check_finds_a_cycle() -> None:
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]


@pytest.mark.integration
def test_importing_the_contracts_and_the_cli_loads_no_torch_and_no_stage() -> None:
    code = (
        "import sys, shiftwatch, orchestration.cli, shiftwatch.data, shiftwatch.features, "
        "shiftwatch.classification, shiftwatch.tokenizer, shiftwatch.bundle, shiftwatch.names\n"
        f"loaded = {{m.split('.')[0] for m in sys.modules}} & set({sorted(STAGES | {'torch'})!r})\n"
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# What the images run: the service (the Bento's service) and the monitor (its image's entry).
IMAGE_ENTRIES = {"service": "service.service", "monitor": "monitoring.__main__"}
FIRST_PARTY = LAYERS
# Never in an image: the training stack and the CLI; the serving image carries no analytics.
NEVER_IN_IMAGES = {
    "torch",
    "training",
    "exports",
    "typer",
    "orchestration.cli",
    "orchestration.replay",
}
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
