"""A certificate authority per lab, made at ``up`` with the openssl CLI (no Python dependency).

Layout under the lab's run directory (``Topology.run_dir``; docs/services.md)::

    ca/ca.key, ca/ca.pem, ca/...   the CA's key and openssl's bookkeeping (0700; never mounted)
    tls/ca.pem                     the CA certificate: copied onto every node as /certs/ca.pem
    tls/<svc>.pem, tls/<svc>.key   each service daemon's certificate and key (mounted read-only)

Keys are ECDSA P-256: mbedTLS on the guest verifies them and does ECDHE-ECDSA quickly, and the
PEMs are small to copy onto a node. Certificates start an hour in the past, so that a guest
whose clock lags a little still accepts them. A fresh CA has a fresh key and a random serial
and subject, so two labs (or two runs of one lab) never share one.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import LabError

DAYS = 30  # a lab lives hours; a month is plenty and still expires
BACKDATE_S = 3600
_CNF = """\
[ca]
default_ca = lab
[lab]
dir = {dir}
database = $dir/index.txt
new_certs_dir = $dir/issued
serial = $dir/serial
default_md = sha256
policy = any
unique_subject = no
email_in_dn = no
[any]
organizationName = optional
commonName = supplied
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca_ext]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[leaf_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = {sans}
"""


class CAError(LabError):
    """openssl failed while making the lab's CA or a certificate."""


@dataclass(frozen=True)
class Issued:
    name: str
    cert: Path
    key: Path


@dataclass(frozen=True)
class LabCA:
    """The CA of one lab: ``LabCA.create(run_dir, "x")``, then ``issue("mqtt", [...], [...])``."""

    run_dir: Path
    subject: str = ""  # the CA's subject when this object made it

    @property
    def work(self) -> Path:
        return self.run_dir / "ca"

    @property
    def tls(self) -> Path:
        return self.run_dir / "tls"

    @property
    def key(self) -> Path:
        return self.work / "ca.key"

    @property
    def cert(self) -> Path:
        """The CA certificate as the services and nodes see it (tls/ca.pem)."""
        return self.tls / "ca.pem"

    @classmethod
    def create(cls, run_dir: Path, lab: str) -> LabCA:
        """A new CA in ``run_dir`` (any earlier CA there is removed first)."""
        ca = cls(Path(run_dir), f"/O=mplab/CN=mplab lab {lab} CA {secrets.token_hex(4)}")
        for d in (ca.work, ca.tls):
            shutil.rmtree(d, ignore_errors=True)
        ca.work.mkdir(parents=True, mode=0o700)
        ca.tls.mkdir(parents=True, mode=0o755)
        (ca.work / "issued").mkdir()
        (ca.work / "index.txt").write_text("")
        (ca.work / "serial").write_text(secrets.token_hex(16) + "\n")
        csr = ca.work / "ca.csr"
        ca._newkey(ca.key, csr, ca.subject)
        ca._sign(csr, ca.work / "ca.pem", "ca_ext", "IP:127.0.0.1", selfsign=True)
        shutil.copyfile(ca.work / "ca.pem", ca.cert)
        os.chmod(ca.cert, 0o644)
        return ca

    @classmethod
    def load(cls, run_dir: Path) -> LabCA | None:
        """The CA already in ``run_dir``, or None."""
        ca = cls(Path(run_dir))
        return ca if ca.key.is_file() and ca.cert.is_file() else None

    def issue(self, name: str, dns: Sequence[str], ips: Sequence[str]) -> Issued:
        """A certificate for ``name`` (tls/<name>.pem, .key) with CN dns[0] and these SANs."""
        if not dns:
            raise CAError(f"certificate {name}: needs at least one DNS name")
        key, cert, csr = self.tls / f"{name}.key", self.tls / f"{name}.pem", self.work / f"{name}.csr"
        self._newkey(key, csr, f"/O=mplab/CN={dns[0]}")
        sans = ",".join([*(f"DNS:{d}" for d in dns), *(f"IP:{a}" for a in ips)])
        self._sign(csr, cert, "leaf_ext", sans)
        os.chmod(key, 0o600)
        os.chmod(cert, 0o644)
        return Issued(name, cert, key)

    # ---- openssl --------------------------------------------------------------------
    def _newkey(self, key: Path, csr: Path, subject: str) -> None:
        _openssl(
            [
                *("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"),
                *("-keyout", str(key), "-out", str(csr), "-subj", subject),
            ],
            self.work,
        )
        os.chmod(key, 0o600)

    def _sign(self, csr: Path, out: Path, ext: str, sans: str, selfsign: bool = False) -> None:
        cnf = self.work / "openssl.cnf"
        cnf.write_text(_CNF.format(dir=self.work, sans=sans))
        start = time.gmtime(time.time() - BACKDATE_S)
        end = time.gmtime(time.time() + DAYS * 86400)
        args = ["ca", "-batch", "-config", str(cnf), "-in", str(csr), "-out", str(out), "-notext", "-rand_serial"]
        args += ["-startdate", time.strftime("%Y%m%d%H%M%SZ", start), "-enddate", time.strftime("%Y%m%d%H%M%SZ", end)]
        args += ["-extensions", ext, "-keyfile", str(self.key)]
        args += ["-selfsign"] if selfsign else ["-cert", str(self.work / "ca.pem")]
        _openssl(args, self.work)


def _openssl(args: list[str], cwd: Path) -> None:
    exe = shutil.which("openssl")
    if exe is None:
        raise CAError("openssl not found: install it (apt-get install openssl) to make the lab's CA")
    try:
        p = subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    except subprocess.TimeoutExpired:
        raise CAError(f"openssl {args[0]} did not finish within 60 s") from None
    if p.returncode != 0:
        last = (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1]
        raise CAError(f"openssl {args[0]} failed in {cwd}: {last}")


def fingerprint(cert: Path) -> str:
    """The SHA-256 fingerprint of a PEM certificate (openssl's colon-separated hex)."""
    exe = shutil.which("openssl") or "openssl"
    argv = [exe, "x509", "-in", str(cert), "-noout", "-fingerprint", "-sha256"]
    p = subprocess.run(argv, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise CAError(f"{cert}: not a certificate ({p.stderr.strip()})")
    return p.stdout.strip().split("=", 1)[-1]
