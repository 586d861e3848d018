"""Regenerate zip3.json: the states and IANA zones of every 3-digit ZIP prefix.

Source: the `zipcodes` package (PyPI, MIT; version recorded in the output), which ships one
record per ZIP code with its state and IANA time zone. Only needed to regenerate the table, so it
is not a runtime dependency:  pip install zipcodes && python dialer/compliance/rulepacks/gen_zip3.py
"""
from __future__ import annotations

import json
from collections import defaultdict
from importlib.metadata import version
from pathlib import Path


def main() -> None:
    import zipcodes  # noqa: PLC0415 - generation-time dependency only

    states: dict[str, set[str]] = defaultdict(set)
    zones: dict[str, set[str]] = defaultdict(set)
    for record in zipcodes.list_all():
        prefix = record["zip_code"][:3]
        if record.get("state"):
            states[prefix].add(record["state"])
        if record.get("timezone"):
            zones[prefix].add(record["timezone"])
    table = {p: {"states": sorted(states[p]), "zones": sorted(zones[p])} for p in sorted(states)}
    out = {"source": f"zipcodes {version('zipcodes')} (PyPI), one record per ZIP code",
           "prefixes": table}
    Path(__file__).with_name("zip3.json").write_text(json.dumps(out, indent=0, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
