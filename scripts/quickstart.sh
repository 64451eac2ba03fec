#!/usr/bin/env bash
# Starts ldapgate in front of a throwaway local slapd with sample users.
# Installs slapd and the OpenLDAP tools first when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v slapd >/dev/null && [ ! -x /usr/sbin/slapd ] || ! command -v ldapsearch >/dev/null; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "slapd and ldap-utils are needed: sudo apt-get install -y slapd ldap-utils" >&2
        exit 2
    fi
    export DEBIAN_FRONTEND=noninteractive
    # The packaged slapd would start on 0.0.0.0:389 (the port the Active
    # Directory tests need): policy-rc.d's 101 tells invoke-rc.d not to start
    # it. The quick start runs a throwaway slapd of its own.
    policy=/usr/sbin/policy-rc.d
    made_policy=
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        made_policy=1
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slapd ldap-utils
    if [ -n "$made_policy" ]; then rm -f "$policy"; fi
fi
cargo build --bin ldapgate --example quickstart
exec target/debug/examples/quickstart
