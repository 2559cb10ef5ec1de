#!/usr/bin/env bash
# Makes a busybox-static root filesystem tarball for tests and examples:
#   testdata/base/make-busybox-rootfs.sh OUT.tar [BUSYBOX]
# then `hoist import OUT.tar busybox:test`.
#
# Contents: bin/busybox (static) with every applet as a symlink to it
# (from `busybox --list`), /etc/passwd and /etc/group with root, nobody and
# a test user `app` (uid/gid 1000), /tmp 1777, /root 0700, /home/app owned by
# app, and the usual empty mount points. Ownership is root unless noted and
# mtimes are fixed (SOURCE_DATE_EPOCH, default 2024-01-01), so the tarball
# is reproducible for a given busybox binary. Needs GNU tar; no root needed.
set -euo pipefail

out=${1:?usage: $0 OUT.tar [BUSYBOX]}
busybox=${2:-$(command -v busybox || true)}
[[ -x $busybox ]] || { echo "busybox not found (apt-get install busybox-static)" >&2; exit 1; }
if ldd "$busybox" >/dev/null 2>&1; then
  echo "$busybox is dynamically linked; the rootfs needs busybox-static" >&2
  exit 1
fi
epoch=${SOURCE_DATE_EPOCH:-1704067200}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,dev,proc,sys,tmp,var/tmp,root,home/app,run,mnt}
cp "$busybox" "$root/bin/busybox"
chmod 0755 "$root/bin/busybox"
"$busybox" --list-full 2>/dev/null | while read -r applet; do
  [[ $applet == bin/busybox || -z $applet ]] && continue
  dir=$(dirname "$applet")
  mkdir -p "$root/$dir"
  # Relative targets so the tree works wherever it is mounted.
  up=$(echo "$dir" | sed 's#[^/]*#..#g')
  ln -sf "$up/bin/busybox" "$root/$applet"
done
# Older busybox builds lack --list-full: fall back to /bin for every applet.
if [[ ! -e $root/bin/sh ]]; then
  for applet in $("$busybox" --list); do
    [[ $applet == busybox ]] && continue
    ln -sf busybox "$root/bin/$applet"
  done
fi

cat >"$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
app:x:1000:1000:app:/home/app:/bin/sh
PASSWD
cat >"$root/etc/group" <<'GROUP'
root:x:0:
nobody:x:65534:
app:x:1000:app
GROUP
cat >"$root/etc/shadow" <<'SHADOW'
root:*:19723:0:99999:7:::
nobody:*:19723:0:99999:7:::
app:*:19723:0:99999:7:::
SHADOW
echo "hoist-test" >"$root/etc/hostname"
: >"$root/etc/hosts"
: >"$root/etc/resolv.conf"
chmod 0640 "$root/etc/shadow"
chmod 1777 "$root/tmp" "$root/var/tmp"
chmod 0700 "$root/root"

tar --sort=name --mtime="@$epoch" --owner=0 --group=0 --numeric-owner \
  --format=pax --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
  --transform='s#^\./##' \
  -C "$root" -cf "$work/base.tar" \
  --exclude=./home/app .
# /home/app belongs to app.
tar --mtime="@$epoch" --owner=1000 --group=1000 --numeric-owner --format=pax \
  --pax-option=delete=atime,delete=ctime --no-recursion \
  -C "$root" -rf "$work/base.tar" home/app
mv "$work/base.tar" "$out"
echo "wrote $out" >&2
