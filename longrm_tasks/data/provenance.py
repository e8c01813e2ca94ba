"""Which data a result was computed on: source, hub revision and a SHA-256 per data file.

The paper orders (and so every number) depend on each config file's exact
records and their order, so a result is only comparable with another one (or
with the paper) when both were computed on the same bytes. Every result we
write carries ``Provenance.as_dict()``:

- ``source``: ``"hub"``, ``"sample"`` (the bundled synthetic sample) or the
  data folder as the user gave it;
- ``revision``: for the hub, the commit the files were actually read at (the
  hub's answer for ``main`` or a pinned revision, or the cached snapshot's
  commit when offline); ``None`` for local data;
- ``files``: ``{file name: sha256 hex}`` for every file that was read.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

_CHUNK = 1 << 20  # hash 1 MiB at a time: config files run to hundreds of MB


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 hex digest of a file, read in chunks (constant memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Provenance:
    source: str  # "hub" | "sample" | a folder path as given
    revision: str | None = None  # hub commit sha; None for local data or when unknown
    files: dict[str, str] = field(default_factory=dict)  # file name -> sha256 hex

    def add_file(self, path: str | os.PathLike) -> None:
        self.files[os.path.basename(os.fspath(path))] = file_sha256(path)

    def as_dict(self) -> dict:
        return {"source": self.source, "revision": self.revision, "files": dict(sorted(self.files.items()))}

    @classmethod
    def from_dict(cls, d: dict | None) -> "Provenance | None":
        """Read back what `as_dict` wrote (None for a result that carries no provenance)."""
        if not isinstance(d, dict) or not isinstance(d.get("source"), str):
            return None
        files = d.get("files") if isinstance(d.get("files"), dict) else {}
        revision = d.get("revision")
        return cls(source=d["source"], revision=revision if isinstance(revision, str) else None,
                   files={str(k): str(v) for k, v in files.items()})

    def same_data(self, other: "Provenance") -> bool:
        """Both computed on the same bytes: equal file hashes for the files both read.

        Runs on different subsets of configs are still the same data where they
        overlap; a hub run whose revision is unknown is compared by hashes alone.
        """
        shared = set(self.files) & set(other.files)
        if shared:
            return all(self.files[f] == other.files[f] for f in shared)
        if self.source == other.source == "hub":
            return self.revision is None or other.revision is None or self.revision == other.revision
        return self.source == other.source
