#!/usr/bin/env bash
# crds/ is the single source of the CRDs; the chart carries a copy in charts/modelapp-operator/crds/.
# Fails (with a diff) when a copy differs or is missing, or when the chart has a CRD file that is
# neither from crds/ nor kopf's peering CRDs (which only the chart installs).
#   hack/check-chart-crds.sh          check
#   hack/check-chart-crds.sh --fix    copy crds/ into the chart, then check
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
src="$repo/crds"
dst="$repo/charts/modelapp-operator/crds"
chart_only=(kopf.dev_peerings.yaml)

if [[ "${1:-}" == --fix ]]; then
  cp "$src"/*.yaml "$dst"/
fi

rc=0
for f in "$src"/*.yaml; do
  name=$(basename "$f")
  if ! diff -u --label "crds/$name" --label "charts/modelapp-operator/crds/$name" "$f" "$dst/$name" 2>/dev/null; then
    [[ -f "$dst/$name" ]] || echo "missing: charts/modelapp-operator/crds/$name" >&2
    rc=1
  fi
done
for f in "$dst"/*.yaml; do
  name=$(basename "$f")
  [[ -f "$src/$name" ]] && continue
  [[ " ${chart_only[*]} " == *" $name "* ]] && continue
  echo "unexpected: charts/modelapp-operator/crds/$name is not in crds/" >&2
  rc=1
done
if ((rc)); then
  echo "chart CRDs are out of sync with crds/: run hack/check-chart-crds.sh --fix" >&2
else
  echo "chart CRDs match crds/"
fi
exit $rc
