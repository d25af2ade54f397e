#!/bin/bash
# Building a treevis feature cache for a large dataset on a Slurm cluster: one array task
# per shard, then one merge. With DATA, OUT, N and the other settings below exported
# (`export N=8 DATA=/datasets/imagenet/val OUT=$SCRATCH/treevis-cache`), submit with
#
#     jid=$(sbatch --parsable --array=0-$((N - 1)) docs/slurm-featcache.sh)
#     sbatch --dependency=afterok:$jid --export=ALL,MERGE=1 docs/slurm-featcache.sh
#
# (tests/slurm.rs submits exactly these two lines to a one-node Slurm.) The merge needs
# `--export=ALL,...`: `--export=MERGE=1` alone would hand the job nothing but MERGE.
#
# Resources: #SBATCH lines cannot read variables, so the ones below ask only for what any
# cluster has: one CPU per task, no GPU, 4 hours. Options given to sbatch override them: add
# them to the array's line (the merge needs one CPU), and tell treevis the device (DEVICE,
# default cpu). Slurm shows a task only its own GPUs, so the first is always cuda:0 (with a
# treevis built with `--features cuda`). A CPU cluster, and one GPU per task:
#
#     jid=$(sbatch --cpus-per-task=8 --mem=16G --parsable --array=0-$((N - 1)) docs/slurm-featcache.sh)
#     jid=$(sbatch --gres=gpu:1 --cpus-per-task=8 --export=ALL,DEVICE=cuda:0 \
#         --parsable --array=0-$((N - 1)) docs/slurm-featcache.sh)
#
# Two GPUs per task (a worker each) take `export DEVICE=cuda:0,cuda:1` and `--gres=gpu:2`
# (a value with commas cannot go in --export).
#
# The CPU threads follow the allocation (SLURM_CPUS_PER_TASK, else SLURM_CPUS_ON_NODE;
# RAYON_NUM_THREADS when set wins). Every task lists the whole dataset in the same order
# (sorted), and builds the images with index % N == i. A task that is preempted or killed
# resumes from its last checkpoint when it runs again with the same arguments. The merged
# cache equals one single build with the same settings (tested; a reconstruction's PNG may
# differ by 1 in a few pixel values).
#SBATCH --job-name=treevis-cache
#SBATCH --ntasks=1
#SBATCH --time=04:00:00
#SBATCH --output=treevis-cache-%A_%a.log
set -euo pipefail

TREEVIS=${TREEVIS:-treevis}                       # the binary, if it is not on PATH
DATA=${DATA:-/datasets/imagenet/val}              # folder, list file, or Caffe Datum LMDB
MODEL=${MODEL:-alexnet}
WEIGHTS=${WEIGHTS-}                               # empty: the model's own (or `treevis models fetch`ed)
OUT=${OUT:-${SCRATCH:-$PWD}/treevis-cache}
N=${N:-8}                                         # the array's size
DEVICE=${DEVICE:-cpu}                             # cuda:0 on a GPU node; cuda:0,cuda:1 for two
BATCH=${BATCH:-64}                                # images per forward pass
TOPK=${TOPK:-16}                                  # images kept per neuron
METHOD=${METHOD:-guided}                          # gradient, deconv, guided, guided-neg
LAYERS=${LAYERS-}                                 # empty: every blob of the tree
CHECKPOINT=${CHECKPOINT:-2048}                    # images between checkpoints

threads=${RAYON_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-${SLURM_CPUS_ON_NODE:-}}}
[ -n "$threads" ] && export RAYON_NUM_THREADS=$threads

if [ "${MERGE:-0}" = 1 ]; then
    shards=()
    for i in $(seq 0 $((N - 1))); do shards+=("$OUT/shard-$i-of-$N"); done
    "$TREEVIS" cache merge "${shards[@]}" --out "$OUT/merged"
    "$TREEVIS" cache info "$OUT/merged"
    exit 0
fi

i=${SLURM_ARRAY_TASK_ID:?run as an array job (sbatch --array=0-$((N - 1)))}
extra=()
[ -n "$WEIGHTS" ] && extra+=(--weights "$WEIGHTS")
[ -n "$LAYERS" ] && extra+=(--layers "$LAYERS")
"$TREEVIS" cache build --data "$DATA" --model "$MODEL" ${extra[@]+"${extra[@]}"} \
    --device "$DEVICE" --batch "$BATCH" --top-k "$TOPK" --method "$METHOD" \
    --checkpoint "$CHECKPOINT" --shard "$i/$N" --out "$OUT/shard-$i-of-$N" --quiet
