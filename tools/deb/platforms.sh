#!/bin/sh
# pip --platform flags for the manylinux wheels that run on Debian 12 (glibc 2.36) for a GNU CPU name
# (x86_64, aarch64): manylinux2014 and manylinux_2_17 .. manylinux_2_36. pip does not widen a given manylinux tag to
# older ones by itself, and the pinned wheels use several (LiteRT _2_27, av _2_28, OpenCV 2014).
set -eu
CPU=${1:?usage: platforms.sh GNU_CPU}
printf -- '--platform manylinux2014_%s' "$CPU"
for minor in $(seq 17 36); do printf -- ' --platform manylinux_2_%s_%s' "$minor" "$CPU"; done
echo
