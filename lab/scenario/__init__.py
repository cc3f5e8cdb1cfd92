"""Scenario files: a field bug as YAML, run in a dedicated lab against a firmware, judged, bundled.

A scenario (``scenarios/*.yml``) says what the firmware is, which guest scripts to copy, which
host-side peers to start, a timeline of actions (guest code, impairments, link flaps, packet
injection, host sends) and what the bug looks like (assertions on guest output and on the
wire). ``expect: reproduces`` means: the assertions are the bug's *signature*; the verdict is

* ``reproduced``     every assertion held (the bug showed),
* ``not reproduced`` at least one did not (evidence for each one in verdict.md),
* ``error``          the scenario itself could not run (lab, firmware, a broken step).

API::

    scn = load("scenarios/udp-one-slot.yml")          # ScenarioError: "<file>:<line>: <field>: ...; fix: ..."
    fw = resolve_firmware("1.26.1")                  # builds with make -C firmware if needed
    result = run(scn, fw, out=Path("artifacts/repro/x"))
    result.verdict, result.bundle

The package, one concern per module:

=============  ==========================================================================
model.py       the schema (Scenario, Step, ...) and the results (Result, Check, ...)
loader.py      YAML with line numbers; the validation helpers (file:line: field: ...; fix)
schema.py      ``load()``: the file's top level, files, peers, timeline and assertions
actions.py     the action registry: each action's validation and run side by side
firmware.py    ``resolve_firmware()``: a version (built with make) or a firmware.elf
runner.py      ``run()`` / ``Runner``: the lab, capture, peers and the timeline
judge.py       the assertions and exec ``expect`` against what the run saw
bundle.py      verdict.json and verdict.md
=============  ==========================================================================

The file format is documented in docs/field-bugs.md.
"""

from __future__ import annotations

from ..services import PORTS as SERVICES
from .actions import ACTIONS, IMPAIR_KEYS, Action, lookup, register
from .bundle import bundle_dir, write_verdict
from .firmware import Firmware, known_versions, repo_root, resolve_firmware
from .judge import check_expect, match, spec_str
from .loader import LAYERS, Validator
from .model import (
    ERROR,
    EXIT_CODES,
    NAME_RE,
    NODE_RE,
    NOT_REPRODUCED,
    REPRODUCED,
    VAR_RE,
    VERSION_RE,
    AppDeploy,
    Assertion,
    Check,
    Expect,
    Expected,
    FileCopy,
    PackageSet,
    PacketRef,
    Peer,
    Progress,
    Result,
    Scenario,
    ScenarioError,
    Step,
    StepResult,
    WireSpec,
    WwwFile,
)
from .runner import Runner, ScenarioPeer, run
from .schema import PEER_KINDS, TOP_KEYS, load

__all__ = [
    "ACTIONS",
    "ERROR",
    "EXIT_CODES",
    "IMPAIR_KEYS",
    "LAYERS",
    "NAME_RE",
    "NODE_RE",
    "NOT_REPRODUCED",
    "PEER_KINDS",
    "REPRODUCED",
    "SERVICES",
    "TOP_KEYS",
    "VAR_RE",
    "VERSION_RE",
    "Action",
    "AppDeploy",
    "Assertion",
    "Check",
    "Expect",
    "Expected",
    "FileCopy",
    "Firmware",
    "PackageSet",
    "PacketRef",
    "Peer",
    "Progress",
    "Result",
    "Runner",
    "Scenario",
    "ScenarioError",
    "ScenarioPeer",
    "Step",
    "StepResult",
    "Validator",
    "WireSpec",
    "WwwFile",
    "bundle_dir",
    "check_expect",
    "known_versions",
    "load",
    "lookup",
    "match",
    "register",
    "repo_root",
    "resolve_firmware",
    "run",
    "spec_str",
    "write_verdict",
]
