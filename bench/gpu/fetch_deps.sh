#!/usr/bin/env bash
# fetch_deps.sh: gathers the Debian 12 packages that gptrain needs to build and
# run with CMake on a machine that has a compiler (and CUDA) but none of them
# and no network (the lent GPU machine): Open MPI (mpirun, mpicc and their
# plugins), parallel HDF5, OpenBLAS (the OpenMP build), cmocka and pkgconf, plus
# every shared library they load beyond glibc, libgcc_s, libstdc++ and libgomp,
# and the fortunes corpus that the tests and the quickstart train on.
#
# Run it HERE (a Debian 12 machine with apt and a network), from anywhere:
#     bash bench/gpu/fetch_deps.sh
# It downloads the .deb files with `apt-get download` into a temporary folder,
# unpacks them with `dpkg -x` into .devdeps/root, drops what gptrain never uses
# (docs, man pages, static libraries, Fortran/Java/C++/OpenSHMEM bindings),
# checks that every DT_NEEDED of every ELF file left is either inside the tree
# or a base library, pulling in the package of any that is missing (found with
# `dpkg -S` on this machine), writes .devdeps/manifest.txt (which libraries
# must always come from the tree and which only where the host lacks them) and
# deletes the .deb files. Every file above 16 KiB (OpenBLAS alone is 36 MB) is
# stored xz-compressed, so .devdeps travels to the GPU machine in about 23 MiB
# instead of 89; bench/gpu/env.sh decompresses them in place on first use.
# After sourcing env.sh HERE, `bash bench/gpu/fetch_deps.sh --pack` compresses
# the tree again (no download) before it is carried.
# Re-running it rebuilds .devdeps from scratch. .devdeps/ is ignored through
# .git/info/exclude. On the GPU machine: carry .devdeps, then
#     source bench/gpu/env.sh && gpu_configure build-gpu && cmake --build build-gpu -j16
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
dest=$repo/.devdeps
root=$dest/root

# Packages named up front. The closure check below adds any library package
# these need that is missing from this list.
pkgs=(
    # Open MPI 4.1.4: runtime, mpirun/orted, mpicc, headers, help files, MCA plugins
    openmpi-bin openmpi-common libopenmpi3 libopenmpi-dev
    libpmix2 libevent-core-2.1-7 libevent-pthreads-2.1-7 libhwloc15
    libfabric1 libucx0 libibverbs1 librdmacm1 libnl-3-200 libnl-route-3-200
    libpsm2-2 libpsm-infinipath1 libnuma1 libmunge2
    # parallel HDF5 1.10.8 (libhdf5_openmpi) and what it links
    libhdf5-openmpi-103-1 libhdf5-openmpi-dev libsz2 libaec0 zlib1g libcurl4 libssl3
    # h5dump, h5diff, h5ls (serial HDF5, which reads what gptrain writes): some tests use them
    hdf5-tools libhdf5-103-1 libhdf5-hl-100
    # OpenBLAS, OpenMP build
    libopenblas0-openmp libopenblas-openmp-dev libgfortran5 libquadmath0
    # tests, pkg-config
    libcmocka0 libcmocka-dev pkgconf pkgconf-bin libpkgconf3
    # the corpus of the shell tests and the quickstart (/usr/share/games/fortunes)
    fortunes fortunes-min
    # what those load in turn (curl, Kerberos, GnuTLS, the verbs providers): the
    # closure check found these on 2026-11-22 and would find them again
    ibverbs-providers libatomic1 libbrotli1 libcom-err2 libffi8 libgmp10 libgnutls30
    libgssapi-krb5-2 libhogweed6 libidn2-0 libk5crypto3 libkeyutils1 libkrb5-3
    libkrb5support0 libldap-2.5-0 libnettle8 libnghttp2-14 libp11-kit0 libpsl5 librtmp1
    libsasl2-2 libssh2-1 libtasn1-6 libudev1 libunistring2 libuuid1 libzstd1
)
# Libraries that always come from the tree (the MPI / HDF5 / BLAS stack must be
# one consistent set). Any other library of the tree is used only where the
# host has no library of that soname (env.sh decides, with ldconfig).
forced_pkgs=' openmpi-bin openmpi-common libopenmpi3 libopenmpi-dev libpmix2
    libhdf5-openmpi-103-1 libhdf5-openmpi-dev hdf5-tools libhdf5-103-1 libhdf5-hl-100
    libopenblas0-openmp
    libopenblas-openmp-dev libcmocka0 libcmocka-dev pkgconf pkgconf-bin libpkgconf3 '
