# env.sh: sets a shell up to build and run gptrain with the Debian 12 packages
# that bench/gpu/fetch_deps.sh unpacked into .devdeps/root (Open MPI 4.1,
# parallel HDF5 1.10, OpenBLAS (OpenMP), cmocka, pkgconf), on a machine that
# has none of them installed (the lent GPU machine). Source it, with bash:
#     source bench/gpu/env.sh
#     gpu_configure build-gpu [-DGPTRAIN_CUDA=OFF ...]   # cmake with the hints it needs
#     cmake --build build-gpu -j16 && ctest --test-dir build-gpu -R test_kernels
#     mpirun -np 2 build-gpu/runtime/gptrain ...
# What it does, each time it is sourced:
#   - decompresses the files fetch_deps.sh stored as FILE.xz (first time only);
#   - .devdeps/gen/lib: links to the tree's shared libraries: always those of
#     Open MPI, PMIx, HDF5, OpenBLAS, cmocka and pkgconf; any other (zlib, curl,
#     libevent, hwloc, ...) only where `ldconfig -p` shows the host lacks that
#     soname, so host programs keep their own newer copies;
#   - .devdeps/gen/pkgconfig: the tree's .pc files with /usr rewritten to the tree;
#   - .devdeps/gen/bin/h5pcc: an HDF5 compiler wrapper for the tree (Debian's
#     has /usr built in), and .devdeps/gen/hdf5, a prefix for HDF5_ROOT;
#   - exports PATH, LD_LIBRARY_PATH, PKG_CONFIG_PATH, CMAKE_PREFIX_PATH,
#     HDF5_ROOT, the OPAL_* and PMIX_* install-directory overrides that make the
#     relocated Open MPI find its plugins, help files, wrapper data and
#     openmpi-mca-params.conf, OMPI_ALLOW_RUN_AS_ROOT(_CONFIRM)=1, and
#     GPTRAIN_FORTUNES (the tests' corpus, from the fortunes packages);
#   - prints one line saying what it found.
# Sourcing it twice is harmless. GPTRAIN_DEVDEPS_ALL=1 takes every library from
# the tree, including those the host has.

