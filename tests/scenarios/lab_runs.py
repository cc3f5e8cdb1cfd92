"""The scenario files that tests run against the real lab (Docker, QEMU, the capture), and
the test that runs each: ``{file: "test_file.py::test_name"}`` (a file of tests/scenarios, or a
path from the repository's root).

tests/scenarios/test_scenario_reference.py reads this table: every peer kind, action,
injection kind and assertion kind of docs/field-bugs.md must be used by one of these files,
and each entry must name a Docker test that exists and mentions its file. A scenario test
against the real lab that should count for the reference goes here.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

RUNS: dict[Path, str] = {
    REPO / "scenarios" / "udp-one-slot.yml": "test_scenario_run.py::test_real_bug_reproduces_on_1_25_0",
    HERE / "timeline-actions.yml": "test_scenario_run.py::test_timeline_impair_clear_and_injected_rst",
    HERE / "dns-peer.yml": "test_scenario_run.py::test_dns_peer_as_documented",
    HERE / "reference-tour.yml": "test_scenario_run.py::test_reference_tour",
    HERE / "app-example" / "app.yml": "test_scenario_app.py::test_app_and_packages_scenario_reproduces",
    # the examples' own tests (a path from the repository's root)
    REPO / "examples" / "mqtt-sensor" / "scenario.yml": "examples/mqtt-sensor/test_mqtt_sensor.py::"
    "test_sensor_survives_a_link_flap_and_a_broker_restart_without_losing_a_message",
    REPO / "examples" / "https-poller" / "scenario.yml": "examples/https-poller/test_https_poller.py::"
    "test_the_verdict_says_reproduced_with_every_check_held",
    REPO / "examples" / "microdot-server" / "scenario.yml": "examples/microdot-server/test_microdot_server.py::"
    "test_the_verdict_says_reproduced_with_every_check_held",
}
