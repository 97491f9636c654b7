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
#                                                 distillation loop of run NAME, watch
#   bash benchmarks/gpu_distill.sh ablation WAIT_S  the paper's ablation (ARMS: another set) from one GAN stage: stop run `gan`
#                                                 (started with NAME=gan STAGE=gan), end its stage 1 at the step
#                                                 it reached, keep its student as `gan-only`, then run side by
#                                                 side on the one GPU: full, gan-softkl and plain-dmd branched
#                                                 from that stage 1 (--from-stage1), and no-gan-init from the
#                                                 teacher; watch. Each stage-2 run goes on until finish
#   bash benchmarks/gpu_distill.sh pack           run KEEP's checkpoint (default NAME) packed for another session
#                                                 (`fvgen ... pack_warm_start`: student, fake score, heads in bf16,
#                                                 the state; about 86 MB for run 8's size) as warm.tar.part-* (15 MiB)
#   bash benchmarks/gpu_distill.sh collect        gather the carried .gpu/distill_warm*/warm.tar.part-* (carry them
#                                                 in two calls of their own: 86 MB does not fit one); `start` with
#                                                 WARM_START=1 then resumes from them (--warm-start)
#   bash benchmarks/gpu_distill.sh watch WAIT_S   print the logs for WAIT_S s, then copy run NAME's latest
#                                                 exported student to $OUT (model.tar.part-*)
#   bash benchmarks/gpu_distill.sh finish         stop every run at its next step (each exports its student,
#                                                 EMA), run benchmarks/teacher_eval.py on the carried clips for
#                                                 each student (4 steps, no guidance) and, with TEACHER_EVAL=1,
#                                                 for the teacher (1 step and 50 steps) as references, score
#                                                 them there, copy to $OUT: model.tar.part-* (15 MiB parts,
#                                                 run NAME's student: KEEP=NAME, default full after an
#                                                 ablation, else NAME; several: KEEP="full full-reg" gives
#                                                 model_full.tar.part-*, ...), log_samples.tar (every run's log.jsonl
#                                                 and config.json, KEEP's samples), results.tar (at most 8
#                                                 files come back)
#   (back here: cat model.tar.part-* | tar -x; tar -xf results.tar: distill_results/teacher_eval_<run>.json,
#   chunks_<run>.jsonl)
#
# Settings (environment): NAME the run (default run; its folder $ROOT/distill_NAME); WARM_START=1 (start:
# resume a new run from the collected parts); TEACHER the teacher's
# model folder (default .gpu/teacher-run8); STAGE gan, dmd or all (default all); FROM_STAGE1 --from-stage1; DISTILL_CONFIG (default embedded), ABLATION, GAN_STEPS, DMD_STEPS, BATCH_SIZE,
# REAL_CFG: `fvgen train distill`'s --config, --ablation, --gan-steps, --dmd-steps, --batch-size,
# --real-cfg (unset: the config's); MAX_MINUTES: length of one chunk (default 9; a restart reloads the
# teacher, the student, the fake score and the examples); NPROC (default: every GPU). The examples:
# PER_SCENE, PROCEDURAL, PHOTO_SHARE, MIN_WARP_PSNR, WORKERS, SEED, PRESET (benchmarks/gpu_common.sh;
# PRESET must be the teacher's, default embedded). finish: TEACHER_CFG (guidance of the teacher's
# 50-step reference, default 1.0: every evaluation since teacher run 4 samples with 1.0),
# EVAL_BUDGET_S (default 240: the teacher's references are skipped once finish has run this long, so
# that the call ends inside its 600 s), KEEP_GENERATED=1 (the generated frames, generated.tar.part-*),
# SEEDS=K (each stage-2 student also sampled with seeds 1..K-1, its mean frame scored as student_RUN_meanK),
# SAMPLING=1 (benchmarks/sampling.py on the GPU while the CPU scores, optional parts skipped after
# SAMPLING_BUDGET_S, default 150: sampling_gpu.json and .log; one file each of the 8 that come back).
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
#   one run: prepare -> MAX_MINUTES=16 GAN_STEPS=.. DMD_STEPS=.. start 300 (examples built in 3-4 min
#   first) -> watch 420-480 -> TEACHER_EVAL=1 finish (2-4 min: the students' 4 steps and the teacher's
#   1 step take seconds on 36 clips, the teacher's 50 steps about 70 s on an H200, scoring about 80 s of
#   one core per model, in parallel). The loop reads the step counts when it starts: to change them,
#   finish, then start again, which resumes the run's ckpt/ with the new counts.
#   the ablation: prepare -> NAME=gan STAGE=gan GAN_STEPS=100000 start 420 (stage 1 for what the call
#   leaves after the examples) -> DMD_STEPS=100000 ablation 480 (four stage-2 runs sharing the GPU for
#   the same time) -> TEACHER_EVAL=1 finish. Each run's checkpoint (student, fake score, EMA, optimizers)
#   stays on the machine: a session lost before finish keeps only the last snapshot of the student.
set -u
ROOT=${ROOT:-/tmp}
NAME=${NAME:-run}
RUN=$ROOT/distill_$NAME
DATA=${DATA:-$ROOT/teacher_data}  # gpu_teacher.sh's examples when it ran on this machine
TEACHER=${TEACHER:-.gpu/teacher-run8}
STAGE=${STAGE:-all}
# overridable for a dry run on a CPU machine, e.g. PY=.venv/bin/python DEVICE=cpu NPROC=1 PRESET=tiny
# DISTILL_CONFIG=tiny-pixel TEACHER=a tiny teacher's model folder
source benchmarks/gpu_common.sh
DEVICE=${DEVICE:-cuda}
PRESET=${PRESET:-embedded}
LOOPS=fvgen_distill_  # the loops' process names: $LOOPS$NAME
ABLATION_RUNS=${ARMS:-full gan-softkl plain-dmd no-gan-init}  # ARMS: another set (e.g. "full full-reg")

