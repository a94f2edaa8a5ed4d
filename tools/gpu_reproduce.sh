#!/usr/bin/env bash
# Reproduce profiles on a GPU machine that has torch but no package index and no internet.
#
#   bash tools/gpu_reproduce.sh PROFILE:MINUTES [PROFILE:MINUTES ...]
#
# Expects, next to the code: wheels/ (tqdm, clean-fid, safetensors, requests and its
# dependencies) and data/FashionMNIST/raw/ (the four IDX .gz files); `make wheels` prepares
# both. Each profile runs `python -m ddgan_core reproduce` for at most MINUTES (no new
# experiment starts after 80% of it; the run is cut at 100%); finished entries are packed after
# each profile into ${OUT:-.}/results-PROFILE.tar.gz, to be merged with
# `python -m ddgan_core unpack`. A later run with the same cache resumes.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-.}
site=$PWD/.gpu_site
for wheel in wheels/*.whl; do  # one by one: a wheel for another Python must not stop the rest
  python -m pip install -q --no-index --no-deps --target "$site" "$wheel" 2>/dev/null \
    || echo "skipped $wheel (not for this Python)"
done
python -c "import cleanfid, tqdm, safetensors" || { echo "missing a dependency in wheels/"; exit 1; }
export PYTHONPATH=$PWD:$site
export DDGAN_CACHE_DIR=$PWD/.gpu_results
export PYTHONUNBUFFERED=1
python -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
for spec in "$@"; do
  profile=${spec%%:*}
  minutes=${spec##*:}
  budget=$(python -c "print($minutes * 0.8)")
  echo "=== reproduce --profile $profile (at most $minutes min) ==="
  timeout "$(python -c "print(int($minutes * 60))")" \
    python -m ddgan_core reproduce --profile "$profile" --budget-minutes "$budget" 2>&1 \
    | tr '\r' '\n' | grep -vE "it/s|s/it|step/s" || echo "profile $profile ended early"
  python - "$out/results-$profile.tar.gz" "$profile" <<'PY'
import json, sys
from ddgan_core.cache import ResultCache
cache = ResultCache()
entries = [e for e in cache.entries()
           if json.loads((e / "config.json").read_text()).get("profile") == sys.argv[2]]
cache.pack(sys.argv[1], entries)
print(f"packed {len(entries)} entries into {sys.argv[1]}")
PY
done
