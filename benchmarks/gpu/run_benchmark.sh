#!/usr/bin/env bash
# Prepare an offline CUDA machine (PyTorch preinstalled, no network) and run the full benchmark on
# amazon-beauty (or on ml-100k, which ships inside RecBole). Run from anywhere; see benchmarks/gpu/README.md.
#
#   bash benchmarks/gpu/run_benchmark.sh --prepare [--key=value ...]  # here: .data/, .esim/, check .whl/
#   bash benchmarks/gpu/run_benchmark.sh --prepare-esim [--key=value ...]  # here: .esim/ only
#   bash benchmarks/gpu/run_benchmark.sh [--key=value ...]   # there: install, then benchmark
#
# Extra --key=value arguments go to `python -m recbole_eimf.benchmark` after the defaults below
# (e.g. --epochs=50 --seeds=2020 --models=SASRec,ComiRecSA). Environment:
#   DATASET      amazon-beauty (default; its files travel in .data/) or ml-100k (inside RecBole)
#   REFERENCE    the model every other is compared with in results.md (default SASRec when it runs)
#   MODELS       models to run (default: each backbone next to EIMF on it, then RecBole's baselines)
#   SEEDS        seeds (default 2020,2021,2022)
#   JOBS         runs at a time on the one GPU, each its own process (default 12; 1 = one by one)
#   RESULTS_DIR  output folder (default benchmark_results/<dataset> in the repository)
#   OUT          set on the workplace's device machine: what comes back from there is packed into
#                $OUT/<dataset>/ as at most four files (README: "What comes back")
#   TIME_LIMIT_S stop the benchmark or the search this many seconds after the script started,
#                keeping every finished run or trial (the reports are rebuilt from them)
#   RESUME_FROM  an earlier, interrupted run's runs.jsonl (with TUNE: its trials.jsonl) to continue from
#   PYTHON       the Python that holds CUDA PyTorch (default python3)
#   ALLOW_CPU=1  run even if PyTorch sees no GPU (for a dry run of this script)
#   TUNE         a model to tune instead of the benchmark (e.g. TransMI): the project's tuner with
#                PARAMS_FILE (default props/hyper/<model, lower case>.hyper), ALGO (random),
#                MAX_EVALS (20), JOBS trials at a time, into props/tuned/; the trials and the tuned
#                files are copied to $RESULTS_DIR/tuning/
#   ESIM_DIR     ESIM's semantic targets built here by --prepare (default .esim/, which travels):
#                EIMF runs there read them instead of building their own; empty: not used
#   ESIM_TEXT_ENCODER  the text encoder they are built with here and named by there
#                (default sentence-transformers: all-MiniLM-L6-v2, which the CUDA image lacks)
set -euo pipefail
export PYTHONUNBUFFERED=1

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"
PYTHON="${PYTHON:-python3}"
DATASET="${DATASET:-amazon-beauty}"
DATA_DIR="$REPO/.data"
WHEEL_DIR="$REPO/.whl"
MODELS="${MODELS:-ComiRecSA,EIMF-ComiRecSA,ComiRecDR,EIMF-ComiRecDR,MIND,EIMF-MIND,TransMI,EIMF-TransMI,EIMF-TransMI-max-u2000,TransMI-K1,TransMI-target,SASRec,GRU4Rec,SINE,BERT4Rec,SASRecF}"
SEEDS="${SEEDS:-2020,2021,2022}"
# One small recommender leaves a GPU mostly idle (RecBole's batches are built on one CPU core), so
# several runs share it; 12 leaves a core each on a 16-core machine.
JOBS="${JOBS:-12}"
RESULTS_DIR="${RESULTS_DIR:-$REPO/benchmark_results/$DATASET}"
ESIM_DIR="${ESIM_DIR-$REPO/.esim}"
ESIM_TEXT_ENCODER="${ESIM_TEXT_ENCODER:-sentence-transformers}"
# What the project needs at run time besides torch and numpy (pyproject.toml's dependencies).
# pip keeps each one that is installed in a matching version, and takes the rest from .whl/.
REQUIREMENTS=(
    "pandas<3" "colorlog==4.7.2" "colorama==0.4.4" "thop" "tabulate" "texttable" "tensorboard"
    "matplotlib" "scikit-learn" "scipy" "plotly" "psutil" "pyyaml" "tqdm"
    "hyperopt==0.2.5" "setuptools<81"
)

