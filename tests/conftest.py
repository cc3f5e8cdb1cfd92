"""Shared pytest setup. The lab fixtures (lab, node, nodes, wire, host_peer) come from the
`mplab` pytest plugin (lab/pytest_plugin.py), registered by the package's entry point."""
