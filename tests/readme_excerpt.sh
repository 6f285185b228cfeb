#!/bin/sh
# readme_excerpt: the README's code block under a heading is an excerpt of
# a source file: its lines are the file's, in the file's order, and lines
# next to each other in the README are next to each other in the file but
# where a line "/* ... */" (alone, indented or not) marks lines left out.
# Keeps the README's copy of an example the same as the example that runs.
#
# usage: readme_excerpt.sh README HEADING FILE
set -eu
readme=$1 heading=$2 file=$3

awk -v heading="$heading" -v file="$file" '
	FNR == NR { src[++nsrc] = $0; next }	# the file, read first
	$0 == heading { on = 1; next }
	on && /^```c$/ { code = 1; nchunk = 1; next }
	code && /^```$/ { exit }
	code && /^[ \t]*\/\* \.\.\. \*\/$/ {
		if (len[nchunk] > 0)
			nchunk++
		next
	}
	code { line[nchunk, ++len[nchunk]] = $0 }
	END {
		if (!code) {
			printf "no code block under \"%s\"\n", heading > "/dev/stderr"
			exit 1
		}
		# Each run of lines, at the first place after the last run
		# where the file has it whole.
		at = 0
		for (c = 1; c <= nchunk && len[c] > 0; c++) {
			for (k = at + 1; k + len[c] - 1 <= nsrc; k++) {
				for (i = 1; i <= len[c] && src[k + i - 1] == line[c, i]; i++)
					;
				if (i > len[c])
					break
			}
			if (k + len[c] - 1 > nsrc) {
				printf "the README has lines that %s has not, from: %s\n",
				    file, line[c, 1] > "/dev/stderr"
				exit 1
			}
			at = k + len[c] - 1
			n += len[c]
		}
		printf "%d lines of %s, in order\n", n, file
	}' "$file" "$readme"
