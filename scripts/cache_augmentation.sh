#!/usr/bin/env bash
# The cache-augmentation experiments on the embedded model, exactly as data/results/ holds them (CPU protocol):
#   1. train a coprocessor (LoRA rank 8) and the pause-token control for N_L in N_LATENTS (default 4 16), all
#      with N_A = 8 ahead tokens, 300 steps of 8 samples, texts cut at 96 tokens, seed 0;
#   2. perplexity by ahead position on held-out text: the plain model (N_L = 0) and every run, same samples;
#   3. GSM8K, first 300 test questions, greedy, 256 new tokens: one augmentation by the N_L = 16 coprocessor
#      at the end of the prompt (the plain model is the baseline row of scripts/reproduce_table.sh gsm8k).
# Every step resumes where it stopped.
#
#   scripts/cache_augmentation.sh                    THREADS=1 OUTPUT_DIR=... N_LATENTS="4 16" STEPS=300
set -euo pipefail
out=${OUTPUT_DIR:-data/results}
threads=${THREADS:-2}
steps=${STEPS:-300}
model_dir=$out/smollm2-135m-instruct/cache_augmentation
runs=()
for kind in coprocessor pause; do
    for n in ${N_LATENTS:-4 16}; do
        run=$model_dir/runs/${kind}_n$n
        python -m cachesteer_lite.coprocessor train --kind "$kind" --n-latents "$n" --n-ahead 8 --steps "$steps" \
            --batch-size 8 --threads "$threads" --out "$run"
        runs+=("$run")
    done
done
python -m cachesteer_lite.coprocessor perplexity "${runs[@]}" --limit 150 --positions 4 --threads "$threads" \
    --json "$model_dir/perplexity.json"
python -m cachesteer_lite.evaluate --task gsm8k --method cache_augmentation --checkpoint "$model_dir/runs/coprocessor_n16" \
    --limit 300 --max-new-tokens 256 --batch-size 16 --threads "$threads" --output-dir "$out"
