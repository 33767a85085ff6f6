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

pytestmark = pytest.mark.interop

SCENARIOS = [
    # 1a: two pptp-linux clients through fixup's PAT to pptpd, MS-CHAPv2 + MPPE-128
    "pat_two_clients",
    # 1b: pppd + pptp-linux to fixup's terminate mode, ping and 1 MB to an inside host
    "term_pap",
    "term_chap",
    "term_mschap_mppe128",
    "term_mschapv2_mppe40_stateless",
    "term_mschapv2_mppe40_stateful",
    "term_mschapv2_mppe128_stateless",
    "term_mschapv2_mppe128_stateful",
    "term_mschapv2_mppe40_auto",  # a 40-bit-only pppd against mppe: auto (CCP follows the client's offer)
    # 1c: failures: expected pppd message, fixup's reason logged, session and pool address freed
    "fail_wrong_password",
    "fail_no_auth_overlap",
    "fail_mppe_refused",
    # issue 6: real pppd to fixup's terminate mode, MS-CHAPv2 checked by a real FreeRADIUS that
    # returns the MPPE-128 keys; accounting in its detail file; an accept without keys refused (403110)
    "term_radius_mschapv2_mppe128",
    "radius_accounting",
    "fail_radius_no_mppe_keys",
    # each fixup daemon of the run came up and stopped cleanly (rules removed, exit 0)
    "daemon_fixup-auto",
    "daemon_fixup-mppe128-stateful",
    "daemon_fixup-mppe40",
    "daemon_fixup-mppe40-stateful",
    "daemon_fixup-radius",
]


def explain(row: dict[str, Any], outdir: str) -> str:
    failed = [name for name, ok in row["checks"].items() if not ok]
    details = {k: v for k, v in row.items() if k not in ("scenario", "ok", "checks")}
    return (f"scenario {row['scenario']}: failed checks {failed} (logs in {outdir})\n"
            + json.dumps(details, indent=1, default=str)[:6000])


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario(interop_results: dict[str, dict[str, Any]], scenario: str) -> None:
    outdir = interop_results["_outdir"]["path"]
    assert "guest_runner" not in interop_results, explain(interop_results["guest_runner"], outdir)
    assert scenario in interop_results, f"scenario {scenario} did not run (logs in {outdir})"
    row = interop_results[scenario]
    assert row["checks"], f"scenario {scenario} has no checks"
    assert all(row["checks"].values()), explain(row, outdir)
