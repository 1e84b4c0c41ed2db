"""Backends are built by composition: dependencies point one way (the MongoDB commit knows
nothing of the storage class), no module reaches into another object's private members, and
no storage class mixes in helpers that use attributes they do not own."""

from __future__ import annotations

import ast
import importlib
import pathlib
import subprocess
import sys
import textwrap

import pytest

import datastream
from datastream.storage.base import Storage

STORAGE = pathlib.Path(datastream.__file__).parent / "storage"
BACKENDS = ("duckdb", "mongodb", "influxdb")


def backend_modules() -> list[pathlib.Path]:
    return sorted(path for name in BACKENDS for path in (STORAGE / name).glob("*.py"))


def imported_modules(path: pathlib.Path) -> set[str]:
    """Every module a file imports, TYPE_CHECKING blocks included, relative ones resolved
    against its package."""
    package = f"datastream.storage.{path.parent.name}"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(part for part in (base, node.module) if part)
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize("name", ["commit", "protocol", "database"])
def test_mongodb_parts_do_not_import_the_storage(name):
    imports = imported_modules(STORAGE / "mongodb" / f"{name}.py")
    assert "datastream.storage.mongodb.storage" not in imports
    assert not any(module.endswith("MongoDBStorage") for module in imports)


def test_mongodb_commit_imports_without_the_storage_module():
    """At run time too: with the storage module made unimportable (and the package's
    ``__init__``, which wires it, left out), the commit module still imports."""
    code = textwrap.dedent(f"""
        import importlib, importlib.abc, sys, types

        FORBIDDEN = "datastream.storage.mongodb.storage"

        class Refuse(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name == FORBIDDEN:
                    raise ImportError(name + " was imported")
                return None

        sys.meta_path.insert(0, Refuse())
        import datastream.storage
        package = types.ModuleType("datastream.storage.mongodb")
        package.__path__ = [{str(STORAGE / "mongodb")!r}]
        sys.modules[package.__name__] = package
        commit = importlib.import_module("datastream.storage.mongodb.commit")
        assert FORBIDDEN not in sys.modules
        print(commit.Commit.__name__, commit.Context.__name__)
    """)
    root = str(pathlib.Path(datastream.__file__).parent.parent)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, env={"PYTHONPATH": root, "PATH": ""})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["Commit", "Context"]


def test_no_backend_module_touches_private_members_of_other_objects():
    """``x._name`` only on ``self``/``cls``: not on the storage from a helper, nor on a
    third-party client (InfluxDBClient's session and settings, say)."""
    found = []
    for path in backend_modules():
        for node in ast.walk(ast.parse(path.read_text())):
            own = isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and (
                node.value.id in ("self", "cls"))
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                    and not node.attr.startswith("__") and not own):
                found.append(f"{path.parent.name}/{path.name}:{node.lineno} {ast.unparse(node)}")
    assert found == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_storage_classes_mix_nothing_in(backend):
    module = importlib.import_module(f"datastream.storage.{backend}.storage")
    storage_class = next(value for value in vars(module).values() if isinstance(value, type)
                         and issubclass(value, Storage) and value is not Storage)
    ours = [cls for cls in storage_class.__mro__ if cls.__module__.startswith("datastream.")]
    assert ours == [storage_class, Storage]
