"""The scenarios of the VM interop tier, in the order the guest runs them
(guest/run_scenarios.py); the tests assert on each, the conftest names the ones that did not run."""
from __future__ import annotations

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
    # one fixup daemon for the run (issue 14): it came up, took each later phase's policy by a
    # reload in the same process (`fixup reload` once, SIGHUP after), and stopped cleanly
    "daemon_start",
    "reload_fixup-mppe128-stateful",
    "reload_fixup-mppe40",
    "reload_fixup-mppe40-stateful",
    "reload_fixup-radius",
    "daemon_stop",
]
