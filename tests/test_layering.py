"""The layering rule: `format`, `runtime` and `hardware` read the file and import neither torch nor training
code, and the commands built on them (run, simulate, costs, formats, subproblems, data info, --help) work
where torch cannot be imported, printing what they print with torch."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from conftest import LIST_HEAVY, TORCH_MODULES, fixture_file, without_torch

import deepcompress
from deepcompress.cli import main

PACKAGE = Path(deepcompress.__file__).parent
FORBIDDEN = ("torch", *TORCH_MODULES)
READERS = ("format", "runtime", "hardware")
# Modules whose module-level imports must stay light, so that building the command line needs no torch;
# the training commands import their heavy parts when they run.
LIGHT = ("__init__.py", "cli.py", "cli_compress.py", "cli_data.py", "cli_hardware.py", "cli_parallel.py",
         "cli_runtime.py", "cli_train.py", "data.py", "errors.py", "fetch.py", "numerics.py", "atomic.py",
         "recipes/__init__.py")
# The runtime's dense convolution calls torch when it is installed (faster); without it, numpy.
OPTIONAL_TORCH = {"runtime/sparse_conv.py"}


def _imports(path: Path) -> list[tuple[str, bool, bool]]:
    """(module imported, at module level, inside a try that catches ImportError) for each import in
    `path` that can run (not those under `if TYPE_CHECKING:`); relative imports resolved, `from X import
    name` also listed as X.name."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    package = parts if path.name == "__init__.py" else parts[:-1]
    found = []

    def visit(node, top: bool, guarded: bool) -> None:
        if isinstance(node, ast.Import):
            found.extend((alias.name, top, guarded) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1] if node.level else ())
            module = ".".join(filter(None, (base, node.module)))
            found.append((module, top, guarded))
            found.extend((f"{module}.{alias.name}", top, guarded) for alias in node.names)
        if isinstance(node, ast.Try):
            catches = {ast.unparse(h.type) for h in node.handlers if h.type is not None}
            guarded = guarded or bool(catches & {"ImportError", "ModuleNotFoundError"})
        top = top and not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            node = ast.Module(node.orelse, [])
        for child in ast.iter_child_nodes(node):
            visit(child, top, guarded)

    visit(ast.parse(path.read_text(), str(path)), True, False)
    return found


def _forbidden(name: str) -> bool:
    return any(name == f or name.startswith(f + ".") for f in FORBIDDEN)


@pytest.mark.parametrize("part", READERS)
def test_readers_import_neither_torch_nor_training_code(part):
    bad = []
    for path in sorted((PACKAGE / part).rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        for name, _, guarded in _imports(path):
            optional = rel in OPTIONAL_TORCH and name == "torch" and guarded
            if _forbidden(name) and not optional:
                bad.append(f"{rel}: {name}")
    assert bad == []


def test_command_line_modules_import_heavy_parts_only_when_a_command_runs():
    bad = [f"{rel}: {name}" for rel in LIGHT for name, top, _ in _imports(PACKAGE / rel)
           if top and _forbidden(name)]
    assert bad == []


def test_the_import_checker_sees_what_it_must():
    """The checker itself, on the real modules: it finds cli_train's lazy torch import inside a function,
    sparse_conv's guarded one, and resolves relative imports."""
    train_imports = _imports(PACKAGE / "cli_train.py")
    assert ("torch", False, False) in train_imports and ("deepcompress.train.train", False, False) in train_imports
    assert ("deepcompress.errors.UserError", True, False) in train_imports
    assert ("torch", False, True) in _imports(PACKAGE / "runtime/sparse_conv.py")
    assert ("deepcompress.format", True, False) in _imports(PACKAGE / "runtime/model.py")
    assert "torch" not in {name for name, _, _ in _imports(PACKAGE / "data.py")}  # under TYPE_CHECKING only


def test_readers_import_and_run_without_torch():
    path, made = fixture_file("lenet-300-100")
    code = ("from deepcompress import format, hardware, runtime\n"
            "from deepcompress.data import load_arrays\n"
            "from deepcompress.hardware.model_sim import simulate_model\n"
            "ds = load_arrays('mnist')\n"
            "wrong = int((runtime.load(sys.argv[1]).predict(ds.test_x) != ds.test_y).sum())\n"
            "records = simulate_model(sys.argv[1], 'eie')\n"
            + LIST_HEAVY +
            "print(json.dumps({'wrong': wrong, 'layers': len(format.read(sys.argv[1])[0]), 'heavy': heavy,\n"
            "                  'eie_total_us': records[-1]['time_us']}))\n")
    got = json.loads(without_torch("import json\n" + code, str(path)).stdout)
    assert got["heavy"] == [] and got["wrong"] == made["test_wrong"] and got["layers"] == len(made["layers"])
    assert got["eie_total_us"] > 0


def _commands(path: str) -> list[list[str]]:
    return [["--help"], ["run", "--help"], ["train", "--help"], ["formats"], ["formats", "--json", "Q7.8"],
            ["costs"], ["costs", "--json"], ["simulate", "--paper"], ["simulate", "--paper", "--arch", "gpu"],
            ["simulate", path], ["simulate", path, "--arch", "cpu", "--json"], ["subproblems", "--net", "alexnet"],
            ["data", "info", "mnist"],
            ["run", path, "--data", "mnist", "--json", "--latency-images", "20", "--batch", "500"]]


RUN_ALL = """import contextlib, io, json, sys
from deepcompress.cli import main

outputs = []
for argv in json.loads(sys.argv[1]):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        try:
            code = main(argv)
        except SystemExit as exc:  # --help
            code = exc.code
    outputs.append([code, buf.getvalue()])
""" + LIST_HEAVY + "print(json.dumps({'outputs': outputs, 'heavy': heavy}))\n"


def _comparable(argv: list[str], out: str) -> str:
    """The output, less what varies from run to run (`run`'s timings)."""
    if argv[0] != "run" or "--json" not in argv:
        return out
    res = json.loads(out)
    return json.dumps([res["test"]["wrong"], res["test"]["error"], res["layers"], res["layers_batchN"],
                       res["batch1_agrees_with_batchN"]])


def test_commands_run_without_torch_and_print_what_they_print_with_it(capsys, keep_torch_threads):
    path = str(fixture_file("lenet-300-100")[0])
    commands = _commands(path)
    got = json.loads(without_torch(RUN_ALL, json.dumps(commands)).stdout)
    assert got["heavy"] == []
    for argv, (code, out) in zip(commands, got["outputs"]):
        try:
            want_code = main(argv)
        except SystemExit as exc:
            want_code = exc.code
        want = capsys.readouterr().out
        assert (code, _comparable(argv, out)) == (want_code, _comparable(argv, want)), argv
        assert code == 0 and out, argv