forced_pkgs=" $(echo $forced_pkgs) "
# Sonames assumed on any Linux machine with a C compiler.
base_re='^(linux-vdso\.so\.1|ld-linux-x86-64\.so\.2|lib(c|m|dl|pthread|rt|resolv|util|anl|gcc_s|stdc\+\+|gomp)\.so(\.[0-9]+)*)$'

say() { echo "fetch_deps: $*"; }
die() { echo "fetch_deps: error: $*" >&2; exit 1; }
command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || die "needs apt-get and dpkg (Debian 12)"
command -v readelf >/dev/null || die "needs readelf (binutils)"
command -v xz >/dev/null || die "needs xz (xz-utils)"

work=$(mktemp -d /tmp/gptrain-devdeps.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/debs"
# apt drops to the _apt user for downloads; let it write there.
chmod 0755 "$work"
if id _apt >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then chown _apt "$work/debs"; fi

updated=0
download() {   # download PKG...: the .deb files of this architecture (or all)
    if ! (cd "$work/debs" && apt-get download -q "$@" >"$work/apt.log" 2>&1); then
        if [ $updated -eq 0 ] && [ "$(id -u)" -eq 0 ]; then
            say "apt-get download failed; running apt-get update and trying again"
            apt-get update -qq
            updated=1
            (cd "$work/debs" && apt-get download -q "$@" >"$work/apt.log" 2>&1) ||
                { cat "$work/apt.log" >&2; die "apt-get download $*"; }
        else
            cat "$work/apt.log" >&2; die "apt-get download $*"
        fi
    fi
}

pkg_of_deb() { dpkg-deb -f "$1" Package; }

# unpack: a fresh staging tree from all .debs, with what gptrain never uses removed.
unpack() {
    rm -rf "$work/root"; mkdir -p "$work/root"
    : >"$work/owners"
    local deb p
    for deb in "$work"/debs/*.deb; do
        p=$(pkg_of_deb "$deb")
        dpkg -x "$deb" "$work/root"
        dpkg-deb --fsys-tarfile "$deb" | tar -t | sed -e 's#^\./#/#' -e "s#\$#\t$p#" >>"$work/owners"
    done
    prune "$work/root"
}

prune() {
    local r=$1 L=$1/usr/lib/x86_64-linux-gnu
    rm -rf "$r"/usr/share/{doc,doc-base,man,info,lintian,bug,aclocal,java,gdb,locale}
    find "$r" -name '*.a' -delete
    # Fortran, Java, C++ and OpenSHMEM bindings; HDF5's HL/C++/Fortran libraries
    rm -rf "$L"/fortran "$r"/usr/include/hdf5/openmpi/*.mod
    rm -f "$L"/libmpi_mpifh* "$L"/libmpi_usempi* "$L"/libmpi_java* "$L"/liboshmem*
    rm -f "$L"/openmpi/lib/libmpi_mpifh* "$L"/openmpi/lib/libmpi_usempi* \
          "$L"/openmpi/lib/libmpi_java* "$L"/openmpi/lib/liboshmem*
    rm -f "$L"/openmpi/lib/openmpi3/mca_{atomic,memheap,scoll,spml,sshmem}_*.so
    rm -f "$L"/libhdf5_openmpi*fortran* "$L"/libhdf5_openmpi_hl* "$L"/libhdf5_openmpi_cpp*
    rm -f "$r"/usr/bin/{mpijavac,mpijavac.pl,oshmem_info,h5pfc.openmpi} "$r"/usr/bin/osh* "$r"/usr/bin/shmem* \
          "$r"/usr/bin/mpif77.openmpi "$r"/usr/bin/mpif90.openmpi "$r"/usr/bin/mpifort.openmpi
    rm -f "$r"/usr/share/openmpi/help-oshmem-*.txt "$r"/usr/share/openmpi/*fort*wrapper-data.txt \
          "$r"/usr/share/openmpi/*f77*wrapper-data.txt "$r"/usr/share/openmpi/*f90*wrapper-data.txt \
          "$r"/usr/share/openmpi/osh*wrapper-data.txt "$r"/usr/share/openmpi/shmem*wrapper-data.txt
    rm -f "$L"/pkgconfig/ompi-fort.pc "$L"/openmpi/lib/pkgconfig/ompi-fort.pc
    # OpenBLAS: libopenblas.so is all gptrain links; the BLAS/LAPACK shims are not needed.
    rm -f "$L"/openblas-openmp/lib{blas,lapack}.so*
    # symbolic links left dangling by the above
    find "$r" -xtype l -delete
    find "$r" -depth -type d -empty -delete
}

# elf_dyn FILE: prints "SONAME x" and "NEEDED x" lines of a dynamic ELF file.
elf_dyn() {
    LC_ALL=C readelf -d "$1" 2>/dev/null | sed -n \
        -e 's/.*(SONAME).*\[\(.*\)\]/SONAME \1/p' -e 's/.*(NEEDED).*\[\(.*\)\]/NEEDED \1/p'
}

# closure: prints the sonames needed by the staging tree that it does not hold.
closure_missing() {
    local r=$work/root f
    : >"$work/needed"; : >"$work/provided"
    while IFS= read -r -d '' f; do
        elf_dyn "$f" | while read -r k v; do
            case $k in
                SONAME) echo "$v" >>"$work/provided" ;;
                NEEDED) echo "$v" >>"$work/needed" ;;
            esac
        done
    done < <(find "$r" -type f -print0)
    # a library is also provided if a file or link of that name exists
    find "$r" \( -type f -o -type l \) -name 'lib*.so*' -printf '%f\n' >>"$work/provided"
    sort -u "$work/needed" | grep -Ev "$base_re" | grep -vxF -f <(sort -u "$work/provided") || true
}

# pack: stores every file of the tree above 16 KiB xz-compressed (FILE.xz);
# env.sh restores them where it runs. Shared libraries shrink 3-8 times.
pack() {
    find "$root" -type f -size +16k ! -name '*.xz' -print0 | xargs -0 -r xz -T2 -6 -f
}
if [ "${1:-}" = "--pack" ]; then
    # after env.sh restored the tree here: compress it again before carrying it
    [ -d "$root" ] || die "no $root; run without --pack first"
    pack
    (cd "$root" && find . -type l -printf '%P\t%l\n' | sort) >"$dest/links.txt"
    say "packed: .devdeps is $(( $(du -sb "$dest" | cut -f1) / 1048576 )) MiB"
    exit 0
fi
[ $# -eq 0 ] || die "usage: bash bench/gpu/fetch_deps.sh [--pack]"

rm -rf "$dest"
mkdir -p "$dest"
say "downloading ${#pkgs[@]} packages"
download "${pkgs[@]}"
for round in 1 2 3 4 5 6; do
    unpack
    missing=$(closure_missing)
    [ -z "$missing" ] && break
    add=()
    for so in $missing; do
        owner=$(dpkg -S "*/$so" 2>/dev/null | grep -v '^diversion' | grep 'x86_64-linux-gnu' |
                head -1 | cut -d: -f1 || true)
        [ -n "$owner" ] || die "no installed package provides $so (install the packages of launch/bootstrap.sh here, or name its package in pkgs=)"
        say "adding $owner (for $so)"
        add+=("$owner")
    done
    mapfile -t add < <(printf '%s\n' "${add[@]}" | sort -u)
    pkgs+=("${add[@]}")
    download "${add[@]}"
    [ "$round" -lt 6 ] || die "closure did not settle; still missing: $missing"
done

# The links Debian makes with update-alternatives (dpkg -x does not run it).
L=$work/root/usr/lib/x86_64-linux-gnu
B=$work/root/usr/bin
for w in mpicc mpicxx mpic++ mpiCC mpirun mpiexec; do
    [ -e "$B/$w.openmpi" ] && ln -sfn "$w.openmpi" "$B/$w"
done
ln -sfn openblas-openmp/libopenblas.so.0 "$L/libopenblas.so.0"
ln -sfn openblas-openmp/libopenblas.so "$L/libopenblas.so"
ln -sfn openmpi/lib/libmpi.so "$L/libmpi.so"
ln -sfn hdf5-openmpi.pc "$L/pkgconfig/hdf5.pc"
for f in "$work"/root/usr/lib/libpsm1/libpsm_infinipath.so.1.*; do
    [ -f "$f" ] && ln -sfn "../libpsm1/${f##*/}" "$L/libpsm_infinipath.so.1"
done
# Debian's h5pcc has /usr paths built in; env.sh writes a relocated h5pcc instead.
rm -f "$B/h5pcc" "$B/h5c++"

# manifest: soname, path in the tree (relative to root), F (always from the tree)
# or S (from the tree only where the host lacks it), and the package.
say "writing the manifest"
: >"$work/manifest"
while IFS= read -r -d '' f; do
    so=$(elf_dyn "$f" | sed -n 's/^SONAME //p')
    [ -n "$so" ] || continue
    case $f in */openmpi3/mca_*|*/pmix/pmix_mca_*) continue ;; esac
    rel=${f#"$work/root"}
    # the owner is that of the real file
    pkg=$(awk -F'\t' -v p="$rel" '$1 == p { print $2; exit }' "$work/owners")
    [ -n "$pkg" ] || pkg=unknown
    kind=S
    case "$forced_pkgs" in *" $pkg "*) kind=F ;; esac
    printf '%s\t%s\t%s\t%s\n' "$so" "$rel" "$kind" "$pkg" >>"$work/manifest"
