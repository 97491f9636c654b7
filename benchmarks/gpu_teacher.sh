#!/usr/bin/env bash
# Train the embedded teacher on a lent H100 or H200 across several device calls (see
# shared/notes/gpu-training.md: a setsid daemon outlives the call that starts it while the machine
# stays warm, i.e. while the next call follows within 30 s). Runs on the device machine, from the
# repository root:
#
#   bash benchmarks/gpu_teacher.sh start WAIT_S   install the carried wheels, build the training
#                                                 examples there from the carried scenes (GPU MVS,
#                                                 12 processes), start the training loop, watch
#   bash benchmarks/gpu_teacher.sh watch WAIT_S   print the log for WAIT_S s, then copy the latest
#                                                 exported model to $OUT (model.tar.part-*)
#   bash benchmarks/gpu_teacher.sh finish         stop at the next step, export the EMA model, run
#                                                 benchmarks/teacher_eval.py on the carried clips and
#                                                 score them there, copy to $OUT: model.tar.part-*
#                                                 (15 MiB parts), log_samples.tar, teacher_eval_*.json
#                                                 (generated.tar.part-* with KEEP_GENERATED=1)
#   (back here: cat model.tar.part-* | tar -x; the same for generated.tar.part-*)
#
# Carried (prepared on the CPU machine, all ignored by git; 64 MiB at most per call):
#   start:  .gpu/wtrain/*.whl     diffusers + importlib_metadata (shared/tools/gpu-wheels), 6 MB, and
#                                 kornia + kornia_rs (7 MB: finish's scoring computes SSIM with kornia);
#                                 another folder with WHEELS=DIR (benchmarks/gpu_common.sh)
#           .gpu/train_scenes/    `fvgen data pack --out .gpu/train_scenes --max-size 320`, 31 scenes, 31 MB
#           .gpu/photos/          `fvgen data pack --photos --out .gpu/photos --max-size 400`, 309 photos,
#                                 19 MB (PHOTO_SHARE of the examples, default 0.3, are warp-back photo examples;
#                                 PER_SCENE x 3 examples of every scene, default 8, PROCEDURAL rooms x 3, default 60)
#   (MAX_MINUTES: length of one training chunk, default 9; a restart costs about 40 s; INIT_FROM: a model
#   folder to start from; UNET_STEPS: overrides the config's, the length of a cosine schedule; TAG: names
#   the run, several side by side: its folder, loop, stop file and returned files carry _TAG; NO_MODEL=1:
#   finish returns no model parts, e.g. a model too large to come back beside the figures)
#   finish: .gpu/teacher_eval/    `python benchmarks/teacher_eval.py prepare --out .gpu/teacher_eval`, 44 MB
#           .gpu/datasets/        the evaluation scenes' split images and poses (eval_scenes.py copy_scene), 13 MB:
#                                 adapt_eval.py at ADAPT_STEPS (default "0 50") on them
#   (files stay on the machine while it is warm, so each call carries only what it adds)
# A session's plan (30 device minutes; the machine's start itself took up to 6 of them, 2026-12-05):
#   MAX_MINUTES=25 start 300 (examples built in 3-4 min first) -> watch 470-550 (what the budget leaves
#   after 6 minutes for finish and the model call; 550 on 2026-12-06) -> finish (3-4 min with
#   EVAL_CFGS="1.0" EVAL_STRENGTHS="0.25 0.5 1.0"); model.tar.part-* and generated.tar.part-* (about 80 MB together) may not
#   both come back from one call (a limit on the total returned): fetch the model in a separate short call.
# Two widths on the same examples (issue 18 item 4), one GPU, the same steps for both (UNET_STEPS, and MAX_MINUTES
# past the time they need side by side):
#   TAG=w64 CONFIG=configs/teacher_embedded_curve.toml NPROC=1 UNET_STEPS=800 MAX_MINUTES=40 start 60   (builds the examples)
#   TAG=w32 CONFIG=configs/teacher_embedded_narrow.toml NPROC=1 UNET_STEPS=800 MAX_MINUTES=40 start 400
#   TAG=w64 watch 500 -> TAG=w32 EVAL_CFGS=1.0 finish -> TAG=w64 EVAL_CFGS=1.0 NO_MODEL=1 finish (its weights: run 8's
#   recipe, kept only if it wins: a separate call)
set -u
ROOT=${ROOT:-/tmp}
# TAG names a run, so that several train side by side on one GPU from the same examples (e.g. two model
# widths, issue 18: TAG=narrow CONFIG=configs/teacher_embedded_narrow.toml NPROC=1 start ...); each call
# names the run it means. Unset: the one run of earlier sessions
SUFFIX=${TAG:+_$TAG}
RUN=$ROOT/teacher_run$SUFFIX
DATA=$ROOT/teacher_data
STOP=$ROOT/teacher_stop$SUFFIX
CONFIG=${CONFIG:-configs/teacher_embedded.toml}
# overridable for a dry run on a CPU machine, e.g. PY=.venv/bin/python DEVICE=cpu NPROC=1 PRESET=tiny
source benchmarks/gpu_common.sh
DEVICE=${DEVICE:-cuda}
PRESET=${PRESET:-embedded}

