"""fixup against PPTP stacks nobody here wrote (issue 5): pppd 2.4.9 + pptp-linux 1.10 clients,
poptop pptpd 1.4.0, in Debian's kernel under virtme-ng.  One VM boot runs every scenario
(conftest.py); each test here asserts on one scenario's result line.

PAT (RFC 2637 section 3.1 control connection, section 4 enhanced GRE through one PAT address),
terminate mode (PAP RFC 1334, CHAP-MD5 RFC 1994, MS-CHAP RFC 2433, MS-CHAPv2 RFC 2759,
MPPE RFC 3078/3079), and failures.
"""
from __future__ import annotations

import json
from typing import Any

import pytest

from vm_scenarios import SCENARIOS

pytestmark = pytest.mark.interop



def explain(row: dict[str, Any], outdir: str) -> str:
    failed = [name for name, ok in row["checks"].items() if not ok]
    details = {k: v for k, v in row.items() if k not in ("scenario", "ok", "checks")}
    return (f"scenario {row['scenario']}: failed checks {failed} (logs in {outdir})\n"
            + json.dumps(details, indent=1, default=str)[:6000])


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario(interop_results: dict[str, dict[str, Any]], scenario: str) -> None:
    outdir = interop_results["_outdir"]["path"]
    assert "guest_runner" not in interop_results, explain(interop_results["guest_runner"], outdir)
    assert scenario in interop_results, interop_results["_outdir"]["missing"]
    row = interop_results[scenario]
    assert row["checks"], f"scenario {scenario} has no checks"
    assert all(row["checks"].values()), explain(row, outdir)
