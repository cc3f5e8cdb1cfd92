"""MicroPython packages from the host's side: resolve them, cache them, lay them out as mip
would, and build a package index in the format ``mip`` reads.

A package spec is one of:

* a directory with a ``package.json`` in mip's format (``urls`` of relative paths, ``deps``,
  ``version``): its files go where ``urls`` says;
* a directory without one, or a single ``.py``/``.mpy`` file: every module in it, at the same
  relative path;
* anything else is a PyPI name (``microdot``, ``micropython-umqtt.simple==1.3.4``), fetched
  with ``pip download --no-deps --no-binary :all:`` into the cache (``build/packages/`` or
  ``$MPLAB_PACKAGE_CACHE``) and unpacked; its modules are taken as mip's index lays them out
  (``umqtt/simple.py``, ``microdot/__init__.py``). A second resolve of the same spec reads
  the cache and runs no pip: nothing reaches off the machine once the cache is filled.

::

    pkgs = resolve_all(["microdot", "tests/lab/fixtures/wthpkg"])
    build_index(pkgs, run_dir / "www" / "mip")   # index.json, package/, file/

``lab.deploy.install`` puts a package's files onto a node's ``/lib``. The index format is the
one micropython-lib's ``tools/build.py`` writes and ``mip`` fetches (docs/deploy.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError

MODULE_SUFFIXES = (".py", ".mpy")
# Directories of an sdist that are not what a board imports.
SKIP_DIRS = {"tests", "test", "docs", "doc", "examples", "example", "benchmarks", "build", "dist", "__pycache__"}
SKIP_FILES = {"setup.py", "conftest.py", "noxfile.py", "manifest.py", "tasks.py"}
HASH_PREFIX = 8  # micropython-lib's default short-hash length
MPY_VERSIONS = ("6",)  # sys.implementation._mpy & 0xff of MicroPython 1.22 .. 1.26
URL_PREFIXES = ("http://", "https://", "github:", "gitlab:")
_PYPI_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(==[A-Za-z0-9.+!_-]+)?$")

Progress = Callable[[str], None]


class PackageError(ConfigError):
    """A package spec that cannot be resolved: one line naming the spec and why."""


@dataclass(frozen=True)
class PackageFile:
    target: str  # the path under the install target (/lib), e.g. "umqtt/simple.py"
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass
class Package:
    name: str  # the name mip installs it by ("umqtt.simple")
    version: str
    source: str  # where it came from: "dir:/abs/path", "pypi:microdot==2.7.0"
    files: list[PackageFile]
    deps: list[tuple[str, str]] = field(default_factory=list)
    description: str = ""
    license: str = ""
    aliases: tuple[str, ...] = ()  # other names the index serves it under (the PyPI name)

    @property
    def size(self) -> int:
        return sum(len(f.data) for f in self.files)


def cache_dir() -> Path:
    """Where pip downloads are kept: ``$MPLAB_PACKAGE_CACHE`` or ``<repo>/build/packages``."""
    env = os.environ.get("MPLAB_PACKAGE_CACHE")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "build" / "packages"


# ---- resolving a spec -------------------------------------------------------------------------
def looks_like_path(spec: str) -> bool:
    return "/" in spec or spec.startswith(".") or spec.endswith(MODULE_SUFFIXES) or Path(spec).exists()


def resolve(spec: str, cache: Path | None = None, progress: Progress | None = None) -> Package:
    """The package ``spec`` names (a directory, a module file or a PyPI name)."""
    spec = spec.strip()
    if not spec:
        raise PackageError("empty package spec: give a directory, a .py file or a PyPI name")
    if looks_like_path(spec):
        p = Path(spec)
        if p.is_dir():
            return from_dir(p)
        if p.is_file() and p.suffix in MODULE_SUFFIXES:
            return Package(p.stem, "", f"dir:{p.resolve()}", [PackageFile(p.name, p.read_bytes())])
        raise PackageError(f"{spec}: no such directory or .py file")
    if not _PYPI_RE.match(spec):
        raise PackageError(f"{spec!r} is neither a path nor a PyPI name (name or name==version)")
    return from_pypi(spec, cache or cache_dir(), progress)


def resolve_all(specs: Iterable[str], cache: Path | None = None, progress: Progress | None = None) -> list[Package]:
    return [resolve(s, cache, progress) for s in specs]


def from_dir(d: Path) -> Package:
    """A local package: ``package.json`` (mip's format) if there is one, else every module."""
    d = d.resolve()
    pj = d / "package.json"
    if not pj.is_file():
        files = [PackageFile(t, f.read_bytes()) for t, f in modules_under(d)]
        if not files:
            raise PackageError(f"{d}: no .py files and no package.json")
        return Package(d.name, "", f"dir:{d}", files)
    try:
        meta = json.loads(pj.read_text())
    except (OSError, ValueError) as e:
        raise PackageError(f"{pj}: not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise PackageError(f"{pj}: expected a JSON object with `urls`")
    files = []
    for entry in meta.get("urls", []):
        if not (isinstance(entry, list) and len(entry) == 2 and all(isinstance(x, str) for x in entry)):
            raise PackageError(f"{pj}: each `urls` entry must be [target, source], got {entry!r}")
        target, src = entry
        if src.startswith(URL_PREFIXES):
            # A lab has no route off the machine: every file must be here.
            raise PackageError(f"{pj}: {src}: only paths relative to the package are supported (no internet)")
        f = (d / src).resolve()
        if not f.is_file() or d not in f.parents:
            raise PackageError(f"{pj}: {src}: no such file in {d}")
        files.append(PackageFile(target.lstrip("/"), f.read_bytes()))
    if not files:
        raise PackageError(f"{pj}: `urls` lists no files")
    deps = [(str(x[0]), str(x[1]) if len(x) > 1 else "") for x in meta.get("deps", []) if x]
    return Package(
        str(meta.get("name") or d.name),
        str(meta.get("version") or ""),
        f"dir:{d}",
        files,
        deps,
        str(meta.get("description") or ""),
        str(meta.get("license") or ""),
    )


def modules_under(d: Path) -> list[tuple[str, Path]]:
    """Every module below ``d`` (hidden entries and __pycache__ skipped): (relative path, file)."""
    out = []
    for f in sorted(d.rglob("*")):
        rel = f.relative_to(d)
        if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
            continue
        if f.is_file() and f.suffix in MODULE_SUFFIXES:
            out.append((rel.as_posix(), f))
    return out


# ---- PyPI -------------------------------------------------------------------------------------
def mip_name(pypi_name: str) -> str:
    """micropython-lib publishes ``umqtt.simple`` on PyPI as ``micropython-umqtt.simple``."""
    n = pypi_name.lower()
    return n[len("micropython-") :] if n.startswith("micropython-") else n


def _cache_key(spec: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", spec.lower().replace("==", "@")).replace("@", "==").strip("-")


def from_pypi(spec: str, cache: Path, progress: Progress | None = None) -> Package:
    """``spec`` from PyPI through pip, cached under ``cache/pypi/<spec>/``."""
    entry = cache / "pypi" / _cache_key(spec)
    meta_file = entry / "meta.json"
    fetched = not meta_file.is_file()
    if fetched:
        _fill_cache(spec, entry)
    meta = json.loads(meta_file.read_text())
    if fetched and progress:  # after, not before: a failure stays one line
        progress(f"  pip download {spec}: {meta['name']} {meta['version']}, cached in {entry}")
    tree = entry / "tree"
    files = [PackageFile(t, (tree / t).read_bytes()) for t in meta["files"]]
    name = str(meta["name"])
    mname = mip_name(name)
    return Package(
        mname,
        str(meta["version"]),
        f"pypi:{name}=={meta['version']}",
        files,
        description=str(meta.get("description", "")),
        license=str(meta.get("license", "")),
        aliases=(name.lower(),) if name.lower() != mname else (),
    )


def _fill_cache(spec: str, entry: Path) -> None:
    entry.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=entry.parent, prefix=".work-") as w:
        work = Path(w)
        root = pip_fetch(spec, work)
        layout = sdist_layout(root)
        if not layout:
            raise PackageError(f"{spec}: its sdist has no MicroPython modules (no .py outside tests/docs)")
        info = pkg_info(root)
        stage = work / "entry"
        for target, f in layout:
            dst = stage / "tree" / target
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dst)
        name = info.get("Name") or re.split(r"==", spec)[0]
        meta = {
            "spec": spec,
            "name": name,
            "version": info.get("Version", ""),
            "description": info.get("Summary", ""),
            "license": info.get("License", ""),
            "files": [t for t, _ in layout],
            "fetched": int(time.time()),
        }
        (stage / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        if entry.exists():
            shutil.rmtree(entry)
        stage.rename(entry)  # the cache entry appears whole or not at all


def pip_fetch(spec: str, work: Path) -> Path:
    """Download ``spec``'s sdist with pip and unpack it; the unpacked source tree.

    micropython-lib's sdists on PyPI have neither setup.py nor pyproject.toml, so pip downloads
    them and then refuses them ("does not appear to be a Python project"). ``--no-clean`` with
    our own TMPDIR keeps pip's unpacked copy, which is what we need anyway.
    """
    dl, tmp = work / "dl", work / "tmp"
    dl.mkdir()
    tmp.mkdir()
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--no-clean"]
    cmd += ["--disable-pip-version-check", "--progress-bar", "off", "-d", str(dl), spec]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "TMPDIR": str(tmp)})
    except subprocess.TimeoutExpired:
        raise PackageError(f"{spec}: pip download did not finish within 600s (is PyPI reachable?)") from None
    archives = sorted(dl.iterdir())
    if p.returncode == 0 and archives:
        return _unpack(archives[0], work / "src")
    if "does not appear to be a Python project" in p.stderr:
        for d in sorted(tmp.glob("pip-download-*/*")):
            if d.is_dir():
                return d
    raise PackageError(f"{spec}: pip could not download it: {pip_gist(p.stderr)}")


