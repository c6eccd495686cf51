#!/usr/bin/env bash
# Reproduce one task's row of the reproduction table on the embedded model, exactly as data/results/ holds it:
# the first 300 evaluation items, greedy, 256 new tokens, batches of 16; the steering methods choose c_values
# on 50 held-out items (never the evaluation set) from a grid around the paper's values, with 100 contrastive
# pairs of 5 demonstrations each. Every run resumes where it stopped.
#
#   scripts/reproduce_table.sh TASK [METHOD ...]      (default: all four methods)
#   THREADS=1 scripts/reproduce_table.sh csqa &        two tasks side by side, one CPU thread each
set -euo pipefail
task=$1
shift
methods=("$@")
[ ${#methods[@]} -gt 0 ] || methods=(baseline cot cache_steering cache_steering_cot)
# GSM8K is steered at much smaller coefficients in the paper (1-3) than the multiple-choice tasks (4-10).
if [ "$task" = gsm8k ]; then grid=(1 2 4); else grid=(2 6 10); fi
for method in "${methods[@]}"; do
    python -m cachesteer_lite.evaluate --task "$task" --method "$method" --limit 300 --max-new-tokens 256 \
        --batch-size 16 --threads "${THREADS:-2}" --select --select-limit 50 --grid-c-values "${grid[@]}" \
        --grid-n-pairs 100 --grid-n-demonstrations 5 --output-dir "${OUTPUT_DIR:-data/results}"
done
