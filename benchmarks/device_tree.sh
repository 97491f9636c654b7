#!/usr/bin/env bash
# Keep the shipped model weights out of what a device call sends, and put them back. Run on the CPU
# machine from the repository root:
#
#   bash benchmarks/device_tree.sh lean      before device calls: fvgen/videomodel/weights (42 MB of the 64 MiB
#                                            a call may carry) leaves git's index and is ignored through
#                                            .git/info/exclude, so the call sends only the rest of the tree;
#                                            the files stay on disk (carry "fvgen/videomodel/weights" in a call
#                                            that generates with --generator student)
#   bash benchmarks/device_tree.sh restore   after them: the index and the exclude file as they were
#   bash benchmarks/device_tree.sh status    which of the two it is, and the size a call would send
#
# Why the index: a device call sends tracked files and untracked files git does not ignore. While lean,
# a pre-commit hook refuses every commit, so that the weights' removal from the index cannot be committed.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
WEIGHTS=fvgen/videomodel/weights
GIT_DIR=$(git rev-parse --git-dir)
MARK=$GIT_DIR/fvgen-device-lean
EXCLUDE=$GIT_DIR/info/exclude
LINE="/$WEIGHTS/"  # exclude files take no inline comments: the marker file says the line is ours
HOOK=$GIT_DIR/hooks/pre-commit

sent_mb() {  # what a call would send without carried paths: tracked and untracked-not-ignored files
  git ls-files -z -co --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 |
    awk '{printf "%.1f MB", $1 / 1e6}'
}

case "${1:-status}" in
  lean)
    [ -e "$MARK" ] && { echo "already lean (bash $0 restore puts the weights back)"; exit 0; }
    git diff --cached --quiet -- "$WEIGHTS" || { echo "staged changes under $WEIGHTS: commit or unstage them first" >&2; exit 1; }
    mkdir -p "$(dirname "$EXCLUDE")" "$(dirname "$HOOK")"
    if [ -e "$HOOK" ] && ! grep -q fvgen-device-lean "$HOOK"; then
      echo "$HOOK exists and is not ours: not replacing it" >&2; exit 1
    fi
    cat > "$HOOK" <<'EOF'
#!/bin/sh
# fvgen-device-lean: refuse commits while benchmarks/device_tree.sh has the weights out of the index
if [ -e "$(git rev-parse --git-dir)/fvgen-device-lean" ]; then
  echo "the shipped weights are out of git's index for device calls: run 'bash benchmarks/device_tree.sh restore' first" >&2
  exit 1
fi
EOF
    chmod +x "$HOOK"
    touch "$MARK"
    echo "$LINE" >> "$EXCLUDE"
    git rm -r -q --cached "$WEIGHTS"
    echo "lean: a device call now sends $(sent_mb) (weights left out; commits refused until restore)"
    ;;
  restore)
    [ -e "$MARK" ] || { echo "not lean: nothing to restore"; exit 0; }
    git reset -q -- "$WEIGHTS"
    grep -vxF "$LINE" "$EXCLUDE" > "$EXCLUDE.tmp" || true  # (a line of ours: lean refuses to run twice)
    mv "$EXCLUDE.tmp" "$EXCLUDE"
    rm -f "$MARK"
    git diff --quiet -- "$WEIGHTS" && git diff --cached --quiet -- "$WEIGHTS" ||
      { echo "restored, but $WEIGHTS differs from HEAD: check git status" >&2; exit 1; }
    echo "restored: a device call sends $(sent_mb)"
    ;;
  status)
    if [ -e "$MARK" ]; then echo "lean"; else echo "full"; fi
    echo "a device call sends $(sent_mb) before carried paths (limit 64 MiB = 67.1 MB)"
    ;;
  *)
    echo "usage: bash $0 lean|restore|status" >&2; exit 2 ;;
esac
