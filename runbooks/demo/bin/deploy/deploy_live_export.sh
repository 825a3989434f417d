#!/usr/bin/env bash
# Deploy the live-export Cloud Function that serves tonight's API JSON (simulated in the demo).
set -euo pipefail
echo "Deploying live-export function (region us-west2) (simulated)"
echo "Nothing to deploy in the demo: the API export is nba_api.tonight_all_players."
