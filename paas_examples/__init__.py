"""Example programs for paas, and the ``paas demo`` job that proves them.

    vdf       a Wesolowski VDF over a class group, proven with chiavdf (Apache-2.0)
    groth16   a Groth16 proof of the circom circuit chain.circom, with groth16py
    demo      runs both on their own backend pools and verifies every proof

Licensing: groth16py is GPL-3.0 and paas is Apache-2.0. Only ``groth16.py`` may
import groth16py, and only inside its functions, so importing paas, paas.cli or
any module here never loads it; it is loaded when a Groth16 program is actually
set up or proven.
"""
