#!/bin/sh
# readme_example: the README's example, compiled as the README says a user
# of the build tree would (the uninstalled pkg-config file: only the public
# header, linked against the shared library, warnings on) and run: it must
# print 144. Keeps the front door true.
#
# usage: readme_example.sh README BUILD_DIR CC
set -eu
readme=$1 libdir=$2 cc=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

awk '/^## An example/ { on = 1; next }
     on && /^```c$/ { code = 1; next }
     code && /^```$/ { exit }
     code { print }' "$readme" > "$work/example.c"
[ -s "$work/example.c" ] || { echo "no example found in $readme" >&2; exit 1; }
flags=$(PKG_CONFIG_PATH="$libdir/meson-uninstalled" pkg-config --cflags --libs libhkx)
# shellcheck disable=SC2086 # flags are words
$cc -std=c11 -Wall -Wextra -pedantic -Werror "$work/example.c" $flags -o "$work/example"
out=$(LD_LIBRARY_PATH="$libdir" "$work/example")
[ "$out" = 144 ] || { echo "the example printed '$out', not 144" >&2; exit 1; }
echo "1 passed, 0 failed"
