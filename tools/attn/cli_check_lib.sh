# tools/attn/cli_check_lib.sh — shared by the tools/attn/check_*_cli.sh scripts (sourced, not run):
#
#   CHECK=check_plot_cli; source "$(dirname "$0")/cli_check_lib.sh" "${1:-}"
#
# sets ATTN (the binary: the script's first argument, or build/tools/attn/attn) and TMP (a temporary
# directory removed on exit), and defines fail and expect_error.
ATTN=${1:-build/tools/attn/attn}
[ -n "$ATTN" ] || ATTN=build/tools/attn/attn
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail() { echo "$CHECK: FAIL: $*" >&2; exit 1; }
# expect_error "<text the error must contain>" attn-args...: attn fails with a short error holding the text
expect_error() {
  local want=$1; shift
  if "$ATTN" "$@" > "$TMP/out" 2> "$TMP/err" < /dev/null; then fail "attn $* succeeded"; fi
  grep -qF -- "$want" "$TMP/err" || fail "attn $*: stderr lacks '$want': $(cat "$TMP/err")"
  [ "$(wc -l < "$TMP/err")" -le 3 ] || fail "attn $*: error longer than 3 lines: $(cat "$TMP/err")"
}
