#!/usr/bin/env bash
# Check the set-up (scripts/setup.sh, which run.sh and test.sh call first) from a fresh copy of this
# checkout, the two ways issue 15 asks for:
#   plain     a plain environment (env -i, an empty HOME, PATH=/usr/bin:/bin): the set-up must succeed, or
#             end with the one "setup: error:" line (never a resolver error or a traceback) and leave no
#             .venv behind;
#   fallback  this machine's own pip configuration with PyTorch's index unreachable (a non-routable
#             address, 5 s time-out): torch must come from pip's configuration (a wheel folder it names is
#             searched beside the index; a mirror in the second step) despite the dead index, and the
#             README's commands (./dc --help, .venv/bin/deepcompress --help, the activated venv) must work.
# Usage: scripts/check_setup.sh [plain|fallback|both]   (default both; fallback installs torch: minutes)
# Prints one "check_setup: WAY: ok ..." line per way; exits non-zero on the first failure.
set -euo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"
ways=${1:-both}
[ "$ways" = both ] && ways="plain fallback"

fresh_copy() {
  local dir
  dir=$(mktemp -d "${TMPDIR:-/tmp}/deepcompress-check.XXXXXX")
  (cd "$src" && git ls-files -co --exclude-standard -z | tar --null --no-recursion -T - -cf -) | tar -xf - -C "$dir"
  echo "$dir"
}

bad() {
  echo "check_setup: $1: FAILED: $2" >&2
  exit 1
}

check_plain() {
  local dir err rc=0
  dir=$(fresh_copy)
  err="$dir.stderr"
  (cd "$dir" && env -i HOME="$(mktemp -d)" PATH=/usr/bin:/bin bash scripts/setup.sh) >/dev/null 2>"$err" || rc=$?
  if [ "$rc" = 0 ]; then
    "$dir/dc" --help >/dev/null || bad plain "set-up succeeded but ./dc --help failed"
    echo "check_setup: plain: ok (the set-up succeeded in a plain environment)"
  else
    ! grep -qiE 'Traceback|ResolutionImpossible|conflicting dependencies' "$err" \
      || bad plain "pip's or Python's own error reached the user: $err"
    [ "$(grep -c '^setup: error: ' "$err")" = 1 ] && tail -n 1 "$err" | grep -q '^setup: error: ' \
      || bad plain "expected one final 'setup: error:' line: $err"
    [ ! -e "$dir/.venv" ] || bad plain "a failed set-up left $dir/.venv behind"
    echo "check_setup: plain: ok (failed with the one message, no .venv left): $(tail -n 1 "$err")"
  fi
  rm -rf "$dir" "$err"
}

check_fallback() {
  local dir start took
  dir=$(fresh_copy)
  start=$SECONDS
  (cd "$dir" && DEEPCOMPRESS_TORCH_INDEX=http://10.255.255.1/whl/cpu DEEPCOMPRESS_SETUP_TIMEOUT=5 \
     bash scripts/setup.sh) >/dev/null 2>"$dir.stderr" || bad fallback "set-up failed: $(tail -n 1 "$dir.stderr")"
  took=$(grep -o 'torch ready ([^)]*)' "$dir.stderr" || true)
  "$dir/dc" --help >/dev/null || bad fallback "./dc --help failed"
  "$dir/.venv/bin/deepcompress" --help >/dev/null || bad fallback ".venv/bin/deepcompress --help failed"
  (cd "$dir" && . .venv/bin/activate && deepcompress --help >/dev/null) || bad fallback "activated venv failed"
  echo "check_setup: fallback: ok ($took; whole set-up $((SECONDS - start)) s)"
  rm -rf "$dir" "$dir.stderr"
}

for way in $ways; do
  "check_$way"
done
