#!/usr/bin/env bash
# Reproduce rows of the reproduction table. Every run resumes where it stopped.
#
#   scripts/reproduce_table.sh [--model MODEL] [--preset paper] TASK|all [METHOD ...]
#
# Default (the book's stored runs, data/results/, on the embedded model and a CPU): the first 300 evaluation items,
# greedy, 256 new tokens, batches of 16; the steering methods choose c_values on 50 held-out items (never the
# evaluation set) from a grid around the paper's values, with 100 contrastive pairs of 5 demonstrations each.
# Activation steering (method caa, not in the default list) uses the same pairs and chooses its multiplier on
# the same held-out items, from 0.5, 1, 3 (the paper's search) and 8, and its layer, as the paper did, from 5, 15
# and 25 of 30 (15 is mid-depth, where the paper's SmolLM2-360M layers 14-17 of 32 lie): twelve points against
# cache steering's three, about 50 minutes of one CPU thread a task. It runs in the cached mode: the paper's mode
# recomputes the whole sequence for every token, which a CPU cannot afford at 256 tokens.
#
# --preset paper (a GPU; book/colab.md says which GPU runs which model and how long it takes): the paper's own
# protocol for MODEL, one of its six models (e.g. Qwen/Qwen2-0.5B-Instruct): the whole evaluation splits, 768 new
# tokens, the authors' best settings for that model from their best_args.yaml (no selection), and the authors'
# GPT-4o traces, downloaded from their repository at run time (they are not shipped: no license).
#
#   scripts/reproduce_table.sh arc_challenge caa
#   THREADS=1 scripts/reproduce_table.sh csqa &        two tasks side by side, one CPU thread each
#   scripts/reproduce_table.sh --model HuggingFaceTB/SmolLM2-360M-Instruct --preset paper all
set -euo pipefail
model=smollm2-135m-instruct
preset=
while [[ $# -gt 0 && $1 == --* ]]; do
    case $1 in
        --model) model=$2; shift 2 ;;
        --preset) preset=$2; shift 2 ;;
        *) echo "unknown option $1; usage: $0 [--model MODEL] [--preset paper] TASK|all [METHOD ...]" >&2; exit 2 ;;
    esac
done
[[ $# -gt 0 ]] || { echo "usage: $0 [--model MODEL] [--preset paper] TASK|all [METHOD ...]" >&2; exit 2; }
task=$1
shift
tasks=("$task")
[ "$task" = all ] && tasks=(gsm8k arc_challenge csqa piqa)
methods=("$@")
[ ${#methods[@]} -gt 0 ] || methods=(baseline cot cache_steering cache_steering_cot)
for task in "${tasks[@]}"; do
    for method in "${methods[@]}"; do
        if [ "$preset" = paper ]; then
            python -m cachesteer_lite evaluate --model "$model" --preset paper --task "$task" --method "$method" \
                --batch-size "${BATCH_SIZE:-32}" --output-dir "${OUTPUT_DIR:-data/results}"
            continue
        fi
        [ -z "$preset" ] || { echo "unknown preset $preset (the one preset is: paper)" >&2; exit 2; }
        # GSM8K is steered at much smaller coefficients in the paper (1-3) than the multiple-choice tasks (4-10).
        if [ "$task" = gsm8k ]; then grid=(1 2 4); else grid=(2 6 10); fi
        layers=(5 15 25)  # CAA's layer: early, middle (the paper's relative depth) and late
        python -m cachesteer_lite evaluate --model "$model" --task "$task" --method "$method" --limit 300 \
            --max-new-tokens 256 --batch-size 16 --threads "${THREADS:-2}" --select --select-limit 50 \
            --grid-c-values "${grid[@]}" --grid-n-pairs 100 --grid-n-demonstrations 5 --grid-layers "${layers[@]}" \
            --grid-multipliers 0.5 1 3 8 --caa-mode cached --output-dir "${OUTPUT_DIR:-data/results}"
    done
done