log() { echo "[run_benchmark] $*"; }
die() { echo "[run_benchmark] error: $*" >&2; exit 1; }

# Runs "$@" until TIME_LIMIT_S seconds after this script started (no limit when unset). timeout
# signals the command's whole process group, so parallel runs stop with it; finished runs and
# trials are already on disk (runs.jsonl, trials.jsonl are appended as each one ends).
limited() {
    if [[ -z "${TIME_LIMIT_S:-}" ]]; then "$@"; return; fi
    local left=$(( TIME_LIMIT_S - SECONDS ))
    (( left > 0 )) || { log "TIME_LIMIT_S=$TIME_LIMIT_S already spent before the run started"; return 124; }
    log "time limit: $left s from now (TIME_LIMIT_S=$TIME_LIMIT_S)"
    timeout "$left" "$@"
}

# The device machine returns at most 8 files from $OUT, at most two folders down and 16 MiB each:
# the files to read at once go to $OUT/<dataset>/ as they are, the whole folder as one archive
# (without checkpoints and the ESIM cache, which a later run rebuilds).
deliver() {  # deliver <archive name> <folder> <file to copy as is>...
    [[ -n "${OUT:-}" ]] || return 0
    local name="$1" folder="$2" dest="$OUT/$DATASET" f
    shift 2
    mkdir -p "$dest"
    for f in "$@"; do
        if [[ -f "$f" ]]; then cp "$f" "$dest/"; fi
    done
    tar -C "$(dirname "$folder")" --exclude=checkpoints --exclude=esim -czf "$dest/$name" "$(basename "$folder")" \
        || log "warning: packing $folder into $dest/$name failed"
    for f in "$dest"/*; do
        (( $(stat -c %s "$f") <= 16 * 1024 * 1024 )) || log "warning: $f is over 16 MiB and will not come back"
    done
    log "packed for the way back: $(cd "$dest" && ls | paste -sd' ') in $dest"
}

stage_data() {
    # The atomic files only (not raw/), into the git-ignored .data/ that travels with the tree.
    local target="$DATA_DIR/$DATASET"
    if [[ "$DATASET" == ml-100k ]]; then
        log "data: ml-100k ships inside RecBole (nothing to copy)"
        return
    fi
    if [[ -s "$target/$DATASET.inter" && -s "$target/$DATASET.item" ]]; then
        log "data: $target (already there)"
        return
    fi
    local source
    for source in "$REPO/dataset/$DATASET" "${DATA_SOURCE:-$REPO/dataset}/$DATASET"; do
        if [[ -s "$source/$DATASET.inter" ]]; then
            mkdir -p "$target.tmp"
            cp "$source/$DATASET.inter" "$source/$DATASET.item" "$target.tmp/"
            chmod u+w "$target.tmp"/*  # the source may be read-only
            rm -rf "$target" && mv "$target.tmp" "$target"
            log "data: copied $source -> $target"
            return
        fi
    done
    die "no $DATASET data: neither $target nor $REPO/dataset/$DATASET (or \$DATA_SOURCE/$DATASET). Put its atomic files there, run --prepare, and bring .data/ along."
}

# Whether this invocation trains EIMF (whose runs read ESIM's targets): the tuned model, or an
# EIMF variant among MODELS.
uses_esim() {
    if [[ -n "${TUNE:-}" ]]; then [[ "$TUNE" == EIMF ]]; else [[ ",$MODELS," == *,EIMF* ]]; fi
}

# ESIM's targets for this invocation's EIMF models (MODELS, or TUNE), built here into $ESIM_DIR with
# $ESIM_TEXT_ENCODER, so that runs there train on the targets CPU runs here use instead of
# building their own with the encoder the CUDA image has (tfidf). Same DATASET, MODELS or TUNE,
# SEEDS and --key=value arguments as the run there: they decide which targets a run reads.
prepare_esim() {
    [[ -n "$ESIM_DIR" ]] || { log "ESIM: ESIM_DIR is empty, nothing prepared"; return 0; }
    uses_esim || { log "ESIM: no EIMF model to prepare targets for (MODELS, TUNE)"; return 0; }
    if [[ "$ESIM_TEXT_ENCODER" == sentence-transformers ]] && ! "$PYTHON" -c "import sentence_transformers" 2>/dev/null; then
        die "ESIM: sentence-transformers is not installed here (pip install -e '.[text]'), or set ESIM_TEXT_ENCODER"
    fi
    local scratch status=0
    scratch="$(mktemp -d)"
    "$PYTHON" -m recbole_eimf.benchmark --dataset="$DATASET" --models="${TUNE:-$MODELS}" --seeds="${SEEDS%%,*}" \
        --esim_only=True --esim_cache_dir="$ESIM_DIR" --text_encoder="$ESIM_TEXT_ENCODER" --data_path=.data \
        --output_dir="$scratch" "$@" || status=$?
    # Runs read each targets folder's manifest.json and semantic_targets.pt only: not the item
    # embeddings (18 MB on amazon-beauty), tiktoken's files, nor the readable interests.md/.json
    # (8 MB for 1,939 users; the carry is 64 MiB in all).
    rm -rf "$scratch" "$ESIM_DIR/$DATASET/item_embeddings" "$ESIM_DIR/tiktoken"
    if [[ -d "$ESIM_DIR/$DATASET/targets" ]]; then
        find "$ESIM_DIR/$DATASET/targets" -name 'interests.*' -delete
    fi
    (( status == 0 )) || die "ESIM: building the targets failed (above)"
    log "ESIM: targets ready to travel in $ESIM_DIR/$DATASET ($(du -sh "$ESIM_DIR" | cut -f1), $ESIM_TEXT_ENCODER)"
}

check_wheels() {
    ls "$WHEEL_DIR"/recbole-1.2.1-*.whl >/dev/null 2>&1 \
        || die "no RecBole wheel in $WHEEL_DIR: run benchmarks/gpu/gather_wheels.sh where PyPI is reachable, and bring .whl/ along."
}

install() {
    "$PYTHON" -c "import torch" 2>/dev/null || die "$PYTHON has no torch: set PYTHON to the interpreter that holds CUDA PyTorch."
    if "$PYTHON" -c "import importlib.metadata as m, sys; sys.exit(m.version('recbole') != '1.2.1')" 2>/dev/null; then
        log "recbole 1.2.1 already installed"
    else
        check_wheels
        # --no-deps: RecBole pins ray<=2.6.3, which has no Python 3.12 wheels and is not needed.
        "$PYTHON" -m pip install -q --no-index --no-deps --no-cache-dir "$WHEEL_DIR"/recbole-1.2.1-*.whl
    fi
    # Resolved against what is installed: torch and numpy stay as they are (thop's and pandas'
    # requirements are met by them), pandas 3 is replaced by pandas 2, missing packages come from .whl/.
    "$PYTHON" -m pip install -q --no-index --find-links "$WHEEL_DIR" --no-cache-dir "${REQUIREMENTS[@]}" \
        || die "installing ${REQUIREMENTS[*]} from $WHEEL_DIR failed: gather the missing wheels (gather_wheels.sh --all) and retry."
    # The project itself, editable and without dependencies or build isolation (no index to fetch
    # setuptools from: the image's own setuptools builds it); not again where this checkout is
    # already what imports (a warm machine, this script's test beside others using the package).
    # (Asked from / : from the repository, Python would find the package in the working directory.)
    if (cd / && REPO="$REPO" "$PYTHON" -c "import os, sys, recbole_eimf.props as p; sys.exit(not os.path.realpath(p.__path__[0]) == os.path.realpath(os.environ['REPO'] + '/props'))") 2>/dev/null; then
        log "recbole_eimf already installed from $REPO"
    else
        "$PYTHON" -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir -e "$REPO"
    fi
}

# What got installed, and the GPU PyTorch sees (GPU_NAME, empty for none), in one interpreter
# start (each costs seconds of the device's time).
check_python_and_gpu() {
    local report
    report="$("$PYTHON" - <<'EOF'
import pandas, torch
import recbole_eimf, recbole
assert pandas.__version__.split(".")[0] != "3", f"pandas {pandas.__version__}: RecBole needs pandas < 3"
print(f"[run_benchmark] python OK: torch {torch.__version__} (CUDA {torch.version.cuda}), recbole {recbole.__version__}, "
      f"pandas {pandas.__version__}, recbole_eimf {recbole_eimf.__version__}")
print("gpu=" + (torch.cuda.get_device_name(0) if torch.cuda.is_available() else ""))
EOF
)" || die "the installed packages do not import (above)"
    echo "${report%$'\n'gpu=*}"
    GPU_NAME="${report##*$'\n'gpu=}"
    if [[ -n "$GPU_NAME" ]]; then
        log "GPU: $GPU_NAME"
        command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    elif [[ "${ALLOW_CPU:-0}" == 1 ]]; then
        log "no GPU visible: running on the CPU (ALLOW_CPU=1)"
    else
        die "PyTorch sees no GPU (set ALLOW_CPU=1 to run on the CPU anyway)"
    fi
}

if [[ "${1:-}" == "--prepare-esim" ]]; then
    shift
    stage_data
    prepare_esim "$@"
    exit 0
fi
if [[ "${1:-}" == "--prepare" ]]; then
    shift
    stage_data
    check_wheels
    prepare_esim "$@"
    carried=("$DATA_DIR" "$WHEEL_DIR")
    [[ -n "$ESIM_DIR" && -d "$ESIM_DIR" ]] && carried+=("$ESIM_DIR")
    log "prepared: ${carried[*]##*/} are ready to travel ($(du -sh "${carried[@]}" | awk '{print $1}' | paste -sd' '))"
    total_kb="$(du -sck "${carried[@]}" | tail -1 | cut -f1)"
    (( total_kb <= 64 * 1024 )) || log "warning: $(( total_kb / 1024 )) MiB in all, over the device's 64 MiB carry"
    exit 0
