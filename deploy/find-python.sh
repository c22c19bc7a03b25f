#!/usr/bin/env bash
# Print the path of a Python interpreter of version X.Y (e.g. 3.12) on this machine, or exit 1.
#   Looks at pythonX.Y on PATH, then at pyenv's versions. Used by `make` and the test driver.
set -euo pipefail
want="${1:?usage: find-python.sh X.Y}"

works() { "$1" -c "import sys, venv; sys.exit(0 if '%d.%d' % sys.version_info[:2] == '$want' else 1)" >/dev/null 2>&1; }

candidates=()
if command -v "python$want" >/dev/null 2>&1; then candidates+=("$(command -v "python$want")"); fi
for dir in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$want".*/bin /usr/bin /usr/local/bin; do
  [ -x "$dir/python$want" ] && candidates+=("$dir/python$want")
done
for candidate in "${candidates[@]}"; do
  if works "$candidate"; then echo "$candidate"; exit 0; fi
done
exit 1
