#!/usr/bin/env bash
# The cache-augmentation experiments on the embedded model, exactly as data/results/ holds them (CPU protocol):
#   1. train a coprocessor (LoRA rank 8) and the pause-token control for N_L = 4 and 16, all with N_A = 8 ahead
#      tokens, 200 steps of 8 samples, texts cut at 96 tokens, seed 0;
#   2. perplexity by ahead position on held-out text (150 texts, 4 split points each): the plain model (N_L = 0)
#      and all four runs, on the same samples;
#   3. GSM8K, first 300 test questions, greedy, 256 new tokens: one augmentation by the N_L = 16 coprocessor at
#      the end of the prompt (the plain model is the baseline row of scripts/reproduce_table.sh gsm8k).
# Every step resumes where it stopped. Stages can run separately (for two jobs side by side):
#
#   scripts/cache_augmentation.sh                     # everything, in order
#   scripts/cache_augmentation.sh train pause 16      # one training run
#   scripts/cache_augmentation.sh perplexity          # needs the four runs
#   scripts/cache_augmentation.sh gsm8k               # needs coprocessor_n16
#   environment: THREADS (default 2), OUTPUT_DIR (default data/results)
set -euo pipefail
out=${OUTPUT_DIR:-data/results}
threads=${THREADS:-2}
runs=$out/smollm2-135m-instruct/cache_augmentation/runs
all_runs=("$runs/coprocessor_n4" "$runs/coprocessor_n16" "$runs/pause_n4" "$runs/pause_n16")

train() {  # train KIND N_LATENTS
    python -m cachesteer_lite augmentation train --kind "$1" --n-latents "$2" --n-ahead 8 --steps 200 \
        --batch-size 8 --threads "$threads" --out "$runs/${1}_n$2"
}
perplexity() {
    python -m cachesteer_lite augmentation perplexity "${all_runs[@]}" --limit 150 --positions 4 \
        --threads "$threads" --json "$(dirname "$runs")/perplexity.json"
}
gsm8k() {
    python -m cachesteer_lite evaluate --task gsm8k --method cache_augmentation --checkpoint "$runs/coprocessor_n16" \
        --limit 300 --max-new-tokens 256 --batch-size 16 --threads "$threads" --output-dir "$out"
}

case ${1:-all} in
    train) train "$2" "$3" ;;
    perplexity) perplexity ;;
    gsm8k) gsm8k ;;
    all)
        for kind in coprocessor pause; do train "$kind" 4; train "$kind" 16; done
        perplexity
        gsm8k ;;
    *) echo "unknown stage $1: train KIND N_LATENTS | perplexity | gsm8k | all" >&2; exit 2 ;;
esac
