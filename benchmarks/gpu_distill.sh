#!/usr/bin/env bash
# Distil the teacher into the 4-step student (issue 19, `fvgen train distill`) on a lent H100 or H200
# across several device calls, as benchmarks/gpu_teacher.sh trains the teacher (a setsid daemon
# outlives the call that starts it while the machine stays warm). Runs on the device machine, from
# the repository root:
#
#   bash benchmarks/gpu_distill.sh prepare        install the carried wheels, check the teacher folder
#                                                 (a call of its own: the teacher and the scenes do not
#                                                 fit in one call's 64 MiB)
#   bash benchmarks/gpu_distill.sh start WAIT_S   install the carried wheels, build the training examples
#                                                 there as gpu_teacher.sh does (unless $DATA/built exists:
#                                                 the teacher's, when it trained on this machine), start the
#                                                 distillation loop, watch
#   bash benchmarks/gpu_distill.sh watch WAIT_S   print the log for WAIT_S s, then copy the latest exported
#                                                 student to $OUT (model.tar.part-*)
#   bash benchmarks/gpu_distill.sh finish         stop at the next step, export the student (EMA), run
#                                                 benchmarks/teacher_eval.py on the carried clips for the
#                                                 student (4 steps, no guidance) and, with TEACHER_EVAL=1,
#                                                 for the teacher (1 step and 50 steps) as references, score
#                                                 them there, copy to $OUT: model.tar.part-* (15 MiB parts,
#                                                 the student), log_samples.tar, results.tar (5 files; at
#                                                 most 8 come back)
#   (back here: cat model.tar.part-* | tar -x; tar -xf results.tar: distill_results/teacher_eval_<name>.json,
#   chunks.jsonl)
#
# Settings (environment): TEACHER the teacher's model folder (default .gpu/teacher-run8); STAGE gan, dmd
# or all (default all); DISTILL_CONFIG (default embedded), ABLATION, GAN_STEPS, DMD_STEPS, BATCH_SIZE,
# REAL_CFG: `fvgen train distill`'s --config, --ablation, --gan-steps, --dmd-steps, --batch-size,
# --real-cfg (unset: the config's); MAX_MINUTES: length of one chunk (default 9; a restart reloads the
# teacher, the student, the fake score and the examples); NPROC (default: every GPU). The examples:
# PER_SCENE, PROCEDURAL, PHOTO_SHARE, MIN_WARP_PSNR, WORKERS, SEED, PRESET (benchmarks/gpu_common.sh;
# PRESET must be the teacher's, default embedded). finish: TEACHER_CFG (guidance of the teacher's
# 50-step reference, default 1.0: every evaluation since teacher run 4 samples with 1.0),
# EVAL_BUDGET_S (default 240: the teacher's references are skipped once finish has run this long, so
# that the call ends inside its 600 s), KEEP_GENERATED=1 (the generated frames, generated.tar.part-*).
#
# Carried (prepared on the CPU machine, all ignored by git; 64 MiB at most per call, the 4 MB of tracked
# files included: prepare 61 MB, start 53 MB, finish 50 MB):
#   prepare: .gpu/teacher-run8/   run 8's weights, 41 MB: `git archive b3dac73 assets/checkpoints/teacher-run8
#                                 | tar -x --strip-components=2 -C .gpu/` (benchmarks/RESULTS.md, "Teacher")
#            .gpu/wtrain/*.whl    diffusers + importlib_metadata, kornia + kornia_rs, 14 MB (as gpu_teacher.sh;
#                                 another folder with WHEELS=DIR)
#   start:   .gpu/train_scenes/   31 MB, and .gpu/photos/, 19 MB (as gpu_teacher.sh; neither needed when
#                                 $DATA/built is already on the machine)
#   finish:  .gpu/teacher_eval/   `python benchmarks/teacher_eval.py prepare --out .gpu/teacher_eval`, 44 MB
#   (files stay on the machine while it is warm, so each call carries only what it adds; watch carries nothing)
# A session's plan (30 device minutes; the machine's start itself took up to 6 of them, 2026-12-05):
#   prepare (about 6 min with the start) -> MAX_MINUTES=16 start 300 (examples built in 3-4 min first) ->
#   watch 420-480 (what the budget leaves after about 5 minutes for finish) -> TEACHER_EVAL=1 finish
#   (2-4 min: the student's 4 steps and the teacher's 1 step take seconds on 36 clips, the teacher's
#   50 steps about 70 s on an H200, scoring about 80 s of one core per model, in parallel).
#   About 12 minutes of distillation: far fewer than the config's 4000 + 4000 steps, so set GAN_STEPS /
#   DMD_STEPS to what fits (the first watch's log lines give clips_per_s; the loop reads them when it
#   starts: to change them, finish, then start again, which resumes $RUN/ckpt with the new counts). The
#   run's checkpoint (student, fake score, EMA, optimizers) stays on the machine: a session lost before
#   finish keeps only the last snapshot of the student.
set -u
ROOT=${ROOT:-/tmp}
RUN=$ROOT/distill_run
DATA=${DATA:-$ROOT/teacher_data}  # gpu_teacher.sh's examples when it ran on this machine
STOP=$ROOT/distill_stop
TEACHER=${TEACHER:-.gpu/teacher-run8}
STAGE=${STAGE:-all}
# overridable for a dry run on a CPU machine, e.g. PY=.venv/bin/python DEVICE=cpu NPROC=1 PRESET=tiny
# DISTILL_CONFIG=tiny-pixel TEACHER=a tiny teacher's model folder
source benchmarks/gpu_common.sh
DEVICE=${DEVICE:-cuda}
PRESET=${PRESET:-embedded}
LOOP=fvgen_distill_loop  # the distillation loop's process name
watch() { watch_loop "$1" "$RUN" $LOOP $ROOT/distill_loop.log; }