def pip_gist(stderr: str) -> str:
    """pip's error in one line (its last ``ERROR:`` line)."""
    errs = [ln.removeprefix("ERROR:").strip() for ln in stderr.splitlines() if ln.startswith("ERROR:")]
    if errs:
        return errs[-1]
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip() and not ln.startswith("WARNING")]
    return lines[-1] if lines else "no output"


def _unpack(archive: Path, dest: Path) -> Path:
    dest.mkdir()
    if archive.name.endswith((".tar.gz", ".tgz", ".tar.bz2", ".tar")):
        with tarfile.open(archive) as t:
            # this Python may lack extractall(filter=): keep regular files and dirs inside dest
            safe = [m for m in t.getmembers() if (m.isfile() or m.isdir()) and _inside(m.name)]
            t.extractall(dest, members=safe)
    elif archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as z:
            z.extractall(dest, members=[n for n in z.namelist() if _inside(n)])
    else:
        raise PackageError(f"{archive.name}: not an sdist pip can unpack (.tar.gz or .zip)")
    tops = [x for x in dest.iterdir()]
    return tops[0] if len(tops) == 1 and tops[0].is_dir() else dest


def _inside(name: str) -> bool:
    parts = Path(name).parts
    return bool(parts) and not Path(name).is_absolute() and ".." not in parts