fi

stage_data
install
check_python_and_gpu

mkdir -p "$RESULTS_DIR"
stamp="$(mktemp)"
gpu_args=(--gpu_id=0)
[[ -n "$GPU_NAME" ]] || gpu_args=(--use_gpu=False)  # only reached with ALLOW_CPU=1 (check_python_and_gpu)
esim_args=()
if [[ -n "$ESIM_DIR" && -d "$ESIM_DIR/$DATASET/targets" ]] && uses_esim; then
    # A run whose targets are not there fails at its start, naming the text encoder: prepare them
    # here with the same settings (--prepare-esim), or set ESIM_DIR= to build tfidf targets there.
    esim_args=(--esim_cache_dir="$ESIM_DIR" --text_encoder="$ESIM_TEXT_ENCODER")
    log "ESIM: EIMF reads the semantic targets prepared in $ESIM_DIR/$DATASET ($ESIM_TEXT_ENCODER)"
fi
reference_args=()
if [[ -n "${REFERENCE:-}" ]]; then reference_args=(--reference="$REFERENCE")
elif [[ ",$MODELS," == *,SASRec,* ]]; then reference_args=(--reference=SASRec)
fi
if [[ -n "${TUNE:-}" ]]; then
    params_file="${PARAMS_FILE:-props/hyper/$(echo "$TUNE" | tr '[:upper:]' '[:lower:]').hyper}"
    [[ -s "$params_file" ]] || die "no search space $params_file: set PARAMS_FILE"
    trials_dir="hyper/$TUNE-$DATASET"  # the tuner's output folder (its default)
    if [[ -n "${RESUME_FROM:-}" && ! -e "$trials_dir/trials.jsonl" ]]; then
        mkdir -p "$trials_dir" && cp "$RESUME_FROM" "$trials_dir/trials.jsonl"
        log "resuming the search from $RESUME_FROM (its finished trials are not trained again)"
    fi
    log "tuning $TUNE on $DATASET over $params_file (${ALGO:-random}, ${MAX_EVALS:-20} trials, $JOBS at a time)"
    status=0
    limited "$PYTHON" run_recbole_eimf.py --model="$TUNE" --dataset="$DATASET" --params_file="$params_file" \
        --algo="${ALGO:-random}" --max_evals="${MAX_EVALS:-20}" --jobs="$JOBS" --tuned_dir=props/tuned \
        --data_path=.data "${gpu_args[@]}" "${esim_args[@]}" "$@" || status=$?
    (( status != 124 )) || log "stopped at the time limit: the finished trials are in $trials_dir/trials.jsonl (RESUME_FROM it)"
    mkdir -p "$RESULTS_DIR/tuning"
    cp -r "$trials_dir" "$RESULTS_DIR/tuning/" 2>/dev/null || true
    cp -r "props/tuned/$DATASET" "$RESULTS_DIR/tuning/tuned-$DATASET" 2>/dev/null || true
    deliver "tuning-$TUNE.tar.gz" "$RESULTS_DIR/tuning" "$trials_dir/trials.md" "$trials_dir/trials.jsonl"
    rm -f "$stamp"
    log "done (exit $status): $RESULTS_DIR/tuning (commit props/tuned/$DATASET/ from there)"
    exit "$status"
