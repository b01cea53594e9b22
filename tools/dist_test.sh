#!/usr/bin/env bash
# Evaluate with several processes (OpenMMLab's dist_test.sh): one per GPU with nccl, or, on a machine without
# CUDA, several CPU processes with gloo (tools/test.py chooses; the metrics are those of one process).
#
#   tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCESSES [tools/test.py arguments ...]
#
# Environment: NNODES (1), NODE_RANK (0), PORT (29500), MASTER_ADDR (127.0.0.1), PYTHON (python),
# OMP_NUM_THREADS (1: torch threads per process; on CPU, NUM_PROCESSES x OMP_NUM_THREADS <= cores), MKL_NUM_THREADS
# (= OMP_NUM_THREADS).
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 CONFIG CHECKPOINT NUM_PROCESSES [tools/test.py arguments ...]" >&2
    exit 2
fi
CONFIG=$1
CHECKPOINT=$2
NPROC=$3
if ! [[ "$NPROC" =~ ^[1-9][0-9]*$ ]]; then
    echo "error: NUM_PROCESSES must be an integer >= 1, got '$NPROC'" >&2
    exit 2
fi
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
PYTHON=${PYTHON:-python}
TOOLS=$(cd "$(dirname "$0")" && pwd)

# torchrun and mmengine warn when they set the thread variables themselves: set them here
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export MKL_NUM_THREADS=${MKL_NUM_THREADS:-$OMP_NUM_THREADS}
PYTHONPATH="$TOOLS/..${PYTHONPATH:+:$PYTHONPATH}" \
"$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" --master_port="$PORT" \
    --nproc_per_node="$NPROC" \
    "$TOOLS/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "${@:4}"
