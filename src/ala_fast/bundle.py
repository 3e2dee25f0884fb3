"""The model bundle: a folder with ONNX models, Arrow tables and a manifest.

``manifest.json`` records the format version, feature names and order, target names, library
and dependency versions, the training data digest, metrics and the sha256 of every file.
Saving writes a temporary sibling folder and renames it into place, so a crash never leaves
half a bundle; loading verifies the format version and every digest.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import pyarrow as pa

from .errors import BundleError

FORMAT_VERSION = 2
#: versions this ala_fast reads: 1 lacks ``inferred_hardware`` in the manifest (no device
#: described from its measurements, so none to restore); the rest is identical
READABLE_VERSIONS = (1, 2)
MANIFEST = "manifest.json"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def table_to_ipc(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def ipc_to_table(data: bytes) -> pa.Table:
    return pa.ipc.open_file(pa.BufferReader(data)).read_all()


def table_digest(table: pa.Table) -> str:
    """sha256 of a table's content (schema without metadata + data)."""
    return sha256_bytes(table_to_ipc(table.replace_schema_metadata(None).combine_chunks()))


def dependency_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("ala_fast", "numpy", "numba", "pyarrow", "onnx", "onnxruntime", "scikit-learn",
                 "skl2onnx"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def platform_fingerprint() -> dict:
    """What decides, besides the versions, whether training reproduces a bundle bit for bit.

    NumPy picks its exp / log / reduction loops by the CPU's SIMD extensions at run time, and
    those loops differ in the last bit between, say, an AVX-512 and an AVX2 machine; boosted
    trees turn last-bit differences of their targets into different splits. So a bundle is
    rebuilt bit for bit only on a machine with the same architecture and the same NumPy CPU
    features (tests/test_model.py checks that, and a looser agreement elsewhere).
    """
    import platform

    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:  # NumPy 1.x
        from numpy.core._multiarray_umath import __cpu_features__ as features
    return {"machine": platform.machine(),
            "numpy_cpu_features": sorted(k for k, on in features.items() if on)}


def write_bundle(path: str | Path, files: dict[str, bytes], manifest: dict) -> Path:
    """Write ``files`` and the manifest atomically to folder ``path`` (replacing it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    manifest = dict(manifest)
    manifest["format_version"] = FORMAT_VERSION
    manifest["files"] = {name: sha256_bytes(data) for name, data in sorted(files.items())}
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    os.chmod(tmp, 0o755)
    try:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        old = None
        if path.exists():
            old = path.parent / f".{path.name}.old.{os.getpid()}"
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def read_bundle(path: str | Path) -> tuple[dict, dict[str, bytes]]:
    """Read and verify a bundle; returns (manifest, {file name: bytes})."""
    path = Path(path)
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise BundleError(f"{path}: not a model bundle (no {MANIFEST})")
    try:
        manifest = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{mpath}: corrupted manifest: {exc}") from exc
    version = manifest.get("format_version")
    if version not in READABLE_VERSIONS:
        raise BundleError(
            f"{path}: bundle format version {version!r}, this ala_fast reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}; retrain with `ala-fast train` or use a "
            "matching ala_fast"
        )
    files = {}
    for name, digest in manifest.get("files", {}).items():
        fpath = path / name
        if not fpath.is_file():
            raise BundleError(f"{path}: file {name} listed in the manifest is missing")
        data = fpath.read_bytes()
        if sha256_bytes(data) != digest:
            raise BundleError(f"{fpath}: sha256 does not match the manifest (corrupted or edited)")
        files[name] = data
    return manifest, files
