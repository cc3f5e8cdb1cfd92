"""The service daemons without Docker: x-mplab.services, the CA, the health wait, and the
tables that must agree (lab/daemons.py, docker-compose.yml, the image's scripts)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lab import lanservices
from lab.ca import LabCA, fingerprint
from lab.daemons import DAEMONS, NAMES
from lab.errors import ConfigError, LabError, LabTimeout
from lab.runtime import ContainerInfo
from lab.topology import Topology

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"


def compose_with(tmp_path: Path, services: object) -> Path:
    doc = yaml.safe_load(COMPOSE.read_text())
    if services is None:
        doc["x-mplab"].pop("services")
    else:
        doc["x-mplab"]["services"] = services
    p = tmp_path / "docker-compose.yml"
    p.write_text(yaml.safe_dump(doc))
    return p


def test_the_default_lab_starts_every_daemon(tmp_path: Path) -> None:
    assert Topology.load(lab="wtgu", compose_file=COMPOSE).services == ("mqtt", "www", "ntp")
    assert Topology.load(lab="wtgu", compose_file=compose_with(tmp_path, None)).services == NAMES


@pytest.mark.parametrize(("given", "want"), [(["ntp"], ("ntp",)), (["ntp", "mqtt"], ("mqtt", "ntp")), ([], ())])
def test_x_mplab_services_selects(tmp_path: Path, given: list[str], want: tuple[str, ...]) -> None:
    topo = Topology.load(lab="wtgu", compose_file=compose_with(tmp_path, given))
    assert topo.services == want
    assert topo.env()["MPLAB_LAB_SERVICES"] == " ".join(want)


@pytest.mark.parametrize("bad", [["mqtt", "redis"], "mqtt", [1]])
def test_a_bad_services_list_is_one_line_naming_the_valid_ones(tmp_path: Path, bad: object) -> None:
    with pytest.raises(ConfigError) as e:
        Topology.load(lab="wtgu", compose_file=compose_with(tmp_path, bad))
    msg = str(e.value)
    assert "\n" not in msg and "x-mplab.services" in msg and "mqtt, www, ntp" in msg, msg


def test_the_cli_prints_a_bad_services_list_as_one_line(tmp_path: Path) -> None:
    p = subprocess.run(
        [sys.executable, "-m", "lab", "--file", str(compose_with(tmp_path, ["redis"])), "--lab", "wtgu", "up"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 2, p
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown service 'redis'" in lines[0] and "Traceback" not in p.stderr, p.stderr


def test_each_daemon_has_its_address_name_and_run_dir() -> None:
    topo = Topology.load(lab="wtgu", compose_file=COMPOSE)
    base = topo.subnet.network_address
    assert [str(topo.service_ip(n)) for n in NAMES] == [str(base + 11), str(base + 12), str(base + 13)]
    assert str(topo.service_ip6("mqtt")).endswith("::11")
    assert topo.service_name("www") == "www.lab"
    assert topo.run_dir == REPO / "build" / "labs" / "wtgu"
    assert topo.env()["MPLAB_RUN_DIR"] == str(topo.run_dir)


def test_compose_and_the_image_know_every_daemon() -> None:
    doc = yaml.safe_load(COMPOSE.read_text())
    topo = Topology.load(lab="default", compose_file=COMPOSE)  # the default lab: the compose file's own defaults
    for name in DAEMONS:
        svc = doc["services"][name]
        assert svc["command"] == [name]
        assert svc["labels"]["mplab.service"] == name and svc["labels"]["mplab.role"] == "service"
        net = svc["networks"]["lan"]
        assert net["ipv4_address"].endswith(f":-{topo.service_ip(name)}}}"), net
        assert net["ipv6_address"].endswith(f":-{topo.service_ip6(name)}}}"), net
    assert doc["x-mplab"]["services"] == list(NAMES)
    health = (REPO / "images/services/health.py").read_text()
    daemon = (REPO / "images/services/daemon.sh").read_text()
    for name in NAMES:
        assert f'"{name}": [' in health and f"\n{name})\n" in daemon, name


def test_two_cas_differ_and_a_certificate_names_its_service(tmp_path: Path) -> None:
    a, b = LabCA.create(tmp_path / "a", "x"), LabCA.create(tmp_path / "b", "x")
    assert fingerprint(a.cert) != fingerprint(b.cert)
    leaf = a.issue("mqtt", ["mqtt.lab"], ["10.77.0.11", "fd6d:706c:6162:4d00::11"])

    def verify(ca: LabCA) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["openssl", "verify", "-CAfile", str(ca.cert), str(leaf.cert)], capture_output=True, text=True
        )

    assert verify(a).returncode == 0
    assert verify(b).returncode != 0  # another lab's CA does not vouch for it
    sans = subprocess.run(
        ["openssl", "x509", "-in", str(leaf.cert), "-noout", "-ext", "subjectAltName"], capture_output=True, text=True
    ).stdout
    assert "DNS:mqtt.lab" in sans and "IP Address:10.77.0.11" in sans and "FD6D:706C:6162:4D00:0:0:0:11" in sans, sans
    assert leaf.key.stat().st_mode & 0o077 == 0 and a.key.stat().st_mode & 0o077 == 0
    assert a.key.parent != leaf.key.parent  # the CA key is not in tls/, which the daemons mount
    assert LabCA.load(tmp_path / "a") == LabCA(tmp_path / "a")
    assert LabCA.load(tmp_path / "none") is None


class FakeRuntime:
    def __init__(self, running: bool = True, answer: str = "fail: mqtt 8883/tls: [Errno 111] refused") -> None:
        self.running, self.answer, self.probes = running, answer, 0

    def containers(self, lab: str) -> list[ContainerInfo]:
        return [
            ContainerInfo("id", f"mplab-{lab}_mqtt_1", "service", 1, "running" if self.running else "exited",
                          self.running, 0 if self.running else 1, "10.77.0.11", None, 1, {"mplab.service": "mqtt"})
        ]  # fmt: skip

    def exec(self, container: str, argv: list[str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        self.probes += 1
        return subprocess.CompletedProcess(argv, 1, self.answer, "")


def test_an_unhealthy_service_is_one_line_naming_it_and_its_log() -> None:
    topo = Topology.load(lab="wtgu", compose_file=COMPOSE)
    rt = FakeRuntime()
    with pytest.raises(LabTimeout) as e:
        lanservices.wait_healthy(rt, topo, timeout=1.0)  # type: ignore[arg-type]
    msg = str(e.value)
    assert "\n" not in msg and "service mqtt not healthy" in msg and "8883/tls" in msg, msg
    assert "docker logs mplab-wtgu_mqtt_1" in msg, msg
    assert rt.probes >= 2  # it retried


def test_an_exited_service_fails_at_once() -> None:
    topo = dataclass_services(Topology.load(lab="wtgu", compose_file=COMPOSE), ("mqtt",))
    rt = FakeRuntime(running=False)
    with pytest.raises(LabTimeout, match=r"service mqtt exited .*docker logs mplab-wtgu_mqtt_1"):
        lanservices.wait_healthy(rt, topo, timeout=600.0)  # type: ignore[arg-type]
    assert rt.probes == 0


def dataclass_services(topo: Topology, services: tuple[str, ...]) -> Topology:
    import dataclasses

    return dataclasses.replace(topo, services=services)


def test_prepare_makes_a_new_ca_unless_the_lab_runs(tmp_path: Path) -> None:
    topo = dataclass_services(Topology.load(lab="wtgu", compose_file=compose_with(tmp_path, None)), NAMES)
    first = fingerprint(lanservices.prepare(topo, fresh=True).cert)
    assert (topo.run_dir / "www").is_dir()
    tls = topo.run_dir / "tls"
    assert sorted(p.name for p in tls.iterdir()) == ["ca.pem", "mqtt", "www"]  # no certificate for ntp
    assert sorted(p.name for p in (tls / "www").iterdir()) == ["ca.pem", "www.key", "www.pem"]  # its own only
    assert fingerprint(lanservices.prepare(topo, fresh=False, daemons_up=True).cert) == first  # kept
    assert fingerprint(lanservices.prepare(topo, fresh=True).cert) != first  # a stale run dir: new CA
    assert lanservices.remove(topo) == [f"run dir {topo.run_dir}"] and not topo.run_dir.exists()
    with pytest.raises(LabError, match="running, but its CA is gone"):
        lanservices.prepare(topo, fresh=False, daemons_up=True)
    assert not topo.run_dir.exists()


def test_services_must_be_defined_in_the_compose_file(tmp_path: Path) -> None:
    doc = yaml.safe_load(COMPOSE.read_text())
    del doc["services"]["www"]
    doc["x-mplab"].pop("services")
    p = tmp_path / "docker-compose.yml"
    p.write_text(yaml.safe_dump(doc))
    # without the key: the daemons the file defines
    assert Topology.load(lab="wtgu", compose_file=p).services == ("mqtt", "ntp")
    doc["x-mplab"]["services"] = ["www"]
    p.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match="names www, but the file defines no such compose service"):
        Topology.load(lab="wtgu", compose_file=p)
