#!/usr/bin/env bash
# Improve the shipped default model in one fixed slice of GPU time (the runs behind
# MODEL_CARD.md's "GPU session" section). Three runs share the one GPU, each stopped by its
# wall-time budget (`time_budget_s`: the LR anneals to its floor by then):
#   tf     stage 2 continued from the shipped transformer on the shipped tokenizer's tokens;
#   tfctx  the same, with the known tokens of part of each batch taken from images encoded with
#          a random hole (transformer_training.context_views=CTX_VIEWS), as inpainting sees them;
#   dec-a  the shipped tokenizer's decoder fine-tuned with the PatchGAN on (encoder frozen,
#   dec-b  so tokens stay identical and the transformer above still matches), two GAN settings.
# Usage: [DATA=folder-with-train-and-val] [RUNS=out-folder] [BUDGET=seconds] [ONLY="tf dec-a"] \
#        [COLLECT=folder] scripts/gpu_budget_train.sh   (runs the package from src/ with python3: no install)
# COLLECT (on the device machine: COLLECT=$OUT) gathers each run's exported weights and one archive of
# the logs and configs into that folder, a handful of files that fit what the device tool brings back.
# Gather them here, not in a command after the script: a `pkill -f maskgit_inpaint` there once killed
# the calling shell itself (its own command line matched) and every result of that call was lost.
set -u
DATA=${DATA:-data/cat-faces-64}
RUNS=${RUNS:-runs/gpu}
INIT=${INIT:-src/maskgit_inpaint/default_model}
BUDGET=${BUDGET:-450}   # seconds of training per run
BS=${BS:-256}
ONLY=${ONLY:-"tf dec-a dec-b"}
CTX_VIEWS=${CTX_VIEWS:-4}
COLLECT=${COLLECT:-}
LIMIT=$((BUDGET + 150))  # seconds a job may take in all (start-up, caching, export) before it is stopped
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
M="python3 -m maskgit_inpaint"
for r in $ONLY; do  # check every name before anything starts
  case $r in tf|tfctx|dec-a|dec-b) ;; *) echo "unknown run $r: choose from tf tfctx dec-a dec-b" >&2; exit 2 ;; esac
done
mkdir -p "$RUNS"

stage2() {  # name [extra --set options]
  local name=$1; shift
  timeout "$LIMIT" $M train --data "$DATA/train" --val "$DATA/val" --out "$RUNS/$name" --init "$INIT" --max-epochs 100000 \
    --batch-size "$BS" --set transformer_training.lr=5e-4 --set transformer_training.warmup_steps=200 \
    --set transformer.dropout=0.1 --set transformer_training.time_budget_s="$BUDGET" \
    --set transformer_training.epoch_checkpoints=false --set transformer_training.ckpt_every_steps=2000 \
    --set transformer_training.num_workers=2 --set transformer_training.log_every=50 "$@" \
    && $M export "$RUNS/$name" --out "$RUNS/model-$name" --fp16
}
decoder() {  # name gan_weight disc_layers
  timeout "$LIMIT" $M train-tokenizer --data "$DATA/train" --val "$DATA/val" --out "$RUNS/$1" --init "$INIT" --max-epochs 100000 \
    --batch-size "$BS" --set tokenizer_training.freeze_encoder=true --set tokenizer_training.disc_start=0 \
    --set tokenizer_training.gan_weight="$2" --set tokenizer_training.disc_layers="$3" \
    --set tokenizer_training.lr=1e-4 --set tokenizer_training.warmup_steps=100 \
    --set tokenizer_training.time_budget_s="$BUDGET" --set tokenizer_training.epoch_checkpoints=false \
    --set tokenizer_training.ckpt_every_steps=2000 --set tokenizer_training.num_workers=3 \
    --set tokenizer_training.log_every=50 \
    && $M export "$RUNS/$1" --which last --out "$RUNS/model-$1" --fp16
}

for r in $ONLY; do
  case $r in
    tf) stage2 tf > "$RUNS/tf.log" 2>&1 & ;;
    tfctx) stage2 tfctx --set transformer_training.context_views="$CTX_VIEWS" > "$RUNS/tfctx.log" 2>&1 & ;;
    dec-a) decoder dec-a 0.2 2 > "$RUNS/dec-a.log" 2>&1 & ;;
    dec-b) decoder dec-b 0.8 3 > "$RUNS/dec-b.log" 2>&1 & ;;
  esac
done
wait
for r in $ONLY; do echo "== $r"; tail -n 3 "$RUNS/$r.log"; done

if [ -n "$COLLECT" ]; then
  mkdir -p "$COLLECT"
  for r in $ONLY; do
    m="$RUNS/model-$r"
    if [ ! -f "$m/config.yaml" ]; then  # stopped before its export: take its last checkpoint
      timeout 60 $M export "$RUNS/$r" --which last --out "$m" --fp16 || { echo "== $r: nothing to export"; continue; }
    fi
    case $r in
      tf*) cp "$m/transformer.safetensors" "$COLLECT/$r-transformer.safetensors" ;;
      dec-*) cp "$m/tokenizer.safetensors" "$COLLECT/$r-tokenizer.safetensors" ;;
    esac
  done
  tar czf "$COLLECT/logs.tgz" "$RUNS"/*.log "$RUNS"/*/logs/metrics.csv "$RUNS"/*/config.yaml 2>/dev/null
  ls -l "$COLLECT"
fi
