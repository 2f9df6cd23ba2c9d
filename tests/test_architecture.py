"""The layout rules of docs/architecture.md that import-linter does not state: no import cycle between any two
modules, a short top level, and one file naming convention inside every method and reward-model folder."""

from __future__ import annotations

from pathlib import Path

import grimp
import pytest

import pluralign

PACKAGE = Path(pluralign.__file__).parent


def module_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Every import cycle: each strongly connected set of two or more modules (Tarjan), and each module that
    imports itself (a cycle of one: three modules did, in a function-level import of their own names)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.find_modules_directly_imported_by(node)):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == node:
                    break
            if len(group) > 1 or node in graph.find_modules_directly_imported_by(node):
                found.append(sorted(group))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_no_import_cycle_between_modules():
    graph = grimp.build_graph("pluralign", cache_dir=None)
    assert module_cycles(graph) == []


def package_graph(graph: grimp.ImportGraph) -> grimp.ImportGraph:
    """The imports between pluralign's top-level packages and modules (``pluralign.data``, ``pluralign.cli``...)."""
    top = grimp.ImportGraph()
    name = lambda m: ".".join(m.split(".")[:2])  # noqa: E731
    for module in graph.modules:
        top.add_module(name(module))
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            if name(module) != name(imported):
                top.add_import(importer=name(module), imported=name(imported))
    return top


def test_no_import_cycle_between_packages():
    """Components included: no two top-level packages import each other, even through others (before the
    components were strictly layered, data, models, objectives, generation, training and preferences
    formed one cycle)."""
    graph = grimp.build_graph("pluralign", cache_dir=None)
    assert module_cycles(package_graph(graph)) == []


def test_every_package_has_its_place_in_the_layers_contract():
    """A new top-level package or module cannot slip past import-linter's layers unchecked."""
    contract = (PACKAGE.parents[1] / ".importlinter").read_text()
    layers = contract.split("[importlinter:contract:layers]")[1].split("[importlinter:contract:")[0]
    listed = {name.strip() for line in layers.split("layers =")[1].splitlines() for name in line.split("|")}
    children = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    children |= {p.stem for p in PACKAGE.glob("*.py") if p.name != "__init__.py"}  # modules too (config.py was in no layer)
    assert "exhaustive = true" in layers and children - listed == set()


def test_cycle_finder_finds_a_cycle():
    graph = grimp.ImportGraph()
    for name in ("p", "p.a", "p.b", "p.c"):
        graph.add_module(name)
    graph.add_import(importer="p.a", imported="p.b")
    graph.add_import(importer="p.b", imported="p.a")
    graph.add_import(importer="p.c", imported="p.a")
    assert module_cycles(graph) == [["p.a", "p.b"]]
    graph.add_import(importer="p.c", imported="p.c")  # a module importing itself is a cycle of one
    assert module_cycles(graph) == [["p.a", "p.b"], ["p.c"]]


