#!/bin/sh
# Build the fake V4L2 camera (an LD_PRELOAD library) into build/fake-v4l2/.
# Idempotent: does nothing when the library is newer than its source.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
out="$root/build/fake-v4l2"
lib="$out/libfakev4l2.so"
mkdir -p "$out"
if [ ! -e "$lib" ] || [ "$here/fake_v4l2.c" -nt "$lib" ] || [ "$here/build.sh" -nt "$lib" ]; then
    ${CC:-gcc} -shared -fPIC -O2 -Wall -Wextra -o "$lib.tmp" "$here/fake_v4l2.c" -ldl -lpthread
    mv "$lib.tmp" "$lib"
fi
echo "$lib"