fi
if [[ -n "${RESUME_FROM:-}" && ! -e "$RESULTS_DIR/runs.jsonl" ]]; then
    cp "$RESUME_FROM" "$RESULTS_DIR/runs.jsonl"
    log "resuming from $RESUME_FROM"
fi
log "benchmark on $DATASET: $MODELS x seeds $SEEDS, $JOBS at a time -> $RESULTS_DIR"
status=0
benchmark_args=(--dataset="$DATASET" --models="$MODELS" --seeds="$SEEDS" --data_path=.data "${gpu_args[@]}"
    "${reference_args[@]}" "${esim_args[@]}" --output_dir="$RESULTS_DIR" "$@")
limited "$PYTHON" -m recbole_eimf.benchmark "${benchmark_args[@]}" --jobs="$JOBS" || status=$?
if (( status == 124 )); then
    # A report may have been cut mid-write: rebuild every report from the finished runs.
    log "stopped at the time limit: reports from the finished runs in $RESULTS_DIR/runs.jsonl (RESUME_FROM it)"
    "$PYTHON" -m recbole_eimf.benchmark "${benchmark_args[@]}" --report_only=True >/dev/null 2>&1 \
        || log "no finished run to report yet"
fi

# RecBole writes one log per run under ./log: keep this invocation's, packed into one file.
if [[ -d log ]]; then
    find log -type f -newer "$stamp" -print0 | tar --null -czf "$RESULTS_DIR/recbole_logs.tar.gz" -T - || true
fi
rm -f "$stamp"
deliver results.tar.gz "$RESULTS_DIR" "$RESULTS_DIR/results.md" "$RESULTS_DIR/runs.jsonl" "$RESULTS_DIR/benchmark.log"
log "done (exit $status): $RESULTS_DIR"
exit "$status"
