#!/usr/bin/env bash
# `make run`: the demo's org units and people (local accounts), created once; prints who to sign in as.
# Passwords are demo passwords for a local, loopback-only run: never use them anywhere else.
set -euo pipefail
smits="${SMITS:-.venv/bin/smits}"
password="${SMITS_DEMO_PASSWORD:-smits-demo-password}"

unit() { "$smits" org-units create "$@" >/dev/null 2>&1 || true; }  # already there on a second run
person() { echo "$password" | "$smits" users create --password-stdin "$@" >/dev/null 2>&1 || true; }

unit --name group
unit --name strategy-office --parent group
unit --name bu-payments --parent group
unit --name bu-retail --parent group
person --email admin@smits.example --name "Ada Admin" --role admin --org-unit group
person --email sam@smits.example --name "Sam Strategy" --role strategy_manager --role contributor --org-unit strategy-office
person --email cfo@smits.example --name "Chris CFO" --role approver --org-unit group --manager sam@smits.example
person --email cio@smits.example --name "Indra CIO" --role approver --org-unit group --manager sam@smits.example
person --email pat@smits.example --name "Pat Payments" --role contributor --org-unit bu-payments --manager sam@smits.example
person --email rae@smits.example --name "Rae Retail" --role viewer --org-unit bu-retail --manager sam@smits.example

cat <<TEXT
people to sign in as (password: $password):
  sam@smits.example  strategy manager (owns and moves reviews)   cfo@smits.example, cio@smits.example  approvers
  pat@smits.example  contributor, bu-payments                    rae@smits.example  viewer, bu-retail
  admin@smits.example  admin (people, keys, subscriptions, audit)
TEXT
