"""The certificate authority of one lab, made at ``up`` (docs/services.md), on ``lab.pki``.

Layout under the lab's run directory (``Topology.run_dir``)::

    ca/<CA>.key, ca/<CA>.pem, ca/...  the CA's key and openssl's bookkeeping (0700; never mounted)
    tls/ca.pem                        the CA certificate: copied onto every node as /certs/ca.pem
    tls/<svc>/ca.pem, <svc>.pem, <svc>.key   one daemon's CA copy, certificate and key: mounted
                                      read-only into that daemon's container only

``lab.pki`` does the openssl work (ECDSA P-256 keys: mbedTLS on the guest verifies them and
does ECDHE-ECDSA quickly, and the PEMs are small to copy onto a node; certificates start an
hour in the past, for a guest whose clock lags a little). This module adds what a lab needs:
a CA subject that is new every time (so two labs, or two runs of one lab, never share a CA),
IP SANs, a validity of a month, and the split between what the daemons may see and the CA key.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from . import pki
from .errors import LabError

VALID = (-pki.HOUR, 30 * pki.DAY)  # a lab lives hours or days; a month is plenty and still expires
_PREFIX = "mplab_lab_"  # the CA key's file name in ca/: mplab_lab_<lab>_CA_<random>.key


class CAError(LabError):
    """A lab CA is missing or broken."""


@dataclass(frozen=True)
class Issued:
    name: str
    cert: Path
    key: Path


@dataclass(frozen=True)
class LabCA:
    """The CA of one lab: ``LabCA.create(run_dir, "x")``, then ``issue("mqtt", [...], [...])``."""

    run_dir: Path

    @property
    def work(self) -> Path:
        return self.run_dir / "ca"

    @property
    def tls(self) -> Path:
        return self.run_dir / "tls"

    @property
    def cert(self) -> Path:
        """The CA certificate as the services and nodes see it (tls/ca.pem)."""
        return self.tls / "ca.pem"

    @property
    def key(self) -> Path:
        """The CA's private key (in ca/, which no container mounts)."""
        return self._pki().key_path

    @classmethod
    def create(cls, run_dir: Path, lab: str) -> LabCA:
        """A new CA in ``run_dir`` (any earlier CA there is removed first)."""
        ca = cls(Path(run_dir))
        for d in (ca.work, ca.tls):
            shutil.rmtree(d, ignore_errors=True)
        ca.work.mkdir(parents=True, mode=0o700)
        ca.tls.mkdir(parents=True, mode=0o755)
        made = pki.CA.make(ca.work, f"mplab lab {lab} CA {secrets.token_hex(4)}", key="ec", valid=VALID)
        os.chmod(made.key_path, 0o600)
        shutil.copyfile(made.cert_path, ca.cert)
        os.chmod(ca.cert, 0o644)
        return ca

    @classmethod
    def load(cls, run_dir: Path) -> LabCA | None:
        """The CA already in ``run_dir``, or None."""
        ca = cls(Path(run_dir))
        try:
            ca._pki()
        except CAError:
            return None
        return ca if ca.cert.is_file() else None

    def issue(self, name: str, dns: Sequence[str], ips: Sequence[str]) -> Issued:
        """A certificate for ``name`` (tls/<name>/<name>.pem, .key, beside a copy of ca.pem) with
        CN dns[0] and these SANs."""
        if not dns:
            raise CAError(f"certificate {name}: needs at least one DNS name")
        leaf = self._pki().issue(dns[0], key="ec", san=list(dns[1:]), valid=VALID, ips=list(ips))
        d = self.tls / name
        d.mkdir(mode=0o755, exist_ok=True)
        shutil.copyfile(self.cert, d / "ca.pem")
        os.chmod(d / "ca.pem", 0o644)
        key, cert = d / f"{name}.key", d / f"{name}.pem"
        shutil.copyfile(leaf.cert_path, cert)
        shutil.copyfile(leaf.key_path, key)
        os.chmod(key, 0o600)
        os.chmod(cert, 0o644)
        leaf.key_path.unlink()  # one copy of each key, in tls/
        return Issued(name, cert, key)

    def _pki(self) -> pki.CA:
        keys = sorted(self.work.glob(f"{_PREFIX}*.key")) if self.work.is_dir() else []
        if len(keys) != 1:
            raise CAError(f"{self.work}: no lab CA key there (found {len(keys)})")
        k = keys[0]
        return pki.CA(k.stem.replace("_", " "), k, k.with_suffix(".pem"), self.work)


def fingerprint(cert: Path) -> str:
    """The SHA-256 fingerprint of a PEM certificate (openssl's colon-separated hex)."""
    argv = ["openssl", "x509", "-in", str(cert), "-noout", "-fingerprint", "-sha256"]
    p = subprocess.run(argv, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise CAError(f"{cert}: not a certificate ({p.stderr.strip()})")
    return p.stdout.strip().split("=", 1)[-1]