def test_top_level_stays_short():
    modules = sorted(p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
    assert len(modules) <= 12, modules


@pytest.mark.parametrize("family", ["methods", "reward_models"])
def test_one_file_naming_convention_per_folder(family):
    for folder in sorted(p for p in (PACKAGE / family).iterdir() if (p / "__init__.py").is_file()):
        names = {p.name for p in folder.glob("*.py")}
        assert {"config.py", "trainer.py"} <= names, folder.name
        assert not names & {"train.py", "training.py", "margin_trainer.py", "demo.py"}, folder.name
        if family == "methods":
            assert {"policy.py", "cli.py"} <= names, folder.name
        else:  # the scorer lives below the objectives, one module per type, which the policy table names
            assert (PACKAGE / "objectives" / "learned" / f"{folder.name}.py").is_file(), folder.name


def test_every_method_policy_and_reward_model_scorer_is_in_its_static_table():
    """load_policy and load_reward_model dispatch through static imports (which lint-imports checks): each
    method folder and each reward-model type must be reachable through them."""
    from pluralign.objectives.trained import REWARD_MODEL_TYPES
    from pluralign.policies import POLICY_METHODS, policy_loader

    methods = {p.name for p in (PACKAGE / "methods").iterdir() if (p / "policy.py").is_file()}
    assert set(POLICY_METHODS) == methods
    for m in POLICY_METHODS:
        assert policy_loader(m).__module__ == f"pluralign.methods.{m}.policy"
    types = {p.name for p in (PACKAGE / "reward_models").iterdir() if (p / "trainer.py").is_file()}
    assert set(REWARD_MODEL_TYPES) == types
    assert {p.stem for p in (PACKAGE / "objectives" / "learned").glob("*.py")} - {"__init__"} == types


def test_top_level_exports_resolve_to_their_components():
    import numpy as np

    from pluralign.objectives.trained import load_reward_model
    from pluralign.policies import load_policy
    from pluralign.preferences.weights import Preference

    assert pluralign.load_policy is load_policy and pluralign.load_reward_model is load_reward_model
    assert pluralign.Preference is Preference
    # METHODS.md §1 linf: f_i = lo_i + min(1, K w_i) (hi_i - lo_i)
    assert np.allclose(pluralign.preference_to_rewards([0.75, 0.25], [0.0, -1.0], [2.0, 1.0]), [2.0, 0.0])
    with pytest.raises(AttributeError):
        pluralign.no_such_export  # noqa: B018


def test_every_benchmark_script_silences_library_progress_bars():
    """What a user sees from a benchmark is pluralign's own progress: every script that runs as a program
    calls ``quiet_libraries`` (datasets' map bars once filled the SPO benchmark's log)."""
    root = Path(__file__).resolve().parents[1] / "benchmarks"
    loud = [
        p.name
        for p in sorted(root.glob("*.py"))
        if '__name__ == "__main__"' in p.read_text() and "quiet_libraries()" not in p.read_text()
    ]
    assert not loud, f"benchmarks without quiet_libraries(): {loud}"


# Imports built at run time, which import-linter cannot follow. None of them may reach a pluralign module:
# every dispatcher (commands, train methods, policies, reward-model scorers, objective sources, lazy
# exports) is a static table of plain imports. The two calls left import what the user or the machine names.
DYNAMIC_IMPORT_CALLS = {"import_module", "__import__", "find_spec", "iter_modules", "spec_from_file_location"}
ALLOWED_DYNAMIC_IMPORTS = {
    ("objectives/python.py", "import_module"),  # the user's own ``module:function`` objective
    ("generation/vllm.py", "find_spec"),  # is the optional vllm package installed?
}


def dynamic_imports(root: Path) -> set[tuple[str, str]]:
    """(file, call) for every run-time import call in the package's source."""
    import ast

    found = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                fn = node.func
                name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", None)
                if name in DYNAMIC_IMPORT_CALLS:
                    found.add((str(path.relative_to(root)), name))
    return found


def test_no_import_is_hidden_from_the_contracts(tmp_path):
    """No pluralign module is imported at run time by a name import-linter cannot see."""
    assert dynamic_imports(PACKAGE) == ALLOWED_DYNAMIC_IMPORTS
    vllm = (PACKAGE / "generation" / "vllm.py").read_text()
    assert 'find_spec("vllm")' in vllm and vllm.count("find_spec(") == 1
    probe = tmp_path / "probe.py"  # the scan finds a hidden import
    probe.write_text('import importlib\nimportlib.import_module(f"pluralign.methods.{name}.cli")\n')
    assert dynamic_imports(tmp_path) == {("probe.py", "import_module")}


def test_every_command_and_training_method_is_in_its_static_table():
    """``pluralign <command>`` and ``pluralign train <method>`` dispatch through plain imports: every command
    module and every method folder with a cli.py is reachable through them."""
    from pluralign.cli import COMMANDS, command
    from pluralign.commands.train import METHODS, method_cli

    for name in COMMANDS:
        assert command(name).__name__ == f"pluralign.commands.{name}"
    folders = {p.name.replace("_", "-") for p in (PACKAGE / "methods").iterdir() if (p / "cli.py").is_file()}
    assert set(METHODS) == folders | {"reward-model"}
    for name in METHODS:
        assert callable(method_cli(name).run)


def test_lint_imports_prints_every_contract_kept_on_one_line():
    """Each contract's status is on its own line as ``<name> KEPT``: a name too long for lint-imports' 80
    columns wraps, and a reader of the output (or a script) then sees a contract line without KEPT."""
    import configparser
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    config = configparser.ConfigParser()
    config.read(root / ".importlinter")
    names = [config[s]["name"] for s in config.sections() if s.startswith("importlinter:contract:")]
    assert names and all(len(n) <= 60 for n in names), [n for n in names if len(n) > 60]
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint), "--no-cache"], cwd=root, capture_output=True, text=True, env={**os.environ, "COLUMNS": "80"}
    )
    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stdout[-2000:]
    for name in names:
        assert f"{name} KEPT" in lines, name
    assert f"Contracts: {len(names)} kept, 0 broken." in lines
    # the layers and the methods' independence are printed last: the output's tail always names them
    tail = [line for line in lines if line.endswith((" KEPT", " BROKEN"))][-2:]
    assert tail == ["Methods never import each other KEPT", "Layers, top to bottom KEPT"], tail


