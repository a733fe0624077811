#!/usr/bin/env bash
# The headline tables (issue 32): every RecBole baseline, every backbone and EIMF on each, one
# budget (the protocol's 200 epochs, early stopping after 10), per-user significance, into
# docs/benchmarks/headline-<dataset>/. Resumable: run it again after an interruption; finished
# runs are skipped and a run cut short continues from its checkpoint.
#
#   SEEDS=2020 bash benchmarks/headline_tables.sh          # one seed of every model first
#   bash benchmarks/headline_tables.sh                     # then all three
#   DATASETS=ml-100k JOBS=1 bash benchmarks/headline_tables.sh
#   REPORT_ONLY=True bash benchmarks/headline_tables.sh    # the tables from the committed records
set -euo pipefail
cd "$(dirname "$0")/.."

SEEDS=${SEEDS:-2020,2021,2022}
JOBS=${JOBS:-2}
DATASETS=${DATASETS:-amazon-beauty ml-100k}
REPORT_ONLY=${REPORT_ONLY:-False}
MODELS=SASRec,TransMI,EIMF-TransMI,GRU4Rec,SASRecF,GRU4RecF,ComiRecSA,EIMF-ComiRecSA,ComiRecDR,EIMF-ComiRecDR,MIND,EIMF-MIND,SINE,BERT4Rec

for dataset in $DATASETS; do
    # --trim_dropout=group: RecBole's models draw dropout masks per length group (the stock
    # training in distribution, 1.7x faster steps; docs/BENCHMARKS.md section 33).
    python -m recbole_eimf.benchmark --dataset="$dataset" --models="$MODELS" --seeds="$SEEDS" \
        --output_dir="docs/benchmarks/headline-$dataset" --reference=SASRec --jobs="$JOBS" \
        --trim_dropout=group --report_only="$REPORT_ONLY"
done
