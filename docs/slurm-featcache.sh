#!/bin/bash
# Building a treevis feature cache for a large dataset on a Slurm cluster: one array task
# per shard, then one merge. Submit with
#
#     sbatch --array=0-7 docs/slurm-featcache.sh          # 8 shards, one GPU each
#     sbatch --dependency=afterok:<array job id> --export=MERGE=1 docs/slurm-featcache.sh
#
# Every task lists the whole dataset in the same order (sorted), and builds the images with
# index % N == i. A task that is preempted or killed resumes from its last checkpoint when
# it runs again with the same arguments. The merged cache equals one single build.
#SBATCH --job-name=treevis-cache
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --time=04:00:00
#SBATCH --output=treevis-cache-%A_%a.log
set -euo pipefail

DATA=${DATA:-/datasets/imagenet/val}            # folder, list file, or Caffe Datum LMDB
MODEL=${MODEL:-alexnet}
WEIGHTS=${WEIGHTS:-$HOME/models/alexnet-owt-7be5be79.pth}
OUT=${OUT:-$SCRATCH/treevis-cache}
N=${N:-8}                                         # the array's size

if [ "${MERGE:-0}" = 1 ]; then
    shards=()
    for i in $(seq 0 $((N - 1))); do shards+=("$OUT/shard-$i-of-$N"); done
    treevis cache merge "${shards[@]}" --out "$OUT/merged"
    treevis cache info "$OUT/merged"
    exit 0
fi

i=${SLURM_ARRAY_TASK_ID:?run as an array job (sbatch --array=0-$((N - 1)))}
treevis cache build --data "$DATA" --model "$MODEL" --weights "$WEIGHTS" \
    --device cuda:0 --batch 64 --top-k 16 --method guided \
    --shard "$i/$N" --out "$OUT/shard-$i-of-$N" --quiet