# One violating edit (or pair of edits, for a cycle) per contract: each must turn its contract BROKEN, so no
# contract in .importlinter can pass because it checks nothing. A new contract needs its probe here.
CONTRACT_PROBES: dict[str, list[tuple[str, str]]] = {
    "reward-models-independent": [("reward_models/btl/__init__.py", "import pluralign.reward_models.npbtl")],
    "reward-model-scorers-independent": [("objectives/learned/btl.py", "import pluralign.objectives.learned.npbtl")],
    "worlds-independent": [("worlds/images/__init__.py", "import pluralign.worlds.reviews")],
    "cli-through-commands": [("cli.py", "import pluralign.methods")],
    "acyclic": [("methods/ric/config.py", "import pluralign.methods.ric.policy"),
                ("methods/ric/policy.py", "import pluralign.methods.ric.config")],  # fmt: skip
    "methods-independent": [("methods/ric/__init__.py", "import pluralign.methods.dpo")],
    "layers": [("data/jsonl.py", "import pluralign.evaluation")],
}


def _contracts() -> dict[str, str]:
    import configparser

    config = configparser.ConfigParser()
    config.read(Path(__file__).resolve().parents[1] / ".importlinter")
    prefix = "importlinter:contract:"
    return {s[len(prefix) :]: config[s]["name"] for s in config.sections() if s.startswith(prefix)}


def _lint_imports(package_parent: Path | None) -> tuple[int, list[str]]:
    """lint-imports with this checkout's .importlinter on the copy of pluralign under ``package_parent``
    (``None``: run as scripts/test.sh runs it, on whatever pluralign the environment finds)."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint), "--no-cache", "--config", str(root / ".importlinter")],
        cwd=package_parent or root, capture_output=True, text=True,
        env={**os.environ, "COLUMNS": "80"} | ({"PYTHONPATH": str(package_parent)} if package_parent else {}),
    )  # fmt: skip
    return result.returncode, result.stdout.splitlines()


def test_every_contract_has_a_probe():
    assert set(CONTRACT_PROBES) == set(_contracts())


@pytest.mark.parametrize("contract", sorted(CONTRACT_PROBES))
def test_each_contract_breaks_on_a_violating_import(contract, tmp_path):
    import shutil

    shutil.copytree(PACKAGE, tmp_path / "pluralign", ignore=shutil.ignore_patterns("__pycache__"))
    code, lines = _lint_imports(tmp_path)
    assert code == 0 and f"{_contracts()[contract]} KEPT" in lines  # the unedited copy is clean
    for rel, line in CONTRACT_PROBES[contract]:
        path = tmp_path / "pluralign" / rel
        path.write_text(path.read_text() + f"\n{line}  # probe\n")
    code, lines = _lint_imports(tmp_path)
    assert code == 1 and f"{_contracts()[contract]} BROKEN" in lines, lines[-12:]


def test_lint_imports_reads_this_checkout():
    """lint-imports finds pluralign through the environment: it must analyse this checkout's files (an
    installed copy of another version would be checked instead, and pass or fail for the wrong code)."""
    code, lines = _lint_imports(None)
    files = sum(1 for _ in (Path(__file__).resolve().parents[1] / "src" / "pluralign").rglob("*.py"))
    assert code == 0 and any(line.startswith(f"Analyzed {files} files,") for line in lines), lines[:8]
