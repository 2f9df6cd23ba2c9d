#!/usr/bin/env bash
# Several nodes with SLURM: one `accelerate launch` per node, all joining one process group.
#   sbatch --nodes 2 scripts/slurm_accelerate.sh configs/accelerate/zero3.yaml \
#       train ric --config configs/ric_llama2_hh.yaml --output_dir runs/ric_zero3
# Every node needs the same venv, the model/dataset (or a shared cache) and a shared --output_dir:
# only the main process (node 0, rank 0) writes the results; checkpoints resume on a rerun.
#SBATCH --job-name=pluralign
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=32
#SBATCH --exclusive
set -euo pipefail
CONFIG=${1:?usage: sbatch --nodes N scripts/slurm_accelerate.sh ACCELERATE_CONFIG.yaml <pluralign args>}
shift
GPUS_PER_NODE=${GPUS_PER_NODE:-$(nvidia-smi -L | wc -l)}
MAIN_HOST=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
MAIN_PORT=${MAIN_PORT:-29500}
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-0} TOKENIZERS_PARALLELISM=false
# srun starts one launcher per node; $SLURM_NODEID (0..N-1) becomes accelerate's machine_rank.
srun --kill-on-bad-exit=1 bash -c "accelerate launch --config_file '$CONFIG' \
  --num_machines $SLURM_NNODES --num_processes $((SLURM_NNODES * GPUS_PER_NODE)) \
  --machine_rank \$SLURM_NODEID --main_process_ip $MAIN_HOST --main_process_port $MAIN_PORT \
  --rdzv_backend c10d -m pluralign.cli $*"
