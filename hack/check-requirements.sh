#!/usr/bin/env bash
# requirements/*.txt are what the Dockerfiles' pip installs (hash-pinned; images need no uv):
#   scorer.txt, operator.txt  `uv export --frozen` of uv.lock for the extra (the project itself left out)
#   build.txt                 pyproject's [build-system] requires (hatchling) and their dependencies
# This regenerates them and fails if the committed ones differ; --fix writes them instead.
# build.txt is compiled by uv against PyPI with the committed pins as preferences, so it changes only when
# pyproject's build requirements do.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
fix=false
[[ ${1:-} == --fix ]] && fix=true

uv=${UV:-}
for candidate in "$uv" "$repo/.venv/bin/uv" "$HOME/.local/bin/uv" "$(command -v uv || true)"; do
  if [[ -n $candidate && -x $candidate ]]; then uv=$candidate; break; fi
done
[[ -x $uv ]] || { echo "uv not found (make install installs it)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for extra in scorer operator; do
  "$uv" export --quiet --frozen --no-dev --extra "$extra" --no-emit-project >"$tmp/$extra.txt"
done

python3 -c 'import sys, tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))' \
  >"$tmp/build-system.in"
[[ -f requirements/build.txt ]] && cp requirements/build.txt "$tmp/build.txt"
"$uv" pip compile --quiet --generate-hashes --no-annotate --python-version 3.11 --python-platform linux \
  --custom-compile-command "hack/check-requirements.sh --fix" --output-file "$tmp/build.txt" "$tmp/build-system.in"

status=0
for f in scorer.txt operator.txt build.txt; do
  if $fix; then
    mkdir -p requirements
    cp "$tmp/$f" "requirements/$f"
  elif ! diff -u "requirements/$f" "$tmp/$f"; then
    echo "requirements/$f is stale: run hack/check-requirements.sh --fix" >&2
    status=1
  fi
done
$fix && echo "wrote requirements/{scorer,operator,build}.txt"
exit "$status"