# teacher_eval NAME MODEL STEPS CFG: teacher_eval.py run of MODEL into $ROOT/distill_gen/NAME
teacher_eval() {
  local t0
  t0=$(date +%s)
  $PY benchmarks/teacher_eval.py run --clips .gpu/teacher_eval --model "$2" --out "$ROOT/distill_gen/$1" \
    --steps "$3" --cfg "$4" 2>&1 | tail -n 1
  echo "$1: $3 steps, guidance $4, $(( $(date +%s) - t0 )) s"
}

case "$1" in
  prepare)
    if [ "$DEVICE" = cuda ]; then
      install_wheels ${WHEELS:-.gpu/wtrain} || exit 1
      machine_info
    fi
    [ -f "$TEACHER/fvgen_model.json" ] || { echo "no teacher model folder at $TEACHER (carry it: see the header)"; exit 1; }
    du -sh "$TEACHER"
    ;;
  start)
    if [ "$DEVICE" = cuda ]; then
      install_wheels ${WHEELS:-.gpu/wtrain} || exit 1
      machine_info
    fi
    [ -f "$TEACHER/fvgen_model.json" ] || { echo "no teacher model folder at $TEACHER (carry it: see the header)"; exit 1; }
    if [ -d "$DATA/built" ]; then
      echo "examples already built: $(ls "$DATA"/built/*.npz | wc -l) in $DATA/built"
    else
      build_examples "$DATA"  # benchmarks/gpu_common.sh: PER_SCENE, PROCEDURAL, PHOTO_SHARE, MIN_WARP_PSNR
    fi
    rm -f "$STOP" $ROOT/distill_chunks.log  # a new start (e.g. STAGE=dmd after gan) must not see the last "done"
    start_loop $LOOP benchmarks/gpu_distill.sh $ROOT/distill_loop.log
    watch "$2"
    snapshot_model "$RUN"
    ;;
  loop)
    # resumable chunks; a crash resumes from the last checkpoint (every ckpt_every steps). A chunk
    # reports "done" when STAGE is: --stage gan stops after stage 1
    chunk_loop "$STOP" $ROOT/distill_chunks.log \
      $PY -m torch.distributed.run --standalone --nproc_per_node="${NPROC:-$(nvidia-smi -L | wc -l)}" -m fvgen train distill \
        --teacher "$TEACHER" --out "$RUN" --data "$DATA"/*/ --stage "$STAGE" --config "${DISTILL_CONFIG:-embedded}" \
        --max-minutes "${MAX_MINUTES:-9}" --stop-file "$STOP" --workers 12 ${ABLATION:+--ablation "$ABLATION"} \
        ${GAN_STEPS:+--gan-steps "$GAN_STEPS"} ${DMD_STEPS:+--dmd-steps "$DMD_STEPS"} \
        ${BATCH_SIZE:+--batch-size "$BATCH_SIZE"} ${REAL_CFG:+--real-cfg "$REAL_CFG"}
    ;;
  watch)
    watch "$2"
    # a copy of the latest export (every ckpt_every steps) comes back with every call, so a machine
    # lost between calls costs only the steps since it
    snapshot_model "$RUN"
    ;;
  finish)
    t0=$(date +%s)
    stop_loop "$STOP" $LOOP $ROOT/distill_loop.log
    [ -d "$RUN/model" ] || { echo "no student exported in $RUN/model"; tail -n 20 $ROOT/distill_loop.log; exit 1; }
    tar -C "$RUN" -cf - model | split -b 15M - "$OUT/model.tar.part-"
    tar -C "$RUN" -cf "$OUT/log_samples.tar" log.jsonl config.json $(cd "$RUN" && ls -d samples 2>/dev/null)
    mkdir -p "$ROOT/distill_results"  # not gpu_teacher.sh's results/: both may run on one machine
    cp $ROOT/distill_chunks.log "$ROOT/distill_results/chunks.jsonl"  # each chunk's summary (status, stage, step)
    if [ -d .gpu/teacher_eval ]; then
      rm -rf "$ROOT/distill_gen"
      teacher_eval student "$RUN/model" 4 1.0  # the student's own sampler: 4 steps, no guidance, eta 0
      if [ -n "${TEACHER_EVAL:-}" ]; then  # the teacher at its one-step and 50-step modes, for reference
        for mode in "teacher_one_step 1 1.0" "teacher_50 50 ${TEACHER_CFG:-1.0}"; do
          set -- $mode
          if [ $(( $(date +%s) - t0 )) -ge "${EVAL_BUDGET_S:-240}" ]; then
            echo "$1 skipped: finish has run $(( $(date +%s) - t0 )) s (EVAL_BUDGET_S ${EVAL_BUDGET_S:-240})"
          else
            teacher_eval "$1" "$TEACHER" "$2" "$3"
          fi
        done
      fi
      mkdir -p "$ROOT/distill_scores"
      score_generated .gpu/teacher_eval "$ROOT"/distill_gen "$ROOT/distill_results" "$ROOT/distill_scores"  # gpu_common.sh
      if [ -n "${KEEP_GENERATED:-}" ]; then
        tar -C "$ROOT" -cf - distill_gen | split -b 15M - "$OUT/generated.tar.part-"
      fi
    else
      echo "no .gpu/teacher_eval: the student is not evaluated here"
    fi
    tar -C "$ROOT" -cf "$OUT/results.tar" distill_results  # one file: at most 8 come back
    n=$(ls "$OUT" | wc -l)
    [ "$n" -gt 8 ] && echo "warning: $n files in \$OUT, at most 8 come back (model.tar.part-* can be fetched by a watch 0 call)"
    ls -la "$OUT"
    echo "finish took $(( $(date +%s) - t0 )) s"
    ;;
  *)
    echo "usage: bash benchmarks/gpu_distill.sh prepare | start WAIT_S | watch WAIT_S | finish" >&2
    exit 2
    ;;
esac