def pkg_info(root: Path) -> dict[str, str]:
    """The first PKG-INFO's header fields (Name, Version, Summary, License)."""
    for f in [root / "PKG-INFO", *sorted(root.rglob("*.egg-info/PKG-INFO"))]:
        if f.is_file():
            out: dict[str, str] = {}
            for line in f.read_text(errors="replace").splitlines():
                if not line.strip():
                    break
                k, sep, v = line.partition(":")
                if sep and not k.startswith(" ") and k not in out:
                    out[k] = v.strip()
            return out
    return {}


def sdist_layout(root: Path) -> list[tuple[str, Path]]:
    """An unpacked sdist's modules as mip's index lays them out under /lib.

    The import root is ``src/`` when there is one. ``top_level.txt`` (setuptools' egg-info)
    names the packages when present; otherwise every top-level module and every directory of
    modules (namespace packages such as ``umqtt/`` included) that is not tests or docs.
    """
    base = root / "src" if (root / "src").is_dir() else root
    tops: set[str] = set()
    for tl in [*base.glob("*.egg-info/top_level.txt"), *root.glob("*.egg-info/top_level.txt")]:
        tops |= {x.strip() for x in tl.read_text().splitlines() if x.strip()}
    out: list[tuple[str, Path]] = []
    for child in sorted(base.iterdir()):
        if child.name.startswith(".") or child.name.endswith(".egg-info"):
            continue
        if child.is_file() and child.suffix in MODULE_SUFFIXES and child.name not in SKIP_FILES:
            if not tops or child.stem in tops:
                out.append((child.name, child))
        elif child.is_dir() and child.name not in SKIP_DIRS and (not tops or child.name in tops):
            out += [(f"{child.name}/{t}", f) for t, f in modules_under(child)]
    return out