done < <(find "$work/root" -type f -name 'lib*.so*' -print0)
sort -u "$work/manifest" >"$dest/manifest.txt"

mv "$work/root" "$root"
unpacked=$(du -sb "$root" | cut -f1)
pack
# Every symbolic link, so env.sh can remake any that a copy dropped (most
# point at files stored compressed, so they dangle until env.sh runs).
(cd "$root" && find . -type l -printf '%P\t%l\n' | sort) >"$dest/links.txt"

# Package list, for the record.
printf '%s\n' "${pkgs[@]}" | sort -u >"$dest/packages.txt"
(cd "$work/debs" && ls *.deb) >"$dest/debs.txt"

# Keep .devdeps out of git (info/exclude, not .gitignore).
gitdir=$(git -C "$repo" rev-parse --git-dir 2>/dev/null || true)
if [ -n "$gitdir" ]; then
    case $gitdir in /*) ;; *) gitdir=$repo/$gitdir ;; esac
    mkdir -p "$gitdir/info"
    grep -qxF '/.devdeps/' "$gitdir/info/exclude" 2>/dev/null || echo '/.devdeps/' >>"$gitdir/info/exclude"
fi

stored=$(du -sb "$dest" | cut -f1)
say "$(wc -l <"$dest/debs.txt") packages in .devdeps/root;" \
    "$(wc -l <"$dest/manifest.txt") shared libraries;" \
    "$((unpacked / 1048576)) MiB unpacked, stored in $((stored / 1048576)) MiB" \
    "(files over 16 KiB xz-compressed until env.sh restores them)"
