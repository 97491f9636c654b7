#!/usr/bin/env bash
# Train the embedded teacher on the lent H200 across several device calls (see
# shared/notes/gpu-training.md: a setsid daemon outlives the call that starts it while the machine
# stays warm). Runs on the device machine, from the repository root:
#
#   bash benchmarks/gpu_teacher.sh start WAIT_S   install the carried wheels, copy the carried shard
#                                                 folders, start the training loop, watch WAIT_S s
#   bash benchmarks/gpu_teacher.sh more WAIT_S    copy newly carried shard folders (the loop picks
#                                                 them up at its next chunk), watch WAIT_S s
#   bash benchmarks/gpu_teacher.sh finish         stop at the next step, export, copy the EMA model,
#                                                 the log and samples to $OUT
#
# Carried: .gpu/wtrain/*.whl (diffusers, importlib_metadata) and .gpu/shards_*/ (example shards).
set -u
RUN=/tmp/teacher_run
DATA=/tmp/teacher_data
STOP=/tmp/teacher_stop
export PYTHONPATH=/tmp/site:$PWD

copy_shards() {
  mkdir -p "$DATA"
  for d in .gpu/shards_*/; do
    [ -d "$d" ] || continue
    n=$(basename "$d")
    [ -d "$DATA/$n" ] || cp -r "$d" "$DATA/$n"
  done
  echo "shard folders: $(ls "$DATA" | tr '\n' ' ') examples: $(ls "$DATA"/*/*.npz | wc -l)"
}

watch() {
  local end=$(( $(date +%s) + $1 ))
  while [ "$(date +%s)" -lt "$end" ]; do
    sleep 30
    echo "--- $(date +%T) $(tail -n 1 $RUN/log.jsonl 2>/dev/null)"
    pgrep -f "fvgen_teacher_loop" > /dev/null || { echo "loop not running"; tail -n 20 /tmp/teacher_loop.log; break; }
  done
}

case "$1" in
  start)
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/wtrain/*.whl || exit 1
    copy_shards
    rm -f "$STOP"
    nvidia-smi --query-gpu=name,memory.total --format=csv
    setsid nohup bash -c 'exec -a fvgen_teacher_loop bash benchmarks/gpu_teacher.sh loop' > /tmp/teacher_loop.log 2>&1 < /dev/null &
    watch "$2"
    ;;
  loop)
    # resumable chunks of 4 minutes; each chunk reads every shard folder present when it starts
    while [ ! -f "$STOP" ]; do
      torchrun --standalone --nproc_per_node="$(nvidia-smi -L | wc -l)" -m fvgen.teacher.train \
        --config benchmarks/teacher_embedded.toml --out "$RUN" --data "$DATA"/*/ --max-minutes 4 \
        --stop-file "$STOP" --workers 8 | tail -n 1 | tee -a /tmp/teacher_chunks.log
      grep -q '"status": "done"' /tmp/teacher_chunks.log && break
      sleep 1
    done
    echo "loop ended"
    ;;
  more)
    copy_shards
    watch "$2"
    ;;
  finish)
    touch "$STOP"
    while pgrep -f "fvgen_teacher_loop" > /dev/null; do sleep 2; done
    tail -n 5 /tmp/teacher_loop.log
    cp benchmarks/teacher_embedded.toml "$RUN/model/train.toml"
    tar -C "$RUN" -cf - model | split -b 15M - "$OUT/model.tar.part-"
    cp "$RUN/log.jsonl" "$OUT/"
    tar -C "$RUN" -cf "$OUT/samples.tar" samples
    ls -la "$OUT"
    ;;
esac