_gd_main() {
    local repo root gen L
    repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd) || return 1
    root=$repo/.devdeps/root
    gen=$repo/.devdeps/gen
    L=$root/usr/lib/x86_64-linux-gnu
    if [ ! -d "$root" ] || [ ! -f "$repo/.devdeps/manifest.txt" ]; then
        echo "env.sh: no $root: run 'bash bench/gpu/fetch_deps.sh' on a Debian 12 machine" \
             "with apt, then carry .devdeps" >&2
        return 1
    fi

    # 1. Files stored compressed by fetch_deps.sh (and the programs' modes, in
    #    case a copy lost them).
    local nxz
    nxz=$(find "$root" -type f -name '*.xz' | wc -l)
    chmod a+x "$root"/usr/bin/* 2>/dev/null
    if [ "$nxz" -gt 0 ]; then
        if command -v xz >/dev/null 2>&1; then
            find "$root" -type f -name '*.xz' -print0 | xargs -0 -r xz -d -f -T0 || return 1
        elif command -v python3 >/dev/null 2>&1; then
            python3 - "$root" <<'PY' || return 1
import lzma, os, shutil, sys
for d, _, files in os.walk(sys.argv[1]):
    for f in files:
        if f.endswith(".xz"):
            src = os.path.join(d, f)
            dst = src[:-3]
            with lzma.open(src) as i, open(dst + ".part", "wb") as o:
                shutil.copyfileobj(i, o, 1 << 20)
            shutil.copymode(src, dst + ".part")
            os.replace(dst + ".part", dst)
            os.remove(src)
PY
        else
            echo "env.sh: needs xz or python3 to unpack .devdeps" >&2
            return 1
        fi
    fi

    # Symbolic links a copy may have dropped.
    local lp lt
    if [ -f "$repo/.devdeps/links.txt" ]; then
        while IFS=$'\t' read -r lp lt; do
            [ -n "$lp" ] && [ ! -L "$root/$lp" ] || continue
            mkdir -p "$(dirname "$root/$lp")" && ln -sfn "$lt" "$root/$lp"
        done <"$repo/.devdeps/links.txt"
    fi

    # 2. The libraries: forced ones, and fallbacks for sonames the host lacks.
    rm -rf "$gen"
    mkdir -p "$gen/lib" "$gen/pkgconfig" "$gen/bin" "$gen/hdf5" || return 1
    local ldc hostsos="" so rel kind pkg nforced=0 nfall=0 fallen=""
    for ldc in ldconfig /sbin/ldconfig /usr/sbin/ldconfig; do
        if command -v "$ldc" >/dev/null 2>&1; then
            hostsos=$("$ldc" -p 2>/dev/null | awk '$1 ~ /^lib/ && /x86-64/ { print $1 }' | sort -u)
            break
        fi
    done
    while IFS=$'\t' read -r so rel kind pkg; do
        [ -n "$so" ] || continue
        if [ "$kind" = S ] && [ "${GPTRAIN_DEVDEPS_ALL:-0}" != 1 ]; then
            if [ -n "$hostsos" ]; then
                printf '%s\n' "$hostsos" | grep -qxF "$so" && continue
            else  # no ldconfig: look in the usual places
                [ -e "/lib/x86_64-linux-gnu/$so" ] || [ -e "/usr/lib/x86_64-linux-gnu/$so" ] ||
                    [ -e "/lib64/$so" ] || [ -e "/usr/lib64/$so" ] && continue
            fi
            nfall=$((nfall + 1)); fallen="$fallen ${so%%.so*}"
        else
            nforced=$((nforced + 1))
        fi
        ln -sfn "$root$rel" "$gen/lib/$so"
    done <"$repo/.devdeps/manifest.txt"
    # UCX loads its transports from <dir of libucs>/ucx.
    [ -d "$L/ucx" ] && ln -sfn "$L/ucx" "$gen/lib/ucx"

    # 3. pkg-config files with /usr pointing into the tree.
    local pc d
    for d in "$L/pkgconfig" "$L/openmpi/lib/pkgconfig" "$L/openblas-openmp/pkgconfig" \
             "$root/usr/share/pkgconfig"; do
        for pc in "$d"/*.pc; do
            [ -e "$pc" ] || continue
            sed -E -e "s#(=|-I|-L|^|[[:space:]])/usr(/|\$|[[:space:]])#\\1$root/usr\\2#g" \
                "$pc" >"$gen/pkgconfig/$(basename "$pc")"
        done
    done

    # 4. HDF5: a wrapper that FindHDF5 can ask (-show, -showconfig), and a prefix.
    local hinc=$root/usr/include/hdf5/openmpi hlib=$L/hdf5/openmpi
    cat >"$gen/bin/h5pcc" <<EOF
#!/bin/sh
# h5pcc for the parallel HDF5 in $root (written by bench/gpu/env.sh).
# Shared library only: FindHDF5 asks for '-show -shlib'.
CC="$root/usr/bin/mpicc"
case "\$1" in
  -showconfig) exec cat "$L/libhdf5_openmpi.settings" ;;
  -help|-h) echo "usage: h5pcc [-show] [-shlib|-noshlib] [-showconfig] compiler-args"; exit 0 ;;
esac
show=""; compile=no; args=""
for a in "\$@"; do
  case "\$a" in
    -show) show=echo ;;
    -shlib|-noshlib|-prefix=*|-echo) ;;
    -c|-E|-S|-M|-MM) compile=yes; args="\$args \$a" ;;
    *) args="\$args \$a" ;;
  esac
done
if [ \$compile = yes ]; then
  \$show "\$CC" -I"$hinc" \$args
else
  \$show "\$CC" -I"$hinc" \$args -L"$hlib" -lhdf5 -Wl,-rpath-link,"$gen/lib"
fi
EOF
    chmod +x "$gen/bin/h5pcc"
    mkdir -p "$gen/hdf5/bin"
    ln -sfn "$gen/bin/h5pcc" "$gen/hdf5/bin/h5pcc"
    ln -sfn "$hinc" "$gen/hdf5/include"
    ln -sfn "$hlib" "$gen/hdf5/lib"

    # 5. The environment. Entries from an earlier sourcing are dropped first.
    _gd_prepend() {  # _gd_prepend VAR DIR...: DIRs first, old .devdeps entries removed
        local var=$1 old new="" p
        shift
        old=${!var:-}
        for p in "$@"; do new="${new:+$new:}$p"; done
        local IFS=:
        for p in $old; do
            case $p in ''|*/.devdeps/*) ;; *) new="$new:$p" ;; esac
        done
        export "$var=$new"
    }
    # Settings for another MPI (an image's own Open MPI or HPC-X) would steer
    # this one wrong: drop them (and say so).
    local v dropped=""
    for v in $(compgen -e | grep -E '^(OMPI_MCA_|OPAL_|PMIX_MCA_)'); do
        case $v in OMPI_MCA_*|OPAL_DESTDIR|PMIX_MCA_*) dropped="$dropped $v"; unset "$v" ;; esac
    done
    _gd_prepend PATH "$gen/bin" "$root/usr/bin"
    if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
        export PATH=$PATH:/usr/local/cuda/bin
    fi
    _gd_prepend LD_LIBRARY_PATH "$gen/lib" "$L/openmpi/lib" "$L/hdf5/openmpi" "$L/openblas-openmp"
    _gd_prepend PKG_CONFIG_PATH "$gen/pkgconfig"
    _gd_prepend CMAKE_PREFIX_PATH "$root/usr"
    unset -f _gd_prepend
    export HDF5_ROOT=$gen/hdf5
    # Open MPI, relocated from /usr: every install directory it knows, named.
    export OPAL_PREFIX=$root/usr OPAL_EXEC_PREFIX=$root/usr
    export OPAL_BINDIR=$root/usr/bin OPAL_SBINDIR=$root/usr/sbin
    export OPAL_LIBEXECDIR=$root/usr/libexec
    export OPAL_DATAROOTDIR=$root/usr/share OPAL_DATADIR=$root/usr/share
    export OPAL_SYSCONFDIR=$root/etc/openmpi
    export OPAL_LIBDIR=$L/openmpi/lib OPAL_INCLUDEDIR=$L/openmpi/include
    export OPAL_PKGLIBDIR=$L/openmpi/lib/openmpi3
    export OPAL_PKGDATADIR=$root/usr/share/openmpi
    export OPAL_PKGINCLUDEDIR=$L/openmpi/include/openmpi
    # PMIx (Open MPI's ext3x component uses the tree's libpmix): its plugins and help.
    export PMIX_PREFIX=$L/pmix2 PMIX_EXEC_PREFIX=$L/pmix2
    export PMIX_LIBDIR=$L/pmix2/lib PMIX_PKGLIBDIR=$L/pmix2/lib/pmix
    export PMIX_DATADIR=$L/pmix2/share PMIX_PKGDATADIR=$L/pmix2/share/pmix
    export PMIX_SYSCONFDIR=$root/etc
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    export GPTRAIN_DEVDEPS_ROOT=$root GPTRAIN_DEVDEPS_REPO=$repo
    # The fortunes corpus of the tests (tests/lib.sh) and of the quickstart.
    [ -r "$root/usr/share/games/fortunes/computers" ] &&
        export GPTRAIN_FORTUNES=$root/usr/share/games/fortunes

    # 6. Report: versions, the libraries taken from the tree, and any library
    #    that does not resolve.
    local mpiv hdfv blasv cmv cuda nccl bad="" f unxz=""
    [ "$nxz" -gt 0 ] && unxz="; decompressed $nxz files (bench/gpu/fetch_deps.sh --pack packs them again)"
    mpiv=$(sed -n 's/^version=//p' "$root/usr/share/openmpi/mpicc-wrapper-data.txt" 2>/dev/null)
    hdfv=$(sed -n 's/^ *HDF5 Version: *//p' "$L/libhdf5_openmpi.settings" 2>/dev/null)
    grep -q 'Parallel HDF5: yes' "$L/libhdf5_openmpi.settings" 2>/dev/null && hdfv="$hdfv parallel"
    blasv=$(sed -n 's/^version=//p' "$L/openblas-openmp/pkgconfig/openblas.pc" 2>/dev/null)
    grep -q 'USE_OPENMP=1' "$L/openblas-openmp/pkgconfig/openblas.pc" 2>/dev/null && blasv="$blasv openmp"
    cmv=$(sed -n 's/^Version: *//p' "$L/pkgconfig/cmocka.pc" 2>/dev/null)
    for f in "$root/usr/bin/orterun" "$root/usr/bin/opal_wrapper" "$root/usr/bin/pkgconf" \
             "$L/libhdf5_openmpi.so.103" "$L/openblas-openmp/libopenblas.so.0" \
             "$L/openmpi/lib/openmpi3/mca_btl_vader.so" "$L/openmpi/lib/openmpi3/mca_pmix_ext3x.so"; do
        if [ ! -e "$f" ]; then bad="$bad ${f##*/}(missing)"; continue; fi
        ldd "$f" 2>&1 | grep -qE 'not found|version .* not found' && bad="$bad ${f##*/}"
    done
    cuda=none
    command -v nvcc >/dev/null 2>&1 && cuda="nvcc $(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')"
    nccl=$(_gd_find_nccl | head -1)
    # cuDNN loads its engine libraries by name: a pip-installed one needs its
    # folder on the library path.
    local cudnn
    cudnn=$(_gd_find_cudnn | head -1)
    case $cudnn in
        *site-packages*|*dist-packages*)
            export LD_LIBRARY_PATH="$(dirname "${cudnn#* }"):${LD_LIBRARY_PATH:-}" ;;
    esac
    # ... and it compiles its attention kernels with NVRTC, which it also
    # loads by name.
    if [ -n "$cudnn" ] && ! ldconfig -p 2>/dev/null | grep -q 'libnvrtc\.so'; then
        for f in /usr/local/cuda/lib64/libnvrtc.so*; do
            [ -e "$f" ] && { export LD_LIBRARY_PATH="/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"; break; }
        done
    fi
    echo "env.sh: .devdeps: Open MPI ${mpiv:-?}, HDF5 ${hdfv:-?}, OpenBLAS ${blasv:-?}," \
         "cmocka ${cmv:-?}; $nforced libs forced + $nfall as fallback${fallen:+ (${fallen# })};" \
         "ldd: ${bad:-all resolve}; CUDA: $cuda; NCCL: ${nccl:-not found}; cuDNN: ${cudnn:-not found}${dropped:+; unset:$dropped}$unxz"
}

