#!/usr/bin/env bash
# pull.sh: the orb's pull command. Builds the artifact-sync pull command line
# from the parameters without eval, so a parameter can never run a command,
# and passes the token through the environment, never on the command line.
#
# Environment: PARAM_TO, PARAM_PROJECT, PARAM_SELECTION, PARAM_INCLUDE,
# PARAM_EXCLUDE, PARAM_LAYOUT, PARAM_TOKEN (the NAME of the variable holding
# the token), PARAM_FOLLOW (true or false) and PARAM_EXTRA_ARGS.
set -euo pipefail

die() {
  echo "artifact-sync pull: $*" >&2
  exit 1
}

valid_name() {
  case "$1" in
    '' | [0-9]* | *[!A-Za-z0-9_]*) return 1 ;;
  esac
}

# var_ref reads the $NAME or ${NAME} its argument starts with: it sets
# REF_LEN to the reference's length and REF_VALUE to the variable's value
# (empty when unset). A $ that starts no reference is kept: REF_LEN=1,
# REF_VALUE=$. Only variables are read: $(...) and backquotes are not run.
var_ref() {
  local _ref_name
  REF_LEN=1 REF_VALUE='$'
  case "$1" in
    "\${"*"}"*)
      _ref_name=${1#??}
      _ref_name=${_ref_name%%\}*}
      if valid_name "$_ref_name"; then
        REF_LEN=$((${#_ref_name} + 3)) REF_VALUE=${!_ref_name-}
      fi
      ;;
    "\$"[A-Za-z_]*)
      _ref_name=${1#?}
      _ref_name=${_ref_name%%[!A-Za-z0-9_]*}
      REF_LEN=$((${#_ref_name} + 1)) REF_VALUE=${!_ref_name-}
      ;;
  esac
}

# expand prints its argument with every $NAME and ${NAME} replaced.
expand() {
  local s=$1 out=''
  while [ -n "$s" ]; do
    case "$s" in
      "\$"*)
        var_ref "$s"
        out+=$REF_VALUE
        s=${s:REF_LEN}
        ;;
      *)
        out+=${s:0:1}
        s=${s:1}
        ;;
    esac
  done
  printf '%s' "$out"
}

# words splits its argument into the array WORDS as a shell splits words:
# blanks separate them, 'single quotes' keep everything, in "double quotes"
# and bare words $NAME and ${NAME} are expanded, a backslash escapes the next
# character. A variable's value is never split again, and nothing is run.
words() {
  local s=$1 word='' have=0 quoted=0
  WORDS=()
  while [ -n "$s" ]; do
    case "$quoted$s" in
      0[\ $'\t'$'\n']*)
        if [ "$have" = 1 ]; then WORDS+=("$word"); fi
        word='' have=0
        s=${s:1}
        ;;
      0"'"*)
        s=${s:1}
        case "$s" in *"'"*) ;; *) die "a ' is not closed in: $1" ;; esac
        word+=${s%%"'"*}
        s=${s#*"'"}
        have=1
        ;;
      ?'"'*)
        quoted=$((1 - quoted)) have=1
        s=${s:1}
        ;;
      0"\\"?* | 1"\\"[\"\$\\]*)
        word+=${s:1:1}
        s=${s:2}
        have=1
        ;;
      ?"\$"*)
        var_ref "$s"
        word+=$REF_VALUE
        s=${s:REF_LEN}
        have=1
        ;;
      *)
        word+=${s:0:1}
        s=${s:1}
        have=1
        ;;
    esac
  done
  [ "$quoted" = 0 ] || die "a \" is not closed in: $1"
  if [ "$have" = 1 ]; then WORDS+=("$word"); fi
}

[ -n "${PARAM_TO:-}" ] || die "the to parameter is empty: give the destination, s3://bucket/prefix or a directory"

token_var=${PARAM_TOKEN:-CIRCLE_TOKEN}
valid_name "$token_var" || die "the token parameter '$token_var' is not an environment variable name: give the name of the variable holding the token, such as CIRCLE_TOKEN"
token=${!token_var-}
[ -n "$token" ] || die "\$$token_var is empty: put a CircleCI personal API token in it (a context or the project's environment variables), or name another variable with the token parameter"
export CIRCLE_TOKEN="$token"
unset token

args=(pull)
project=$(expand "${PARAM_PROJECT:-}")
if [ -n "$project" ]; then args+=("$project"); fi
words "${PARAM_SELECTION:-}"
args+=(${WORDS[@]+"${WORDS[@]}"})
# follow applies to a workflow or pipeline selection, the only ones --follow
# takes; any other selection is pulled once.
follow=0
if [ "${PARAM_FOLLOW:-}" = true ] || [ "${PARAM_FOLLOW:-}" = 1 ]; then
  for w in ${WORDS[@]+"${WORDS[@]}"}; do
    case "$w" in
      --workflow | --workflow=* | --pipeline | --pipeline=* | --pipeline-number | --pipeline-number=*) follow=1 ;;
    esac
  done
fi
args+=(--to "$(expand "$PARAM_TO")")
if [ -n "${PARAM_LAYOUT:-}" ]; then args+=(--layout "$PARAM_LAYOUT"); fi
if [ -n "${PARAM_INCLUDE:-}" ]; then args+=(--include "$PARAM_INCLUDE"); fi
if [ -n "${PARAM_EXCLUDE:-}" ]; then args+=(--exclude "$PARAM_EXCLUDE"); fi
if [ "$follow" = 1 ]; then args+=(--follow); fi
words "${PARAM_EXTRA_ARGS:-}"
args+=(${WORDS[@]+"${WORDS[@]}"})

printf 'artifact-sync'
printf ' %q' "${args[@]}"
printf '\n'
exec artifact-sync "${args[@]}"
