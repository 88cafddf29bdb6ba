"""`erpsync connectors new NAME`: a ready package for a new connector, from templates.

It owns the layout of a third-party connector package — `erpsync-NAME/` with a pyproject
declaring the `erpsync.connectors` entry point, `erpsync_NAME/{client,mapping,connector,
sandbox}.py`, `fixtures/` and a one-class contract test — and nothing else. Guarantees:

- the package installs as it is and its tests run: every unfinished piece raises
  NotImplementedError saying what to write and where the guide explains it, and the contract
  suite fails on the empty status and carrier tables with the same kind of message;
- nothing is overwritten: an existing target directory is refused, and the files are
  written only after every template rendered;
- templates are package data (`core/scaffold_templates/*.tmpl`, string.Template syntax), so
  the command works from an installed erpsync as from a checkout.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

NAME = re.compile(r"^[a-z][a-z0-9_]{1,30}$")

# template -> path in the package; `{name}` is the platform name
TEMPLATES: dict[str, str] = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "package_init.py.tmpl": "erpsync_{name}/__init__.py",
    "client.py.tmpl": "erpsync_{name}/client.py",
    "mapping.py.tmpl": "erpsync_{name}/mapping.py",
    "connector.py.tmpl": "erpsync_{name}/connector.py",
    "sandbox.py.tmpl": "erpsync_{name}/sandbox.py",
    "fixtures_README.md.tmpl": "erpsync_{name}/fixtures/README.md",
    "test_contract.py.tmpl": "tests/test_contract.py",
}


class ScaffoldError(ValueError):
    """The name is unusable or the target exists; the message says which and why."""


@dataclass(frozen=True, slots=True)
class Scaffold:
    root: Path
    files: tuple[Path, ...]


def check_name(name: str) -> str:
    if not NAME.match(name) or keyword.iskeyword(name) or name.endswith("_"):
        raise ScaffoldError(
            f"{name!r} cannot name a platform: use 2-31 lower-case letters, digits or '_', "
            "starting with a letter (it becomes the entry point, `erpsync_<name>` and the "
            "`platform` attribute)")
    return name


def class_prefix(name: str) -> str:
    """`youzan` -> `Youzan`, `my_shop` -> `MyShop`."""
    return "".join(part.capitalize() for part in name.split("_") if part)


def distribution(name: str) -> str:
    return f"erpsync-{name.replace('_', '-')}"


def render(name: str, title: str | None = None) -> dict[str, str]:
    """Every file of the package, relative path -> text; nothing is written."""
    check_name(name)
    values = {"name": name, "Class": class_prefix(name), "dist": distribution(name),
              "title": title or class_prefix(name)}
    folder = resources.files("core.scaffold_templates")
    return {target.format(name=name):
            Template(folder.joinpath(template).read_text(encoding="utf-8")).substitute(values)
            for template, target in TEMPLATES.items()}


def scaffold(name: str, dest: Path, *, title: str | None = None) -> Scaffold:
    """Write `dest/erpsync-NAME/`; refuse when it exists."""
    files = render(name, title)
    root = Path(dest) / distribution(name)
    if root.exists():
        raise ScaffoldError(f"{root} already exists: choose another --dest or remove it")
    written = []
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return Scaffold(root, tuple(written))