# _gd_find_nccl: prints "INCLUDE_DIR LIBRARY" of an NCCL (the toolkit's, the
# system's, or the one pip installed with PyTorch), nothing if none.
_gd_find_nccl() {
    local d lib
    for d in /usr/local/cuda/include /usr/local/cuda/targets/x86_64-linux/include /usr/include \
             ${CUDA_HOME:+$CUDA_HOME/include}; do
        [ -f "$d/nccl.h" ] || continue
        for lib in /usr/local/cuda/lib64/libnccl.so /usr/local/cuda/targets/x86_64-linux/lib/libnccl.so \
                   /usr/lib/x86_64-linux-gnu/libnccl.so ${CUDA_HOME:+$CUDA_HOME/lib64/libnccl.so} \
                   /usr/local/cuda/lib64/libnccl.so.2 /usr/lib/x86_64-linux-gnu/libnccl.so.2; do
            [ -e "$lib" ] && { echo "$d $lib"; return 0; }
        done
    done
    _gd_find_pip nccl nccl.h libnccl.so
}

# _gd_find_cudnn: prints "INCLUDE_DIR LIBRARY" of a cuDNN 9 (the toolkit's or
# the one pip installed with PyTorch), nothing if none. --attention cudnn
# needs it; the build works without it.
_gd_find_cudnn() {
    local d lib
    for d in /usr/local/cuda/include /usr/include ${CUDA_HOME:+$CUDA_HOME/include}; do
        [ -f "$d/cudnn_version.h" ] || continue
        for lib in /usr/local/cuda/lib64/libcudnn.so /usr/local/cuda/lib/libcudnn.so \
                   /usr/lib/x86_64-linux-gnu/libcudnn.so /usr/local/cuda/lib64/libcudnn.so.9; do
            [ -e "$lib" ] && { echo "$d $lib"; return 0; }
        done
    done
    _gd_find_pip cudnn cudnn_version.h libcudnn.so
}

