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
    apt-get update -qq
    apt-get install -y -qq slapd ldap-utils
fi
cargo build --bin ldapgate --example quickstart
exec target/debug/examples/quickstart
