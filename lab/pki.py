"""A throw-away PKI for TLS tests and benchmarks, made at run time with the ``openssl`` CLI.

::

    ca = CA.make(tmpdir, "lab test CA", key="ec")           # or key="rsa" (RSA-2048)
    leaf = ca.issue("host.lab", key="ec")                   # SAN DNS:host.lab, signed by ca
    ctx.load_cert_chain(leaf.cert_path, leaf.key_path)      # CPython server side
    leaf.der                                                 # what the peer's getpeercert(True) gives

Nothing here reaches off the machine. Certificates start one hour in the past, so a guest
whose clock lags the host's by a little still accepts them.
"""

from __future__ import annotations

import datetime as dt
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

HOUR, DAY = dt.timedelta(hours=1), dt.timedelta(days=1)

# openssl genpkey arguments per key kind: the two the issue asks for (ECDSA P-256, RSA-2048)
KEYS = {
    "ec": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    "rsa": ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
}


def _openssl(*args: str, cwd: Path) -> bytes:
    try:
        p = subprocess.run(["openssl", *args], capture_output=True, cwd=cwd, timeout=60)
    except FileNotFoundError as e:
        raise ConfigError("the openssl CLI is missing (apt-get install openssl)") from e
    if p.returncode != 0:
        raise ConfigError(f"openssl {' '.join(args[:2])} failed: {p.stderr.decode(errors='replace')[-400:]}")
    return p.stdout


@dataclass(frozen=True)
class Leaf:
    """A key and the certificate the CA issued for it (PEM files, plus the DER bytes)."""

    name: str
    key_path: Path
    cert_path: Path

    @property
    def key_pem(self) -> bytes:
        return self.key_path.read_bytes()

    @property
    def cert_pem(self) -> bytes:
        return self.cert_path.read_bytes()

    @property
    def der(self) -> bytes:
        return _openssl("x509", "-in", str(self.cert_path), "-outform", "DER", cwd=self.cert_path.parent)

    @property
    def key_der(self) -> bytes:
        return _openssl("pkey", "-in", str(self.key_path), "-outform", "DER", cwd=self.key_path.parent)


@dataclass(frozen=True)
class CA(Leaf):
    """A self-signed CA in ``dir``; ``issue`` signs leaf certificates with it."""

    dir: Path

    @classmethod
    def make(
        cls,
        directory: Path,
        cn: str = "mplab test CA",
        key: str = "ec",
        valid: tuple[dt.timedelta, dt.timedelta] = (-HOUR, 2 * DAY),
    ) -> CA:
        directory.mkdir(parents=True, exist_ok=True)
        stem = cn.replace(" ", "_")
        key_path, cert_path = directory / f"{stem}.key", directory / f"{stem}.pem"
        _genkey(key_path, key)
        ca = cls(cn, key_path, cert_path, directory)
        csr, ext = directory / f"{stem}.csr", directory / f"{stem}.ext"
        _openssl("req", "-new", "-key", str(key_path), "-out", str(csr), "-subj", f"/CN={cn}", cwd=directory)
        ext.write_text("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n")
        _sign(ca, csr, cert_path, ext, selfsign=True, valid=valid)
        return ca

    def issue(
        self,
        cn: str,
        key: str = "ec",
        san: list[str] | None = None,
        valid: tuple[dt.timedelta, dt.timedelta] = (-HOUR, 2 * DAY),
        tag: str = "",
        ips: list[str] | None = None,
    ) -> Leaf:
        """A leaf for ``cn`` (also its DNS SAN, with ``san`` added, and IP SANs ``ips``), valid
        from ``valid[0]`` to ``valid[1]`` relative to now (default: an hour ago to two days on);
        ``tag`` keeps the files of several leaves for one name apart."""
        stem = f"{cn}-{key}{tag}".replace(" ", "_")
        key_path, csr, cert_path = (self.dir / f"{stem}{ext}" for ext in (".key", ".csr", ".pem"))
        _genkey(key_path, key)
        _openssl("req", "-new", "-key", str(key_path), "-out", str(csr), "-subj", f"/CN={cn}", cwd=self.dir)
        ext = self.dir / f"{stem}.ext"
        names = ",".join([*(f"DNS:{n}" for n in [cn, *(san or [])]), *(f"IP:{a}" for a in ips or [])])
        ext.write_text(f"subjectAltName={names}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n")
        _sign(self, csr, cert_path, ext, valid=valid)
        return Leaf(cn, key_path, cert_path)


def _genkey(path: Path, kind: str) -> None:
    if kind not in KEYS:
        raise ConfigError(f"key kind {kind!r}: choose from {', '.join(KEYS)}")
    _openssl("genpkey", *KEYS[kind], "-out", str(path), cwd=path.parent)


def _sign(
    ca: CA,
    csr: Path,
    out: Path,
    ext: Path,
    selfsign: bool = False,
    valid: tuple[dt.timedelta, dt.timedelta] | None = None,
) -> None:
    """Sign with ``openssl ca``: before OpenSSL 3.4 it is the only command that takes a start date."""
    db = ca.dir / "ca-db"
    db.mkdir(exist_ok=True)
    (db / "index.txt").touch()
    cfg = db / "ca.cnf"
    cfg.write_text(
        "[ca]\ndefault_ca=lab\n[lab]\n"
        f"database={db}/index.txt\nnew_certs_dir={db}\nrand_serial=yes\ndefault_md=sha256\n"
        "policy=any\nunique_subject=no\ncopy_extensions=none\n[any]\ncommonName=supplied\n"
    )
    now = dt.datetime.now(dt.UTC)
    start, end = valid or (-HOUR, 2 * DAY)
    fmt = "%Y%m%d%H%M%SZ"
    _openssl(
        "ca", "-batch", "-config", str(cfg), "-cert", str(ca.cert_path), "-keyfile", str(ca.key_path),
        "-in", str(csr), "-out", str(out), "-notext", "-extfile", str(ext),
        "-startdate", (now + start).strftime(fmt),
        "-enddate", (now + end).strftime(fmt), *(["-selfsign"] if selfsign else []), cwd=ca.dir,
    )  # fmt: skip
