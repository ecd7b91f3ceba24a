"""Where the reference tus server's npm packages are: ``@tus/server`` and ``@tus/file-store``.

The script that runs them (``tus-node-server.mjs``) ships inside upclient;
the npm packages do not, since pip cannot install them. A ``node_modules``
directory holding both is looked for, first match wins:

1. ``node_modules=`` given to :class:`~upclient.testing.TusNodeServer`, else
   the environment variable ``UPCLIENT_TUS_NODE_MODULES``; either one, when
   given, is the only place looked at;
2. ``<node_dir>/node_modules`` for a ``node_dir=`` given, else for
   ``UPCLIENT_TUS_NODE_DIR`` (a directory with a ``package.json``, as
   ``npm ci --prefix DIR`` wants);
3. a source checkout's ``tests/servers/node_modules`` (what ``make test``
   installs);
4. each directory of ``NODE_PATH``;
5. the user cache: ``<user cache dir>/upclient/tus-node/node_modules``, where
   :func:`install_command` puts them.

ES modules ignore ``NODE_PATH``, so the script is handed the directory found
(``--node-modules``) and loads the packages from there by path.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

__all__ = [
    "TUS_NODE_PACKAGES",
    "NODE_MODULES_ENV",
    "NODE_DIR_ENV",
    "SCRIPT",
    "NodeModules",
    "find_node_modules",
    "install_command",
    "cache_prefix",
    "checkout_node_dir",
]

PathLike = Union[str, "os.PathLike[str]"]

#: The npm packages and the exact versions the harness is tested with
#: (the same as the source checkout's ``tests/servers/package.json``).
TUS_NODE_PACKAGES: Dict[str, str] = {"@tus/server": "2.4.5", "@tus/file-store": "2.1.1"}
#: Environment variable naming a ``node_modules`` directory holding the packages.
NODE_MODULES_ENV = "UPCLIENT_TUS_NODE_MODULES"
#: Environment variable naming a directory with ``package.json`` and its ``node_modules``.
NODE_DIR_ENV = "UPCLIENT_TUS_NODE_DIR"
#: The script that runs the server, shipped as package data.
SCRIPT = Path(__file__).resolve().with_name("tus-node-server.mjs")


def holds_packages(node_modules: Path) -> bool:
    """Whether ``node_modules`` holds every package of :data:`TUS_NODE_PACKAGES`."""
    return all((node_modules / name / "package.json").is_file() for name in TUS_NODE_PACKAGES)


def checkout_node_dir() -> Optional[Path]:
    """``<checkout>/tests/servers`` when upclient runs from a source checkout, else None."""
    # upclient/testing/servers/nodepackages.py -> <checkout>/tests/servers
    candidate = Path(__file__).resolve().parents[3] / "tests" / "servers"
    return candidate if (candidate / "package.json").is_file() else None


def cache_prefix() -> Path:
    """The npm prefix in the user cache that :func:`install_command` installs into."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("upclient")) / "tus-node"


def install_command(prefix: Optional[Path] = None) -> str:
    """The shell command that installs the packages where they are found without settings."""
    prefix = prefix if prefix is not None else cache_prefix()
    packages = " ".join(f"{name}@{version}" for name, version in TUS_NODE_PACKAGES.items())
    return f"npm install --prefix {shlex.quote(str(prefix))} --no-save {packages}"


class NodeModules:
    """The outcome of a search: the directory found (or None) and every place looked at.

    :attr:`installable` is a directory with ``package.json`` and
    ``package-lock.json`` whose ``node_modules`` was looked at and lacked the
    packages: ``npm ci --prefix`` there would install them.
    """

    def __init__(self, found: Optional[Path], looked: List[Tuple[str, Path]], installable: Optional[Path]) -> None:
        self.found = found
        self.looked = looked
        self.installable = installable

    def missing_message(self) -> str:
        """What to do when nothing was found: the places looked at and the command to run."""
        places = "; ".join(f"{path} ({why})" for why, path in self.looked) or "nowhere"
        names = " and ".join(TUS_NODE_PACKAGES)
        return (
            f"{names} (npm packages of the reference tus server) were not found; looked in: {places}. "
            f"Install them with: {install_command()} (found there with no setting), or set "
            f"{NODE_MODULES_ENV} to a node_modules directory that holds them. "
            "Without them, `python -m upclient.testing tus` and the upclient_tus_server fixture "
            "use the Python tus server (resumable-upload) instead."
        )


def find_node_modules(node_modules: Optional[PathLike] = None, node_dir: Optional[PathLike] = None) -> NodeModules:
    """Look for ``@tus/server`` and ``@tus/file-store`` in the order of the module docstring."""
    looked: List[Tuple[str, Path]] = []

    def search(candidates: List[Tuple[str, Path]]) -> Optional[Path]:
        for why, path in candidates:
            looked.append((why, path))
            if holds_packages(path):
                return path
        return None

    explicit = node_modules if node_modules is not None else os.environ.get(NODE_MODULES_ENV)
    if explicit:
        why = "node_modules=" if node_modules is not None else f"${NODE_MODULES_ENV}"
        path = Path(explicit).expanduser()
        return NodeModules(search([(why, path)]), looked, None)

    installable: Optional[Path] = None
    given_dir = node_dir if node_dir is not None else os.environ.get(NODE_DIR_ENV)
    if given_dir:
        base = Path(given_dir).expanduser()
        why = "node_dir=" if node_dir is not None else f"${NODE_DIR_ENV}"
        found = search([(why, base / "node_modules")])
        if found is None and (base / "package-lock.json").is_file():
            installable = base
        return NodeModules(found, looked, installable)

    candidates: List[Tuple[str, Path]] = []
    checkout = checkout_node_dir()
    if checkout is not None:
        candidates.append(("the source checkout", checkout / "node_modules"))
    for entry in os.environ.get("NODE_PATH", "").split(os.pathsep):
        if entry:
            candidates.append(("$NODE_PATH", Path(entry).expanduser()))
    candidates.append(("the user cache", cache_prefix() / "node_modules"))
    found = search(candidates)
    if found is None and checkout is not None and (checkout / "package-lock.json").is_file():
        installable = checkout
    return NodeModules(found, looked, installable)
