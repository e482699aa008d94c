"""Every arrow points one way (DESIGN.md): the core imports nothing of ours, the bundle tools only the core,
the components (agent, trainer, flowmeter, trafficlab) the core and the bundle tools, and no shipped package
imports the trainer. Walks every import statement, lazy ones inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CORE, BUNDLE = "ids_core", "firmware_bundle"
COMPONENTS = ("agent", "trainer", "flowmeter", "trafficlab", "demo")
OURS = (CORE, BUNDLE, *COMPONENTS)
ALLOWED = {CORE: set(), BUNDLE: {CORE}} | {c: {CORE, BUNDLE} for c in COMPONENTS}


def imports_of(path: Path) -> set[tuple[str, int]]:
    """Top-level packages of ours that ``path`` imports, with the line."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {(n.split(".")[0], node.lineno) for n in names if n.split(".")[0] in OURS}
    return found


def edges() -> list[tuple[str, str, str]]:
    """(importing package, imported package, where) for every import of another package of ours."""
    out = []
    for pkg in OURS:
        for path in sorted((REPO / pkg).rglob("*.py")):
            for target, line in imports_of(path):
                if target != pkg:
                    out.append((pkg, target, f"{path.relative_to(REPO)}:{line}"))
    return out


def test_every_import_points_one_way():
    upward = [f"{where}: {src} imports {dst}" for src, dst, where in edges() if dst not in ALLOWED[src]]
    assert not upward, "imports against the dependency rule:\n" + "\n".join(upward)


def test_the_walk_sees_imports(tmp_path):
    """The checker itself: a lazy import inside a function is found (so the test above can fail)."""
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from agent.daemon import main\n    import trainer.cli\n")
    assert {name for name, _ in imports_of(probe)} == {"agent", "trainer"}


@pytest.mark.parametrize("pkg", OURS)
def test_package_exists(pkg):
    assert (REPO / pkg / "__init__.py").exists() or (pkg == "trafficlab" and not (REPO / pkg).exists())
