#!/usr/bin/env bash
# Builds a freestanding C file into a flat faultline guest image.
#   scripts/build-c-guest.sh prog.c [prog.bin]
# The program defines   long main(long index, long count)   (vCPU index and count); the crt0 in
# scripts/c-guest.ld calls it, reports the result on port 0xf0 (low dword, then high) and halts with
# it in RAX. Integer code only: no libc, no floating point or SSE. Run the image with
#   ./faultline run --image prog.bin --load-gpa 0x200000 --entry 0x200000 --mem 64M
# Flags and linker script are the ones dev.faultline.guest.CGuestRuntime defines (a test keeps them equal).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if [[ $# -lt 1 || $# -gt 2 || "$1" == -h || "$1" == --help ]]; then
  echo "usage: $0 PROGRAM.c [IMAGE.bin]" >&2
  exit 2
fi
src="$1"
out="${2:-${src%.c}.bin}"
[[ -f "$src" ]] || { echo "build-c-guest: $src: no such file" >&2; exit 2; }
for tool in gcc objcopy; do
  command -v "$tool" >/dev/null 2>&1 || { echo "build-c-guest: $tool not found; install gcc and binutils" >&2; exit 2; }
done

elf="$(mktemp --suffix=.elf)"
trap 'rm -f "$elf"' EXIT
gcc -ffreestanding -nostdlib -static -fno-pic -no-pie -mgeneral-regs-only -mno-red-zone -O2 \
    -fno-stack-protector -fno-asynchronous-unwind-tables -fcf-protection=none -fno-tree-loop-distribute-patterns \
    -Wall -T "$HERE/c-guest.ld" -Wl,--build-id=none -Wl,--no-warn-rwx-segments -o "$elf" "$src"
objcopy -O binary "$elf" "$out"
echo "$out: $(stat -c %s "$out") bytes; run with --image $out --load-gpa 0x200000 --entry 0x200000"
