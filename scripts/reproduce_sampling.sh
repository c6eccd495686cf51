#!/usr/bin/env bash
# The book's stored sampling runs (the paper's second table): the baseline and cache steering sampled with the
# paper's five seeds and its SmolLM2 sampling settings (temperature 0.6, top-p 0.9, top-k 50), on the first LIMIT
# evaluation items (default 300, the questions of the greedy table), 256 new tokens. Cache steering samples with
# the settings its stored greedy run chose on held-out items, as the paper samples with its greedy configuration.
# Every run resumes where it stopped: on a 2-core CPU the four stored runs took 7.3 hours.
# The greedy runs are read from GREEDY_DIR (default data/results); the sampled runs go to OUTPUT_DIR (the same
# default). The number of items is a run setting, so a run of another size needs its own OUTPUT_DIR.
#
#   scripts/reproduce_sampling.sh TASK [TASK ...]
#   LAUNCH="torchrun --nproc_per_node 2" scripts/reproduce_sampling.sh arc_challenge csqa   # both cores, one run
#   LIMIT=100 OUTPUT_DIR=~/sampling-100 scripts/reproduce_sampling.sh arc_challenge csqa   # 100 items, elsewhere
set -euo pipefail
[[ $# -gt 0 ]] || { echo "usage: $0 TASK [TASK ...]" >&2; exit 2; }
model=smollm2-135m-instruct
results=${OUTPUT_DIR:-data/results}
for task in "$@"; do
    greedy=${GREEDY_DIR:-data/results}/$model/$task/cache_steering/results.json
    [ -f "$greedy" ] || { echo "no greedy cache-steering run at $greedy: run scripts/reproduce_table.sh $task first" >&2; exit 1; }
    # The greedy run's chosen pairs, demonstrations and c_values, as command-line options.
    read -r -a chosen < <(python -c "import json, sys; c = json.load(open(sys.argv[1]))['config']; \
print('--n-pairs', c['n_pairs'], '--n-demonstrations', c['n_demonstrations'], '--c-values', c['c_values'])" "$greedy")
    for method in baseline cache_steering; do
        options=()
        [ "$method" = baseline ] || options=("${chosen[@]}")
        ${LAUNCH:-python} -m cachesteer_lite evaluate --model "$model" --task "$task" --method "$method" \
            --limit "${LIMIT:-300}" --max-new-tokens 256 --batch-size 16 --threads "${THREADS:-1}" --sampling \
            "${options[@]}" --output-dir "$results"
    done
done
