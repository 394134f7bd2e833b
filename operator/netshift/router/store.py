"""Where rendered configurations live on disk: two slots, swapped on each change.

``<base>/haproxy.cfg`` is the configuration the master runs (its path never changes: a reload
re-reads it). Each configuration references its maps and certificates in a slot directory
(``<base>/a`` or ``<base>/b``). A new configuration is written to the slot the running one does not
use, then copied over ``<base>/haproxy.cfg`` (rename: atomic); when HAProxy cannot load it,
``rollback`` puts the previous one back. HAProxy reads every referenced file when a worker starts,
so rewriting the inactive slot never affects running workers.
"""
from __future__ import annotations

import os
import pathlib
import shutil

from .haproxy_config import Rendered

SLOTS = ("a", "b")


def write_private(path: pathlib.Path, content: str, mode: int = 0o600) -> None:
    """Atomically (a temporary file renamed over it), readable by the owner only by default."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(content)
    os.replace(tmp, path)


class ConfigStore:
    def __init__(self, base_dir: str | os.PathLike[str]) -> None:
        self.base = pathlib.Path(base_dir)
        self.base.mkdir(parents=True, exist_ok=True)
        self.active: str | None = None
        self._installed: tuple[str, tuple[tuple[str, str], ...]] | None = None
        self._previous: tuple[str | None, tuple[str, tuple[tuple[str, str], ...]] | None, str | None] | None = None

    @property
    def config_path(self) -> str:
        return str(self.base / "haproxy.cfg")

    def next_dir(self) -> str:
        """The slot the next configuration goes to (never the one in use)."""
        slot = SLOTS[1] if self.active == SLOTS[0] else SLOTS[0]
        return str(self.base / slot)

    def _normalized(self, rendered: Rendered, files_dir: str) -> tuple[str, tuple[tuple[str, str], ...]]:
        # The same configuration rendered for the other slot differs only by the slot path; which
        # endpoints fill the server slots is no change (the runtime API updates those).
        return rendered.shape.replace(files_dir, "@SLOT@"), tuple(sorted(rendered.files.items()))

    def changed(self, rendered: Rendered, files_dir: str) -> bool:
        return self._installed != self._normalized(rendered, files_dir)

    def stage(self, rendered: Rendered, files_dir: str) -> str:
        """Write the configuration and its files into their slot; returns the staged config path."""
        slot = pathlib.Path(files_dir)
        if slot.exists():
            shutil.rmtree(slot)
        slot.mkdir(parents=True)
        for rel, content in rendered.files.items():
            write_private(slot / rel, content)
        write_private(slot / "haproxy.cfg", rendered.config)
        return str(slot / "haproxy.cfg")

    def commit(self, rendered: Rendered, files_dir: str) -> str:
        """Make the staged configuration the one the master runs."""
        path = pathlib.Path(self.config_path)
        self._previous = (self.active, self._installed, path.read_text() if path.exists() else None)
        write_private(path, rendered.config)
        self.active = pathlib.Path(files_dir).name
        self._installed = self._normalized(rendered, files_dir)
        return self.config_path

    def rollback(self) -> None:
        """Back to the configuration before the last ``commit`` (its slot was left untouched)."""
        assert self._previous is not None, "nothing committed"
        self.active, self._installed, text = self._previous
        if text is not None:
            write_private(pathlib.Path(self.config_path), text)
