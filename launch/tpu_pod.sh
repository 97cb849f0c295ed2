#!/usr/bin/env bash
# Multi-host pretraining on a Cloud TPU pod slice: the same command on every worker VM at once
# (gcloud ... --worker=all); each calls jax.distributed.initialize() (ssljax.pretrain --multihost),
# which finds the coordinator and its process id from the TPU metadata. WORKDIR should be a bucket
# (gs://...) or a disk every worker mounts. The repository must already be at $SSLJAX_REMOTE_DIR
# on every worker with its virtualenv (./launch/setup.sh there).
#   TPU_NAME=my-pod ZONE=us-central2-b launch/tpu_pod.sh CONFIG WORKDIR [--config.key=value ...]
#   launch/tpu_pod.sh --dry-run CONFIG WORKDIR [...]   # print the command, run nothing
set -euo pipefail
DRY_RUN=0
if [ "${1:-}" = "--dry-run" ]; then DRY_RUN=1; shift; fi
if [ $# -lt 2 ]; then
  echo "usage: TPU_NAME=... ZONE=... launch/tpu_pod.sh [--dry-run] CONFIG WORKDIR [--config.key=value ...]" >&2
  exit 2
fi
CONFIG="$1"; WORKDIR="$2"; shift 2
TPU_NAME="${TPU_NAME:?set TPU_NAME to the pod slice name}"
ZONE="${ZONE:?set ZONE to the pod slice zone}"
REMOTE_DIR="${SSLJAX_REMOTE_DIR:-\$HOME/ssljax}"
REMOTE_PYTHON="${SSLJAX_REMOTE_PYTHON:-.venv/bin/python}"
ARGS="$(printf '%q ' --config="$CONFIG" --workdir="$WORKDIR" "$@")"
REMOTE="cd $REMOTE_DIR && $REMOTE_PYTHON -m ssljax.pretrain --multihost ${ARGS% }"
COMMAND=(gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all --command="$REMOTE")
if [ "$DRY_RUN" = 1 ]; then
  echo "gcloud compute tpus tpu-vm ssh $TPU_NAME --zone=$ZONE --worker=all --command=\"$REMOTE\""
else
  exec "${COMMAND[@]}"
fi
