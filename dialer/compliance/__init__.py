"""Compliance gate: decides immediately before each originate whether a call may be placed.

See docs/compliance.md. Entry point: ComplianceGate.decide(CallRequest) -> Decision.
"""