# ---- the index --------------------------------------------------------------------------------
@dataclass
class Index:
    path: Path
    packages: list[str]
    files: int  # distinct files under file/


def build_index(
    packages: Sequence[Package],
    out_dir: Path | str,
    hash_prefix: int = HASH_PREFIX,
    mpy_versions: Sequence[str] = MPY_VERSIONS,
) -> Index:
    """Write ``packages`` as a mip index into ``out_dir`` (what micropython-lib's build.py writes).

    ``index.json``; ``package/{py,6}/<name>/{latest,<version>}.json`` listing ``hashes``
    ([target, short hash]) and ``deps``; ``file/<hash[:2]>/<short hash>`` holding each file.
    There is no mpy-cross on the host, so ``package/6/`` lists the same ``.py`` files as
    ``package/py/``: mip's default ``mpy=True`` then installs the sources.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    written: dict[str, str] = {}  # short hash -> full hash
    for pkg in packages:
        hashes = []
        for f in pkg.files:
            full = f.sha256
            short = full[:hash_prefix]
            if written.get(short, full) != full:
                raise PackageError(f"{pkg.name}: {f.target}: short hash {short} collides; use a longer hash_prefix")
            dst = out / "file" / short[:2] / short
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(f.data)
            written[short] = full
            hashes.append([f.target, short])
        pj = {"v": 1, "hashes": hashes, "deps": [list(d) for d in pkg.deps], "version": pkg.version}
        for name in (pkg.name, *pkg.aliases):
            for mv in ("py", *mpy_versions):
                d = out / "package" / mv / name
                d.mkdir(parents=True, exist_ok=True)
                for v in ("latest", *([pkg.version] if pkg.version else [])):
                    (d / f"{v}.json").write_text(json.dumps(pj, separators=(",", ":")) + "\n")
        entries.append(
            {
                "name": pkg.name,
                "version": pkg.version,
                "author": "",
                "description": pkg.description,
                "license": pkg.license or "unknown",
                "versions": {mv: [pkg.version] if pkg.version else [] for mv in ("py", *mpy_versions)},
                "path": pkg.source,
            }
        )
    index = {"v": 2, "updated": int(time.time()), "packages": sorted(entries, key=lambda e: e["name"])}
    (out / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    return Index(out, [e["name"] for e in index["packages"]], len(written))
