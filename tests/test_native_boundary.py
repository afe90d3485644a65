"""pydetect.ops is the one layer of Python that touches the C++ extensions.

Every module outside ``pydetect/ops/`` reaches ``pydetect._C`` / ``pydetect._C_cuda``
through the wrappers there (which convert dtypes and layouts once and pass the native
enums); ``pydetect/__init__.py`` may import ``_C`` only to report a missing build.
"""

import ast
import os

import pydetect

PACKAGE = os.path.dirname(os.path.abspath(pydetect.__file__))
NATIVE = {"_C", "_C_cuda"}
ALLOWED = {"__init__.py"}  # relative to the package; plus everything under ops/


def _native_uses(path):
    """(line, what) of each import of, or attribute access to, a native module in a file."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names
                      if a.name.split(".")[0] == "pydetect" and NATIVE & set(a.name.split(".")[1:2])]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            parts = module.split(".")
            in_package = node.level > 0 or parts[0] == "pydetect"
            if in_package and (NATIVE & set(parts[1 if not node.level else 0:])
                               or NATIVE & {a.name for a in node.names}):
                found.append((node.lineno, "from " + "." * node.level + module + " import "
                              + ", ".join(a.name for a in node.names)))
        elif isinstance(node, ast.Attribute) and node.attr in NATIVE:
            if isinstance(node.value, ast.Name) and node.value.id == "pydetect":
                found.append((node.lineno, "pydetect." + node.attr))
        elif isinstance(node, ast.Constant) and node.value in {"pydetect._C", "pydetect._C_cuda"}:
            found.append((node.lineno, repr(node.value)))  # importlib.import_module("pydetect._C")
    return found


def _sources():
    for root, dirs, files in os.walk(PACKAGE):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(root, name)
                yield os.path.relpath(path, PACKAGE).replace(os.sep, "/"), path


def test_only_ops_touches_the_extensions():
    offenders = [f"pydetect/{rel}:{line}: {what}" for rel, path in _sources()
                 if not rel.startswith("ops/") and rel not in ALLOWED for line, what in _native_uses(path)]
    assert not offenders, ("only pydetect/ops/ may use the C++ extensions (add a wrapper there):\n"
                           + "\n".join(offenders))


def test_the_scan_sees_the_imports_it_forbids(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from pydetect import _C\nimport pydetect._C_cuda\nfrom . import _C\n"
                   "from pydetect._C import nms\nimport importlib\nimportlib.import_module('pydetect._C')\n"
                   "import pydetect\npydetect._C.nms\nfrom pydetect.ops import _cascade\n")
    assert [line for line, _ in _native_uses(bad)] == [1, 2, 3, 4, 6, 8]
    assert _native_uses(os.path.join(PACKAGE, "ops", "integral.py"))  # the wrappers do use it


def test_enums_cross_as_enums_and_keep_the_dtype():
    import numpy as np
    import pytest

    from pydetect import _C

    boxes = np.array([[0, 0, 1, 1], [0, 0, 1, 1 + 1e-9]])  # the same box in float32
    scores = np.array([0.9, 0.8])
    thr = 1 - 5e-10  # float64 IoU 1 - 1e-9 keeps both; float32 would suppress one
    for algorithm in _C.NmsAlgorithm.__members__.values():
        np.testing.assert_array_equal(_C.nms(boxes, scores, thr, algorithm), [0, 1])
    with pytest.raises(TypeError):
        _C.nms(boxes, scores, thr, 1)  # enums only: an integer code is not an NmsAlgorithm
    with pytest.raises(TypeError):
        _C.box_convert(boxes, 0, 1)  # enums only: an integer code is not a BoxFormat
    np.testing.assert_array_equal(_C.box_convert(boxes, _C.BoxFormat.XYXY, _C.BoxFormat.XYWH)[1], [0, 0, 1, 1 + 1e-9])
