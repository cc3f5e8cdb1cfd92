"""lab.packages without a lab: package specs (a mip package.json directory, plain modules,
PyPI names through pip, cached under build/packages), one-line errors, and the mip index.

The index test is the *index format* test: it serves the built directory with Python's
http.server on the host's loopback (not the lab's nginx, which is the services' part) and
fetches from it exactly as micropython-lib's mip does: package/<mpy or py>/<name>/<version>.json,
then file/<short hash[:2]>/<short hash> for each entry of ``hashes``, checking each file's
sha256 prefix.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import packages
from lab.packages import PackageError

REPO = Path(__file__).resolve().parents[2]
FIXTURE = Path(__file__).parent / "fixtures" / "wthpkg"
PYPI = ["microdot", "micropython-umqtt.simple"]  # fetched once into build/packages, then reused


def test_local_package_json() -> None:
    p = packages.resolve(str(FIXTURE))
    assert (p.name, p.version) == ("wthpkg", "0.3.1")
    assert [f.target for f in p.files] == ["wthpkg/__init__.py", "wthpkg/util.py"]
    assert p.files[1].data == (FIXTURE / "src" / "util.py").read_bytes()


def test_plain_directory_and_module_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.py").write_text("A = 1\n")
    (tmp_path / "sub" / "b.py").write_text("B = 2\n")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"x")
    p = packages.resolve(str(tmp_path))
    assert [f.target for f in p.files] == ["a.py", "sub/b.py"]
    one = packages.resolve(str(tmp_path / "a.py"))
    assert (one.name, [f.target for f in one.files]) == ("a", ["a.py"])


def test_bad_specs_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(PackageError, match=r"no such directory or \.py file"):
        packages.resolve("./no/such/dir")
    with pytest.raises(PackageError, match="neither a path nor a PyPI name"):
        packages.resolve("bad name!")
    d = tmp_path / "remote"
    d.mkdir()
    (d / "package.json").write_text(json.dumps({"urls": [["x.py", "github:org/repo/x.py"]]}))
    with pytest.raises(PackageError, match="only paths relative to the package"):
        packages.resolve(str(d))
    (d / "package.json").write_text("{nope")
    with pytest.raises(PackageError, match="not valid JSON"):
        packages.resolve(str(d))


@pytest.fixture(scope="module")
def pypi() -> dict[str, packages.Package]:
    return {s: packages.resolve(s, progress=print) for s in PYPI}


def test_pypi_layout_as_mip_lays_it_out(pypi: dict[str, packages.Package]) -> None:
    umqtt = pypi["micropython-umqtt.simple"]
    assert umqtt.name == "umqtt.simple" and umqtt.aliases == ("micropython-umqtt.simple",)
    assert [f.target for f in umqtt.files] == ["umqtt/simple.py"]
    assert b"class MQTTClient" in umqtt.files[0].data
    md = pypi["microdot"]
    targets = {f.target for f in md.files}
    assert {"microdot/__init__.py", "microdot/microdot.py"} <= targets
    assert all(t.startswith("microdot/") and t.endswith(".py") for t in targets), targets  # no .pyi, tests, docs
    assert md.version and md.source == f"pypi:microdot=={md.version}"


def test_pypi_cache_is_reused_without_pip(pypi: dict[str, packages.Package], monkeypatch: pytest.MonkeyPatch) -> None:
    def no_pip(*a: object, **k: object) -> None:
        raise AssertionError("pip ran although the package is cached")

    monkeypatch.setattr(packages.subprocess, "run", no_pip)
    again = packages.resolve("microdot")
    assert [f.sha256 for f in again.files] == [f.sha256 for f in pypi["microdot"].files]


def test_unknown_pypi_package_is_one_clear_line() -> None:
    with pytest.raises(PackageError) as ei:
        packages.resolve("wth-no-such-package-zz")
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith("wth-no-such-package-zz: pip could not download it: ")
    assert "No matching distribution" in msg, msg


def test_cli_install_unknown_package_is_one_line() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("MPLAB_DEBUG", None)
    p = subprocess.run(
        [sys.executable, "-m", "lab", "--lab", "wthabsent", "install", "node1", "wth-no-such-package-zz"],
        capture_output=True, text=True, cwd=REPO, timeout=300, env=env,
    )  # fmt: skip
    err = p.stderr.splitlines()
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert len(err) == 1 and "wth-no-such-package-zz: pip could not download it" in err[0], p.stderr


# ---- the index, fetched as mip fetches it ---------------------------------------------------
@contextlib.contextmanager
def serve(root: Path) -> Iterator[str]:
    """http.server on 127.0.0.1 (a host-side stand-in for the format test only)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read()


def mip_fetch(index: str, name: str, version: str | None = None, mpy: bool = True) -> dict[str, bytes]:
    """What mip.install(name, index=index, version=version, mpy=mpy) downloads: target -> bytes."""
    mpy_version = "6" if mpy else "py"  # sys.implementation._mpy & 0xff on MicroPython 1.25
    pj = json.loads(get(f"{index}/package/{mpy_version}/{name}/{version or 'latest'}.json"))
    out = {}
    for target, short in pj.get("hashes", ()):
        data = get(f"{index}/file/{short[:2]}/{short}")
        assert hashlib.sha256(data).hexdigest()[: len(short)] == short, (target, short)
        out[target] = data
    assert not pj.get("urls"), "the lab index serves every file by hash"
    return out


def test_index_serves_what_mip_fetches(tmp_path: Path, pypi: dict[str, packages.Package]) -> None:
    pkgs = [*pypi.values(), packages.resolve(str(FIXTURE))]
    idx = packages.build_index(pkgs, tmp_path / "mip")
    assert idx.packages == ["microdot", "umqtt.simple", "wthpkg"]
    with serve(tmp_path / "mip") as url:
        index = json.loads(get(f"{url}/index.json"))
        assert index["v"] == 2 and isinstance(index["updated"], int)
        by_name = {p["name"]: p for p in index["packages"]}
        assert by_name["wthpkg"]["version"] == "0.3.1" and by_name["wthpkg"]["versions"]["py"] == ["0.3.1"]
        for p in pkgs:
            want = {f.target: f.data for f in p.files}
            assert mip_fetch(url, p.name) == want  # mip's default: mpy=True, latest
            assert mip_fetch(url, p.name, mpy=False) == want
            assert mip_fetch(url, p.name, version=p.version) == want
        assert mip_fetch(url, "micropython-umqtt.simple") == mip_fetch(url, "umqtt.simple")  # the PyPI name too
        with pytest.raises(urllib.error.HTTPError) as ei:  # mip: "Package not found"
            get(f"{url}/package/6/wth-absent/latest.json")
        assert ei.value.code == 404