# _gd_find_pip NAME HEADER LIB: prints "INCLUDE_DIR LIBRARY" of the NVIDIA
# wheel NAME that pip installed (nvidia/NAME/{include,lib}), nothing if none.
_gd_find_pip() {
    command -v python3 >/dev/null 2>&1 || return 0
    python3 - "$@" <<'PY' 2>/dev/null
import glob, os, sys
name, header, lib = sys.argv[1:4]
try:
    import nvidia
    paths = list(nvidia.__path__)
except Exception:
    paths = []
for p in paths:
    inc = os.path.join(p, name, "include")
    libs = sorted(glob.glob(os.path.join(p, name, "lib", lib + "*")))
    if os.path.isfile(os.path.join(inc, header)) and libs:
        print(inc, libs[0])
        break
PY
}

# gpu_configure BUILD_DIR [cmake args...]: configures gptrain against .devdeps
# (and CUDA for sm_90 where nvcc exists). Later -D arguments override these.
gpu_configure() {
    if [ $# -lt 1 ]; then
        echo "usage: gpu_configure BUILD_DIR [extra cmake args]" >&2
        return 2
    fi
    local build=$1
    shift
    local root=${GPTRAIN_DEVDEPS_ROOT:?source bench/gpu/env.sh first}
    local repo=${GPTRAIN_DEVDEPS_REPO}
    local gen=$repo/.devdeps/gen
    local args=(-S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release
        -DMPI_C_COMPILER="$root/usr/bin/mpicc"
        -DMPIEXEC_EXECUTABLE="$root/usr/bin/mpiexec"
        -DHDF5_C_COMPILER_EXECUTABLE="$gen/bin/h5pcc"
        -DPKG_CONFIG_EXECUTABLE="$root/usr/bin/pkg-config")
    if [ ! -f "$build/CMakeCache.txt" ] && command -v ninja >/dev/null 2>&1; then
        args+=(-G Ninja)
    fi
    local a cuda=1
    for a in "$@"; do
        case $a in -DGPTRAIN_CUDA=OFF|-DGPTRAIN_CUDA:BOOL=OFF|-DGPTRAIN_CUDA=0) cuda=0 ;; esac
    done
    if [ $cuda = 1 ] && { command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; }; then
        local nvcc
        nvcc=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
        args+=(-DCMAKE_CUDA_COMPILER="$nvcc" -DCMAKE_CUDA_ARCHITECTURES=90)
        local nccl
        nccl=$(_gd_find_nccl | head -1)
        if [ -n "$nccl" ]; then
            args+=(-DNCCL_INCLUDE_DIR="${nccl%% *}" -DNCCL_LIBRARY="${nccl#* }")
        fi
        local cudnn
        cudnn=$(_gd_find_cudnn | head -1)
        if [ -n "$cudnn" ]; then
            args+=(-DCUDNN_INCLUDE_DIR="${cudnn%% *}" -DCUDNN_LIBRARY="${cudnn#* }")
        fi
    fi
    echo "gpu_configure: cmake ${args[*]} $*"
    cmake "${args[@]}" "$@"
}

_gd_main "$@"
