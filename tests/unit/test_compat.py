"""esam_mail.compat: each private aiosmtpd/Twisted name we use still exists in the
installed library, the libraries are pinned below their next release line, and no
private name is used without being listed."""

from __future__ import annotations

import ast
import asyncio
import configparser
import importlib
import importlib.metadata
import inspect
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

from esam_mail.compat import HOOKS, STDLIB_PRIVATE, Hook

ROOT = Path(__file__).resolve().parents[2]
PINNED = ("aiosmtpd", "twisted")


def _requirements() -> dict[str, Requirement]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    lines = cfg["options"]["install_requires"].strip().splitlines()
    reqs = [Requirement(line) for line in lines if line.strip() and not line.strip().startswith("#")]
    return {r.name.lower(): r for r in reqs}


@pytest.mark.parametrize("dist", PINNED)
def test_library_has_an_upper_pin_and_the_installed_version_is_inside(dist: str) -> None:
    req = _requirements()[dist]
    assert any(s.operator in ("<", "<=", "~=", "==") for s in req.specifier), f"{dist} needs an upper bound: {req}"
    installed = importlib.metadata.version(dist)
    assert req.specifier.contains(installed, prereleases=True), f"{dist} {installed} outside {req.specifier}"


def _owner(hook: Hook) -> type:
    module, _, cls = hook.owner.rpartition(".")
    return getattr(importlib.import_module(module), cls)  # type: ignore[no-any-return]


def _smtp_instance() -> Any:
    from aiosmtpd.smtp import SMTP

    loop = asyncio.new_event_loop()
    try:
        return SMTP(object(), loop=loop)
    finally:
        loop.close()


@pytest.mark.parametrize("hook", HOOKS, ids=lambda h: f"{h.owner}.{h.name}")
def test_hook_still_exists_with_the_shape_we_use(hook: Hook) -> None:
    owner = _owner(hook)
    if hook.kind == "attribute":
        assert hook.owner == "aiosmtpd.smtp.SMTP", "add an instance factory for this owner"
        inst = _smtp_instance()
        assert hasattr(inst, hook.name), f"{hook.owner} instances lost {hook.name}"
        value = getattr(inst, hook.name)
        if hook.name == "_smtp_methods":
            assert isinstance(value, dict)
            assert {"HELO", "EHLO", "MAIL", "RCPT", "DATA", "QUIT", "STARTTLS", "AUTH"} <= set(value)
            assert all(callable(m) for m in value.values())
        if hook.name == "_timeout_handle":
            assert value is None  # no timer before connection_made
        return
    func = inspect.getattr_static(owner, hook.name, None)
    assert func is not None and callable(func), f"{hook.owner}.{hook.name} is gone"
    if hook.kind == "coroutine":
        assert inspect.iscoroutinefunction(func)
    else:
        assert not inspect.iscoroutinefunction(func)
    params = [p for p in inspect.signature(func).parameters if p != "self"]
    assert params == list(hook.params), f"{hook.owner}.{hook.name}{inspect.signature(func)}"


@pytest.mark.parametrize("hook", HOOKS, ids=lambda h: f"{h.owner}.{h.name}")
def test_listed_hook_is_really_used(hook: Hook) -> None:
    text = (ROOT / hook.used_in).read_text(encoding="utf-8")
    assert re.search(rf"\b{re.escape(hook.name)}\b", text), f"{hook.name} no longer used in {hook.used_in}: unlist it"


def _base_private_names(base: type) -> set[str]:
    names = {n for n in vars(base) if n.startswith("_") and not n.startswith("__")}
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(base)))
    except (OSError, TypeError):
        return names
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self"
            and node.attr.startswith("_") and not node.attr.startswith("__")
        ):
            names.add(node.attr)
    return names


def test_no_unlisted_private_use() -> None:
    """Subclasses of aiosmtpd/Twisted classes touch only listed private names of their
    bases; no module reads ``reactor._x`` / ``request._x`` / ``getattr(obj, "_x")``."""
    listed = {(h.owner.split(".")[0], h.name) for h in HOOKS}
    found: list[str] = []
    for path in sorted((ROOT / "esam_mail").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel == "esam_mail/compat.py":
            continue
        src = path.read_text(encoding="utf-8")
        for m in re.finditer(r"\b(reactor|request|transport)\._[a-zA-Z]\w*", src):
            found.append(f"{rel}: {m.group(0)}")
        for m in re.finditer(r"getattr\([^,()]+,\s*\"(_[a-zA-Z]\w*)\"", src):
            if "session" not in m.group(0) and m.group(1) not in STDLIB_PRIVATE:  # our own per-session attribute (imap/metrics.py)
                found.append(f"{rel}: {m.group(0)}")
        if not re.search(r"^(from|import) (aiosmtpd|twisted)", src, re.M):
            continue
        module = importlib.import_module(rel[:-3].replace("/", "."))
        for cls_node in [n for n in ast.walk(ast.parse(src)) if isinstance(n, ast.ClassDef)]:
            cls = getattr(module, cls_node.name, None)
            if not inspect.isclass(cls):
                continue
            for base in cls.__mro__[1:]:
                lib = base.__module__.split(".")[0]
                if lib not in PINNED:
                    continue
                private = _base_private_names(base)
                for node in ast.walk(cls_node):
                    name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "name", None)
                    if (
                        isinstance(node, ast.Attribute | ast.FunctionDef | ast.AsyncFunctionDef)
                        and name in private and (lib, name) not in listed
                    ):
                        found.append(f"{rel}:{node.lineno} {cls.__name__} uses {base.__name__}.{name}")
    assert not found, "list these in esam_mail/compat.py (or use a public API):\n" + "\n".join(sorted(set(found)))
