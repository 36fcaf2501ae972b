"""emu_translate.py: copies a model/cuda .cu file into C++ that g++ compiles
for the CPU emulation (emu_cuda.h does the rest). Two rewrites, the only
CUDA syntax that is not C++:
  kernel<<<grid, block, smem, stream>>>(args)
      -> emu::launch("kernel", kernel, grid, block, smem, stream)(args)
  extern __shared__ __align__(N) T name[];
      -> T *name = (T *)emu::dyn_smem();
A #line directive keeps compiler messages pointing at the .cu file.
Usage: emu_translate.py IN.cu OUT.cc"""
import re
import sys

LAUNCH = re.compile(r"([A-Za-z_][\w:]*(?:<[^<>;()]*>)?)\s*<<<(.*?)>>>\s*\(", re.S)
DYN_SMEM = re.compile(
    r"extern\s+__shared__\s+(?:__align__\(\s*\d+\s*\)\s+)?([A-Za-z_][\w\s]*?)\s+(\w+)\s*\[\s*\]\s*;")


def translate(text):
    text = LAUNCH.sub(lambda m: 'emu::launch("%s", %s, %s)(' % (m.group(1), m.group(1),
                                                               m.group(2)), text)
    return DYN_SMEM.sub(lambda m: "%s *%s = (%s *)emu::dyn_smem();" % (
        m.group(1), m.group(2), m.group(1)), text)


def main():
    src, dst = sys.argv[1], sys.argv[2]
    with open(src) as f:
        text = f.read()
    out = translate(text)
    if "<<<" in out or "extern __shared__" in out:
        sys.exit("emu_translate.py: %s: a launch or a dynamic shared array it cannot rewrite"
                 % src)
    with open(dst, "w") as f:
        f.write('#line 1 "%s"\n' % src)
        f.write(out)


if __name__ == "__main__":
    main()
