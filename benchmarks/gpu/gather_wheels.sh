#!/usr/bin/env bash
# Download, on a machine with PyPI access, the wheels that run_benchmark.sh installs on an offline
# CUDA machine (Python 3.12, x86-64, PyTorch preinstalled) into the git-ignored .whl/ folder.
#
#   bash benchmarks/gpu/gather_wheels.sh          # what the CUDA image lacks (about 25 MB)
#   bash benchmarks/gpu/gather_wheels.sh --all    # also the packages such images usually have
#
# Every wheel is fetched with --no-deps: dependencies are listed below one by one, so that
# nothing pulls in torch (thop and RecBole require it) or numpy, which the machine already has.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WHEEL_DIR="${WHEEL_DIR:-$REPO/.whl}"
PYTHON="${PYTHON:-python3}"
PY_VERSION="${PY_VERSION:-3.12}"

# Always: missing from the CUDA image, or there in a version RecBole 1.2.1 cannot use.
REQUIRED=(
    "recbole==1.2.1"        # installed with --no-deps (its ray<=2.6.3 pin has no Python 3.12 wheels)
    "pandas<3"              # pandas 3 silently breaks RecBole's token_seq fields
    "pytz"                  # pandas 2 dependency (pandas 3 dropped it)
    "tzdata"                # pandas 2 dependency
    "colorlog==4.7.2"       # RecBole's pins
    "colorama==0.4.4"
    "thop"
    "tabulate"
    "texttable"
    "plotly"                # needs narwhals and packaging (on the image)
    "psutil"
    "hyperopt==0.2.5"       # the tuner (RecBole's pin), and its dependencies below
    "networkx" "future" "cloudpickle" "six"
    "setuptools<81"         # pkg_resources, which hyperopt 0.2.5 imports
)
# With --all: RecBole's other run-time dependencies and the harness's matplotlib, for a machine
# that lacks them. The CUDA image has them all, and together they are larger than one carry
# (64 MiB), so they are not fetched by default.
IF_MISSING=(
    "tensorboard" "tensorboard-data-server" "absl-py" "grpcio" "markdown" "protobuf" "werkzeug" "markupsafe"
    "matplotlib" "contourpy" "cycler" "fonttools" "kiwisolver" "pillow" "pyparsing" "packaging" "python-dateutil" "six"
    "scikit-learn" "scipy" "joblib" "threadpoolctl"
    "narwhals" "pyyaml" "tqdm" "setuptools"
)

packages=("${REQUIRED[@]}")
case "${1:-}" in
    --all) packages+=("${IF_MISSING[@]}") ;;
    "") ;;
    *) echo "usage: $0 [--all]" >&2; exit 2 ;;
esac

mkdir -p "$WHEEL_DIR"
# pip matches platform tags exactly: name the manylinux levels that wheels are published under.
platforms=()
for tag in manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux_2_24_x86_64 manylinux_2_27_x86_64 \
           manylinux_2_28_x86_64 manylinux_2_12_x86_64 manylinux2010_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$tag")
done

"$PYTHON" -m pip download --no-deps --only-binary=:all: --python-version "$PY_VERSION" --implementation cp \
    "${platforms[@]}" -d "$WHEEL_DIR" "${packages[@]}"

# Several versions of one package may sit side by side (earlier gathers): run_benchmark.sh installs
# by requirement with --find-links, so pip picks a matching one.
echo "wheels in $WHEEL_DIR:"
ls -1 "$WHEEL_DIR"
du -sh "$WHEEL_DIR"
