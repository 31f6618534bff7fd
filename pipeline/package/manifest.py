"""``SHA256SUMS``: the SHA-256 of every file of a package, in ``sha256sum -c`` format (two spaces,
POSIX relative path), sorted by path. ``infer.py`` checks it before it loads anything."""

from __future__ import annotations

import hashlib
from pathlib import Path

MANIFEST = "SHA256SUMS"


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def package_files(root: str | Path) -> list[str]:
    """Every file under ``root`` but the manifest, as sorted POSIX relative paths."""
    root = Path(root)
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p.name != MANIFEST)


def write_manifest(root: str | Path) -> Path:
    """Write ``root/SHA256SUMS`` over every other file under ``root``; its path."""
    root = Path(root)
    lines = [f"{sha256(root / name)}  {name}" for name in package_files(root)]
    path = root / MANIFEST
    path.write_text("\n".join(lines) + "\n")
    return path


def check_manifest(root: str | Path) -> list[str]:
    """What does not match: files changed, missing or not listed (empty when the package is intact)."""
    root = Path(root)
    listed: dict[str, str] = {}
    for line in (root / MANIFEST).read_text().splitlines():
        if line.strip():
            digest, _, name = line.partition("  ")
            listed[name] = digest
    problems = [f"{name}: missing" for name in sorted(listed) if not (root / name).is_file()]
    problems += [f"{name}: changed" for name, digest in sorted(listed.items())
                 if (root / name).is_file() and sha256(root / name) != digest]
    problems += [f"{name}: not in {MANIFEST}" for name in package_files(root) if name not in listed]
    return problems


__all__ = ["MANIFEST", "check_manifest", "package_files", "sha256", "write_manifest"]
