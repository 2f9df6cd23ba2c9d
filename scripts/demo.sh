#!/usr/bin/env bash
# The README's demo command: set up .venv/ and run the embedded default end to end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
.venv/bin/pluralign demo --out "${1:-demo_out}"
