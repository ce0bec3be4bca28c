#!/bin/sh
# Runs inside the image's chroot while it is built (scripts/vmtest, a kernel of another suite):
# fetch only that suite's kernel .deb files, unpack them without dpkg (their dependencies are that
# suite's, the userland stays bookworm's), then depmod and build the initramfs with bookworm's tools.
#   foreign-kernel.sh SOURCES-FILE PACKAGE
set -eu
sources=$1 package=$2
work=/tmp/vmtest-kernel
mkdir -p "$work/lists/partial" "$work/archives/partial" "$work/debs"
# The other suite's lists live in $work only: the image's own apt configuration stays bookworm's.
# Check-Valid-Until=false: the archive served here may be a snapshot whose Release of a moving suite
# (sid, *-security) is past its Valid-Until; its signature is still checked.
set -- -o Dir::Etc::SourceList="$sources" -o Dir::Etc::SourceParts=/nonexistent \
  -o Dir::State::Lists="$work/lists" -o Dir::Cache::archives="$work/archives" \
  -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= -o APT::Sandbox::User=root \
  -o Acquire::Languages=none -o Acquire::Check-Valid-Until=false
apt-get -q "$@" update
# The metapackage (linux-image-cloud-amd64) depends on the versioned image, which holds the files
# (bullseye, trixie) or, in sid, depends on linux-binary-V (the kernel), linux-modules-V and
# linux-base-V: follow those Depends down to the packages that hold the files.
todo=$package all=""
while [ -n "$todo" ]; do
  next=""
  for p in $todo; do
    case " $all " in *" $p "*) continue ;; esac
    all="$all $p"
    deps=$(apt-cache "$@" depends --no-recommends --no-suggests --no-conflicts --no-breaks \
      --no-replaces --no-enhances "$p" | sed -n 's/^ *|\{0,1\}Depends: \(linux-\(image\|binary\|modules\)-[a-z0-9.+-]*\|linux-base-[0-9][a-z0-9.+-]*\)$/\1/p')
    next="$next $deps"
  done
  todo=$(echo $next)
done
# The metapackage itself holds nothing but documentation (and bullseye-security's was not served
# when its dependency was): take only what it depends on, unless PACKAGE is itself the image.
files=$(echo "$all" | tr ' ' '\n' | grep -vx "$package" | tr '\n' ' ')
[ -n "$(echo $files)" ] || files=$package
echo "foreign-kernel: downloading $files"
cd "$work/debs"
apt-get -q "$@" download $files
for deb in ./*.deb; do
  # --keep-directory-symlink: bookworm's /lib is a symlink to usr/lib; a deb's ./lib must go through it.
  dpkg-deb --fsys-tarfile "$deb" | tar -x --keep-directory-symlink -C /
done
version=$(ls /lib/modules)
[ "$(echo "$version" | wc -w)" = 1 ] || { echo "foreign-kernel: expected one kernel, found: $version"; exit 1; }
# initramfs-tools reads /boot/config-V for the compressions the kernel can unpack; sid's packages
# keep the config elsewhere (linux-base-V).
if [ ! -e "/boot/config-$version" ]; then
  config=$(find /usr/lib /boot -name "config-$version" -o -name "config" -path "*/$version/*" | head -n 1)
  [ -n "$config" ] && cp "$config" "/boot/config-$version"
fi
# sid's linux-binary-V ships the kernel as /usr/lib/modules/V/vmlinuz (its postinst would copy it).
if [ ! -e "/boot/vmlinuz-$version" ] && [ -e "/lib/modules/$version/vmlinuz" ]; then
  cp "/lib/modules/$version/vmlinuz" "/boot/vmlinuz-$version"
fi
depmod -a "$version"
mkinitramfs -o "/boot/initrd.img-$version" "$version"
cd /
rm -rf "$work"
echo "foreign-kernel: $version installed"