# stop_file NAME, chunks NAME, loop_log NAME
stop_file() { echo "$ROOT/distill_stop_$1"; }
chunks() { echo "$ROOT/distill_chunks_$1.log"; }
loop_log() { echo "$ROOT/distill_loop_$1.log"; }

# start_run NAME: the loop of run NAME (its settings from the environment) as a setsid daemon
start_run() {
  rm -f "$(stop_file "$1")" "$(chunks "$1")"  # a new start (e.g. STAGE=dmd after gan) must not see the last "done"
  NAME=$1 start_loop "$LOOPS$1" benchmarks/gpu_distill.sh "$(loop_log "$1")"
}

# run_names: the runs started on this machine (each has its loop's log)
run_names() {
  local log name
  for log in "$ROOT"/distill_loop_*.log; do
    [ -f "$log" ] || continue
    name=$(basename "$log" .log)
    echo "${name#distill_loop_}"
  done
}

# watch_runs WAIT_S: every 30 s the last log line of each run, until WAIT_S or no loop is left
watch_runs() {
  local runs=() n
  for n in $(run_names); do runs+=("$ROOT/distill_$n"); done
  watch_loop "$1" "$LOOPS" "$ROOT/distill_loop_*.log" "${runs[@]}"
}

# stop_runs: ask every loop to stop (each checkpoints and exports at its next step) and wait
stop_runs() {
  local stops=() n
  for n in $(run_names); do stops+=("$(stop_file "$n")"); done
  [ ${#stops[@]} -gt 0 ] && stop_loop "$LOOPS" "$ROOT/distill_loop_*.log" "${stops[@]}"
}

# teacher_eval NAME MODEL STEPS CFG [SEED [DIR]]: teacher_eval.py run of MODEL into DIR/NAME (default
# $ROOT/distill_gen, whose runs finish scores), sampling seed SEED (default 0)
teacher_eval() {
  local t0
  t0=$(date +%s)
  $PY benchmarks/teacher_eval.py run --clips .gpu/teacher_eval --model "$2" --out "${6:-$ROOT/distill_gen}/$1" \
    --steps "$3" --cfg "$4" --seed "${5:-0}" 2>&1 | tail -n 1
  echo "$1: $3 steps, guidance $4, seed ${5:-0}, $(( $(date +%s) - t0 )) s"
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
    build_examples "$DATA"  # benchmarks/gpu_common.sh (kept when the teacher built them): PER_SCENE, PROCEDURAL, ...
    if [ -n "${WARM_START:-}" ]; then  # the parts `collect` gathered, from an earlier session's `pack`
      ls "$ROOT"/warm_parts/warm.tar.part-* > /dev/null || { echo "no warm-start parts: run collect first"; exit 1; }
      rm -rf "$ROOT/warm"; cat "$ROOT"/warm_parts/warm.tar.part-* | tar -x -C "$ROOT" || exit 1
      export WARM="$ROOT/warm"
    fi
    start_run "$NAME"
    watch_runs "$2"
    snapshot_model "$RUN"
    ;;
  ablation)
    src=$ROOT/distill_gan
    [ -f "$src/ckpt/state.json" ] || { echo "no run gan in $src: start it first (NAME=gan STAGE=gan ... start)"; exit 1; }
    stop_loop "${LOOPS}gan" "$(loop_log gan)" "$(stop_file gan)"
    step=$($PY -c "import json, sys; s = json.load(open(sys.argv[1])); print(s['step'] if s['stage'] == 'gan' else s.get('gan_done', 0))" "$src/ckpt/state.json")
    echo "stage 1 ends at step $step"
    # resuming with --gan-steps at the step reached ends stage 1 without another step (and exports)
    rm -f "$(stop_file gan)" "$(chunks gan)"
    NAME=gan STAGE=gan GAN_STEPS=$step bash benchmarks/gpu_distill.sh loop > "$(loop_log gan)" 2>&1
    tail -n 2 "$(loop_log gan)"
    rm -rf "$ROOT/distill_gan-only"; mkdir -p "$ROOT/distill_gan-only"
    cp -r "$src/model" "$src/log.jsonl" "$ROOT/distill_gan-only/"  # the gan-only row: the student after stage 1
    for abl in $ABLATION_RUNS; do
      if [ "$abl" = no-gan-init ]; then
        (export ABLATION=$abl STAGE=all; unset GAN_STEPS FROM_STAGE1; start_run "$abl")
      else
        (export ABLATION=$abl STAGE=dmd GAN_STEPS=$step FROM_STAGE1=$src; start_run "$abl")
      fi
    done
    watch_runs "$2"
    ;;
  loop)
    # resumable chunks; a crash resumes from the last checkpoint (every ckpt_every steps). A chunk
    # reports "done" when STAGE is: --stage gan stops after stage 1. One GPU: no torchrun, so that runs
    # side by side (ablation) need no ports
    n=${NPROC:-$(nvidia-smi -L | wc -l)}
    launch=(-m torch.distributed.run --standalone --nproc_per_node="$n")
    [ "$n" = 1 ] && launch=()
    chunk_loop "$(stop_file "$NAME")" "$(chunks "$NAME")" \
      $PY "${launch[@]}" -m fvgen train distill \
        --teacher "$TEACHER" --out "$RUN" --data "$DATA"/*/ --stage "$STAGE" --config "${DISTILL_CONFIG:-embedded}" \
        --max-minutes "${MAX_MINUTES:-9}" --stop-file "$(stop_file "$NAME")" --workers 12 \
        ${ABLATION:+--ablation "$ABLATION"} ${FROM_STAGE1:+--from-stage1 "$FROM_STAGE1"} ${WARM:+--warm-start "$WARM"} \
        ${GAN_STEPS:+--gan-steps "$GAN_STEPS"} ${DMD_STEPS:+--dmd-steps "$DMD_STEPS"} \
        ${BATCH_SIZE:+--batch-size "$BATCH_SIZE"} ${REAL_CFG:+--real-cfg "$REAL_CFG"}
    ;;
  pack)
    run=$ROOT/distill_${KEEP:-$NAME}
    rm -rf "$ROOT/warm"
    $PY -c "import sys; from fvgen.videomodel.distill.train import pack_warm_start; pack_warm_start(sys.argv[1], sys.argv[2])" \
      "$run" "$ROOT/warm" || exit 1
    du -sh "$ROOT/warm"; cat "$ROOT/warm/state.json" | head -c 300; echo
    tar -C "$ROOT" -cf - warm | split -b 15M - "$OUT/warm.tar.part-"
    ls -la "$OUT"
    ;;
  collect)
    mkdir -p "$ROOT/warm_parts"
    for d in .gpu/distill_warm*/; do [ -d "$d" ] && cp "$d"/warm.tar.part-* "$ROOT/warm_parts/"; done
    ls -la "$ROOT/warm_parts"
    ;;
  watch)
    watch_runs "$2"
    # a copy of the latest export (every ckpt_every steps) comes back with every call, so a machine
    # lost between calls costs only the steps since it
    snapshot_model "$ROOT/distill_${KEEP:-$NAME}"
    ;;
  finish)
    t0=$(date +%s)
    stop_runs
    keep=${KEEP:-$NAME}
    [ -d "$ROOT/distill_full" ] && keep=${KEEP:-full}
    for k in $keep; do  # KEEP may name several runs: run k's student comes back as model_k.tar.part-*
      [ -d "$ROOT/distill_$k/model" ] || { echo "no student exported in $ROOT/distill_$k/model"; tail -n 20 "$(loop_log "$k")"; exit 1; }
      part=model; [ "$k" = "$keep" ] || part=model_$k
      tar -C "$ROOT/distill_$k" -cf - model | split -b 15M - "$OUT/$part.tar.part-"
    done
    keep=${keep%% *}  # the samples of the first
    runs=(); for run in "$ROOT"/distill_*/; do [ -d "$run/model" ] && runs+=("$(basename "$run")"); done
    tar -C "$ROOT" -cf "$OUT/log_samples.tar" \
      $(cd "$ROOT" && ls -d "${runs[@]/%//log.jsonl}" "${runs[@]/%//config.json}" "distill_$keep/samples" 2>/dev/null)
    rm -rf "$ROOT/distill_results"; mkdir -p "$ROOT/distill_results"  # not gpu_teacher.sh's results/
    for c in "$ROOT"/distill_chunks_*.log; do  # each chunk's summary (status, stage, step)
      [ -f "$c" ] && cp "$c" "$ROOT/distill_results/chunks_$(basename "$c" .log | sed 's/^distill_chunks_//').jsonl"
    done
    if [ -d .gpu/teacher_eval ]; then
      rm -rf "$ROOT/distill_gen"
      for r in "${runs[@]}"; do  # each student's own sampler: 4 steps, no guidance, eta 0; side by side
        teacher_eval "student_${r#distill_}" "$ROOT/$r/model" 4 1.0 &
      done
      wait
      if [ "${SEEDS:-1}" -gt 1 ]; then  # each stage-2 student's mean frame over SEEDS seeds: its sampling noise apart
        rm -rf "$ROOT/distill_seeds"; mkdir -p "$ROOT/distill_seeds"
        for r in "${runs[@]}"; do
          case "$r" in distill_gan|distill_gan-only) continue ;; esac
          for k in $(seq 1 $(( SEEDS - 1 ))); do
            teacher_eval "${r#distill_}_s$k" "$ROOT/$r/model" 4 1.0 "$k" "$ROOT/distill_seeds" &
          done
          wait
          $PY benchmarks/teacher_eval.py average --inputs "$ROOT/distill_gen/student_${r#distill_}" \
            "$ROOT"/distill_seeds/"${r#distill_}"_s* --out "$ROOT/distill_gen/student_${r#distill_}_mean$SEEDS"
        done
      fi
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
      if [ -n "${SAMPLING:-}" ]; then  # the GPU is free while the scores take the CPU: sampling.py's timings
        $PY benchmarks/sampling.py --json "$OUT/sampling_gpu.json" --cuda-graph --budget-s "${SAMPLING_BUDGET_S:-150}" \
          > "$OUT/sampling_gpu.log" 2>&1 &
      fi
      score_generated .gpu/teacher_eval "$ROOT"/distill_gen "$ROOT/distill_results" "$ROOT/distill_scores"  # gpu_common.sh
      wait  # sampling.py
      [ -f "$OUT/sampling_gpu.log" ] && grep -v "^W[0-9]" "$OUT/sampling_gpu.log" | tail -n 14
      if [ -n "${KEEP_GENERATED:-}" ]; then
        tar -C "$ROOT" -cf - distill_gen | split -b 15M - "$OUT/generated.tar.part-"
      fi
    else
      echo "no .gpu/teacher_eval: the students are not evaluated here"
    fi
    tar -C "$ROOT" -cf "$OUT/results.tar" distill_results  # one file: at most 8 come back
    n=$(ls "$OUT" | wc -l)
    [ "$n" -gt 8 ] && echo "warning: $n files in \$OUT, at most 8 come back (model.tar.part-* can be fetched by a watch 0 call)"
    ls -la "$OUT"
    echo "finish took $(( $(date +%s) - t0 )) s"
    ;;
  *)
    echo "usage: bash benchmarks/gpu_distill.sh prepare | start WAIT_S | ablation WAIT_S | watch WAIT_S | finish | pack | collect" >&2
    exit 2
    ;;
esac
