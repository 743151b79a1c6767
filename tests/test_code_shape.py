"""bench/code_shape.py on a tiny synthetic package: sizes, in-function imports, cycles."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "code_shape.py"

LONG_BODY = "".join(f"    x{i} = {i}\n" for i in range(69)) + "    return x0\n"
MODULES = {
    "__init__.py": "",
    # 401 lines: a 71-line function, a module-level import of b, then padding.
    "a.py": "from gliomaseg import b\n\n\ndef long():\n" + LONG_BODY + "# pad\n" * 327,
    # The in-function (relative) import closes the cycle a -> b -> a; json is not ours.
    "b.py": "def lazy():\n    import json\n\n    from .a import long\n\n    return long()\n",
    "sub/__init__.py": "",
    # A module-level cycle; `from gliomaseg.sub import q` names the submodule q.
    "sub/p.py": "from gliomaseg.sub import q\n\nTHING = 1\n",
    "sub/q.py": "from gliomaseg.sub.p import THING\n",
}


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_code_shape", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_code_shape_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "gliomaseg"
    for name, text in MODULES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)

    assert _load().main(["--root", str(root)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"benchmark", "date", "machine", "python", "git_commit"} <= set(report)
    shape = report["results"]

    assert shape["modules"] == 6 and shape["top_level_modules"] == 3
    assert shape["largest_module"] == {"file": "gliomaseg/a.py", "lines": 401}
    assert shape["modules_over_400_lines"]["count"] == 1
    (longest, *_) = shape["longest_10_functions"]
    assert longest == {"name": "long", "file": "gliomaseg/a.py:4", "lines": 71}
    assert shape["functions_over_60_lines"]["count"] == 1
    assert shape["in_function_imports"] == {"count": 1, "per_module": {"gliomaseg.b": 1}}

    every = shape["import_cycles_all_imports"]
    assert every["count"] == 2
    modules = sorted(c["modules"] for c in every["components"])
    assert modules == [["gliomaseg.a", "gliomaseg.b"], ["gliomaseg.sub.p", "gliomaseg.sub.q"]]
    module_level = shape["import_cycles_module_level"]
    assert [c["modules"] for c in module_level["components"]] == [
        ["gliomaseg.sub.p", "gliomaseg.sub.q"]
    ]
    assert module_level["components"][0]["example_cycle"] == (
        "gliomaseg.sub.p -> gliomaseg.sub.q -> gliomaseg.sub.p"
    )


def test_code_shape_refuses_a_missing_root(tmp_path: Path) -> None:
    assert _load().main(["--root", str(tmp_path / "absent")]) == 2
