"""The NiiVue bundle the case report's interactive viewer embeds: pin, fetch, find.

The repository commits no third-party JavaScript. It pins one NiiVue release (exact version
and npm's ``dist.integrity`` SHA-512 of its tarball); ``make setup`` runs this module
(``python -m gliomaseg.report.viewer_assets``), which downloads that tarball from the npm
registry with urllib (no npm needed), checks the hash, and extracts the UMD bundle
``package/dist/niivue.umd.js`` into :data:`VENDOR_DIR` (git-ignored) beside a ``VERSION``
file, NiiVue's licence and its runtime dependencies.

At report time nothing is downloaded: :func:`find_bundle` only looks in :data:`VENDOR_DIR`;
when the bundle is absent (or of another version) the report keeps its static figures and
logs :data:`MISSING_HINT` once.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import io
import json
import logging
import sys
import tarfile
import urllib.request
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from gliomaseg.io.atomic import write_bytes_atomic, write_text_atomic

log = logging.getLogger(__name__)

NIIVUE_VERSION = "0.69.0"
#: npm's ``dist.integrity`` of ``@niivue/niivue@0.69.0`` (``npm view @niivue/niivue@0.69.0
#: dist.integrity``): base64 SHA-512 of the tarball.
NIIVUE_INTEGRITY = "sha512-YMjQvJgD1W2b7DuoxkwlC4VxbrgIePRJ5qyQzXKxi2v2MBVg285P/CIQyg46oDDGDIcaNlbd+MhtO/edMbXJkA=="
NIIVUE_TARBALL = f"https://registry.npmjs.org/@niivue/niivue/-/niivue-{NIIVUE_VERSION}.tgz"
#: The tarball member that is extracted: the UMD build (defines ``window.niivue``).
BUNDLE_MEMBER = "package/dist/niivue.umd.js"
#: Where the extracted bundle lives (ignored by git; ``make setup`` fills it).
VENDOR_DIR = Path(__file__).resolve().parent / "vendor"
BUNDLE_NAME = "niivue.umd.js"
LICENCE_FILE = Path(__file__).resolve().parent.parent / "resources" / "niivue_LICENSE.txt"
MISSING_HINT = (
    "interactive viewer left out: the NiiVue bundle is not installed; run 'make setup' "
    "(or 'python -m gliomaseg.report.viewer_assets') once, then re-run 'gliomaseg report'"
)


@dataclass(frozen=True)
class Bundle:
    """The NiiVue UMD bundle as the page embeds it.

    Attributes:
        version: NiiVue version (the pinned one).
        gzip_base64: The bundle, gzip-compressed (level 9, mtime 0) then base64 (ASCII).
        raw_bytes: Size of the uncompressed bundle (bytes).
        licence: NiiVue's licence text and its runtime dependencies (plain text).
    """

    version: str
    gzip_base64: str
    raw_bytes: int
    licence: str


def find_bundle(vendor_dir: Path | None = None) -> Bundle | None:
    """The installed bundle of the pinned version, or None when absent (never downloads)."""
    return _load_bundle(vendor_dir or VENDOR_DIR)


@lru_cache(maxsize=4)
def _load_bundle(folder: Path) -> Bundle | None:
    js, version = folder / BUNDLE_NAME, folder / "VERSION"
    if not (js.is_file() and version.is_file()):
        return None
    if version.read_text(encoding="utf-8").strip() != NIIVUE_VERSION:
        return None
    raw = js.read_bytes()
    licence = (
        (folder / "LICENSE").read_text(encoding="utf-8") if (folder / "LICENSE").is_file() else ""
    )
    packed = gzip.compress(raw, compresslevel=9, mtime=0)
    return Bundle(NIIVUE_VERSION, base64.b64encode(packed).decode("ascii"), len(raw), licence)


def verify_integrity(data: bytes, integrity: str = NIIVUE_INTEGRITY) -> None:
    """Check bytes against an npm ``sha512-<base64>`` integrity string.

    Raises:
        ValueError: another algorithm, or the digest differs.
    """
    algo, _, expected = integrity.partition("-")
    if algo != "sha512":
        raise ValueError(f"unsupported integrity algorithm {algo!r}; expected sha512")
    actual = base64.b64encode(hashlib.sha512(data).digest()).decode("ascii")
    if actual != expected:
        raise ValueError(
            f"NiiVue tarball hash mismatch (expected sha512-{expected}, got sha512-{actual}); "
            "the download is corrupt or the registry served another file: try again"
        )


def install_bundle(tarball: bytes, vendor_dir: Path | None = None) -> Path:
    """Verify a NiiVue tarball and extract its UMD bundle, licence and dependency list.

    Returns:
        Path of the extracted bundle.

    Raises:
        ValueError: hash mismatch, or the tarball lacks the bundle.
    """
    verify_integrity(tarball)
    folder = vendor_dir or VENDOR_DIR
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
        member = tar.extractfile(BUNDLE_MEMBER)
        manifest = tar.extractfile("package/package.json")
        if member is None or manifest is None:
            raise ValueError(f"NiiVue {NIIVUE_VERSION} tarball has no {BUNDLE_MEMBER}")
        js, package = member.read(), json.loads(manifest.read().decode("utf-8"))
    deps = "\n".join(f"  {k} {v}" for k, v in sorted((package.get("dependencies") or {}).items()))
    licence = (
        f"NiiVue {NIIVUE_VERSION} ({package.get('license', '?')}), {NIIVUE_TARBALL}\n\n"
        + LICENCE_FILE.read_text(encoding="utf-8")
        + f"\nThe bundle includes NiiVue's runtime dependencies (npm ranges):\n{deps}\n"
    )
    write_bytes_atomic(folder / BUNDLE_NAME, js)
    write_text_atomic(folder / "LICENSE", licence)
    write_text_atomic(folder / "VERSION", NIIVUE_VERSION + "\n")
    _load_bundle.cache_clear()
    return folder / BUNDLE_NAME


def fetch_bundle(vendor_dir: Path | None = None, *, timeout: float = 120.0) -> Path:
    """Download the pinned NiiVue tarball from the npm registry and install its bundle.

    Does nothing when the pinned version is already installed.
    """
    folder = vendor_dir or VENDOR_DIR
    if find_bundle(folder) is not None:
        return folder / BUNDLE_NAME
    with urllib.request.urlopen(NIIVUE_TARBALL, timeout=timeout) as response:
        tarball = response.read()
    return install_bundle(tarball, folder)


def main(argv: list[str] | None = None) -> int:
    """``python -m gliomaseg.report.viewer_assets [--dest DIR]``: fetch the viewer bundle."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", type=Path, default=VENDOR_DIR, help="default: %(default)s")
    args = parser.parse_args(argv)
    try:
        path = fetch_bundle(args.dest)
    except (OSError, ValueError) as err:
        print(f"error: could not install NiiVue {NIIVUE_VERSION}: {err}", file=sys.stderr)
        return 1
    print(f"NiiVue {NIIVUE_VERSION}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
