#!/bin/sh
# readme_example: the README's example, compiled as a user would (only the
# public header, linked against the shared library with warnings on) and
# run: it must print 144. Keeps the front door true.
#
# usage: readme_example.sh README INCLUDE_DIR LIBRARY_DIR CC
set -eu
readme=$1 include=$2 libdir=$3 cc=$4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

awk '/^## An example/ { on = 1; next }
     on && /^```c$/ { code = 1; next }
     code && /^```$/ { exit }
     code { print }' "$readme" > "$work/example.c"
[ -s "$work/example.c" ] || { echo "no example found in $readme" >&2; exit 1; }
$cc -std=c11 -Wall -Wextra -pedantic -Werror -I"$include" "$work/example.c" \
    -L"$libdir" -lhkx -o "$work/example"
out=$(LD_LIBRARY_PATH="$libdir" "$work/example")
[ "$out" = 144 ] || { echo "the example printed '$out', not 144" >&2; exit 1; }
echo "1 passed, 0 failed"
