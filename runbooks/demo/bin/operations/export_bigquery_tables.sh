#!/usr/bin/env bash
# Export warehouse tables to the bucket for archival (simulated in the demo).
set -euo pipefail
dataset="${1:-nba_analytics}"
echo "Exporting tables of ${dataset} to gs://nba-props-platform-exports/${dataset}/ (simulated)"
echo "Nothing to do in the demo: no bucket is configured."