LOOP=fvgen_teacher_loop$SUFFIX  # the training loop's process name
LOOP_LOG=$ROOT/teacher_loop$SUFFIX.log
watch() { watch_loop "$1" $LOOP "$LOOP_LOG" "$RUN"; }

case "$1" in
  start)
    if [ "$DEVICE" = cuda ]; then
      install_wheels ${WHEELS:-.gpu/wtrain} || exit 1
      machine_info
    fi
    build_examples "$DATA"  # benchmarks/gpu_common.sh (kept when another TAG built them): PER_SCENE, PROCEDURAL, ...
    rm -f "$STOP"
    start_loop $LOOP benchmarks/gpu_teacher.sh "$LOOP_LOG"
    watch "$2"
    snapshot_model "$RUN"
    ;;
  loop)
    # resumable chunks; a crash resumes from the last checkpoint (every ckpt_every steps)
    # one GPU: no torchrun, so that runs side by side (TAG) need no rendezvous ports
    n=${NPROC:-$(nvidia-smi -L | wc -l)}
    launch=(-m torch.distributed.run --standalone --nproc_per_node="$n")
    [ "$n" = 1 ] && launch=()
    chunk_loop "$STOP" $ROOT/teacher_chunks$SUFFIX.log \
      $PY "${launch[@]}" -m fvgen train teacher \
        --config "$CONFIG" --out "$RUN" --data "$DATA"/*/ --max-minutes "${MAX_MINUTES:-9}" --stop-file "$STOP" --workers 12 ${INIT_FROM:+--init-from "$INIT_FROM"} ${UNET_STEPS:+--unet-steps "$UNET_STEPS"}
    ;;
  watch)
    watch "$2"
    # a copy of the latest export (every ckpt_every steps) comes back with every call, so a machine
    # lost between calls costs only the steps since it
    snapshot_model "$RUN"
    ;;
  finish)
    stop_loop $LOOP "$LOOP_LOG" "$STOP"
    cp "$CONFIG" "$RUN/model/train.toml"
    [ -z "${NO_MODEL:-}" ] && tar -C "$RUN" -cf - model | split -b 15M - "$OUT/model$SUFFIX.tar.part-"
    tar -C "$RUN" -cf "$OUT/log_samples$SUFFIX.tar" log.jsonl $(cd "$RUN" && ls -d samples 2>/dev/null)
    rm -rf "$ROOT/results" "$ROOT/teacher_gen"  # this run's figures only (an earlier TAG's came back already)
    mkdir -p "$ROOT/results"
    if [ -d .gpu/teacher_eval ]; then  # about 70 s per guidance scale on an H200 (36 clips)
      for cfg in ${EVAL_CFGS-3.0 1.5}; do  # EVAL_CFGS= (empty): the one-step evaluation only
        for strength in ${EVAL_STRENGTHS:-1.0}; do  # one output folder per (guidance, SDEdit strength)
          $PY benchmarks/teacher_eval.py run --clips .gpu/teacher_eval --model "$RUN/model" --strength "$strength" \
            --out "$ROOT/teacher_gen/cfg${cfg}_s$strength" --steps "${EVAL_STEPS:-50}" --cfg "$cfg" 2>&1 | tail -n 1
        done
      done
      $PY benchmarks/teacher_eval.py run --clips .gpu/teacher_eval --model "$RUN/model" --steps 1 --cfg 1.0 \
        --out "$ROOT/teacher_gen/one_step" 2>&1 | tail -n 1  # the mean prediction at t = T, for reference
      # test-time adaptation to the 3 input views (issue 18 item 3), when the evaluation scenes are carried
      # (.gpu/datasets: eval_scenes.py --copy-data): ADAPT_STEPS 0 is the unadapted baseline of the same sampler
      # (the leave-one-out priors go through fvgen's SfM backend: pycolmap must be importable there)
      if [ -d .gpu/datasets ] && ! $PY -c "import pycolmap" 2>/dev/null; then
        echo "adaptation skipped: no pycolmap on this host (carry its cp312 wheel, or run adapt_eval.py on the CPU)"
      elif [ -d .gpu/datasets ]; then
        for steps in ${ADAPT_STEPS:-0 50}; do
          $PY benchmarks/adapt_eval.py --clips .gpu/teacher_eval --model "$RUN/model" --data .gpu/datasets \
            --out "$ROOT/teacher_gen/adapt_s$steps" --steps "$steps" --device cuda 2>&1 | tail -n 2
          cp "$ROOT/teacher_gen/adapt_s$steps/adapt.json" "$ROOT/results/adapt_s$steps.json" 2>/dev/null
        done
      fi
      score_generated .gpu/teacher_eval "$ROOT"/teacher_gen "$ROOT/results" "$ROOT"  # benchmarks/gpu_common.sh
      tar -C "$ROOT" -cf "$OUT/results$SUFFIX.tar" results  # one file: at most 8 come back
      if [ -n "${KEEP_GENERATED:-}" ]; then  # the frames themselves (at most 8 files come back)
        tar -C "$ROOT" -cf - teacher_gen | split -b 15M - "$OUT/generated.tar.part-"
      fi
    fi
    ls -la "$OUT"
    ;;
esac
