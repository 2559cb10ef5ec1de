#!/usr/bin/env python3
"""Writes seed layers for the apply_layer and tar_guard targets: small tars
(plain, gzip, bzip2, xz) with every entry type a layer can hold, the usual
escapes (.., absolute names, writes through symlinks, hardlinks out),
whiteouts, PAX xattrs and long GNU/PAX names. Each seed is the target's
flags byte followed by the stream. Usage: seed-layers.py CORPUS_DIR TARGET"""
import bz2
import gzip
import io
import lzma
import os
import sys
import tarfile


def entry(tar, name, kind=tarfile.REGTYPE, data=b"", link="", pax=None, fmt=None):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.uid = info.gid = 1000
    info.mtime = 1_700_000_000
    if pax:
        info.pax_headers = pax
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def layer(entries, fmt=tarfile.PAX_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for args in entries:
            entry(tar, *args[:2], **args[2] if len(args) > 2 else {})
    return buf.getvalue()


R = tarfile.REGTYPE
D = tarfile.DIRTYPE
S = tarfile.SYMTYPE
H = tarfile.LNKTYPE
layers = {
    "basic": [("etc", D), ("etc/hosts", R, {"data": b"127.0.0.1 localhost\n"}),
              ("bin", D), ("bin/sh", R, {"data": b"\x7fELF"}),
              ("bin/ash", H, {"link": "bin/sh"}), ("lib", S, {"link": "usr/lib"})],
    "escapes": [("../up", R, {"data": b"x"}), ("/abs", R, {"data": b"x"}),
                ("rel/through", R, {"data": b"x"}), ("abs/through", R, {"data": b"x"}),
                ("link", S, {"link": "/"}), ("link/x", R, {"data": b"x"}),
                ("hl", H, {"link": "../outside/canary"}), ("hl2", H, {"link": "abs/canary"}),
                ("rel", D), ("abs", R, {"data": b"replaced"})],
    "whiteouts": [("dir/.wh.file", R), ("dir/.wh..wh..opq", R), ("rel/.wh.canary", R),
                  ("abs/.wh..wh..opq", R), (".wh.abs", R), ("new/.wh..wh..opq", R),
                  ("new/kept", R, {"data": b"k"})],
    "xattrs": [("x", R, {"data": b"x", "pax": {"SCHILY.xattr.user.a": "1",
                                               "SCHILY.xattr.trusted.overlay.opaque": "y",
                                               "SCHILY.xattr.security.capability": "\x01\x00"}}),
               ("d", D, {"pax": {"SCHILY.xattr.user.b": "2", "mtime": "1700000000.5"}}),
               ("s", S, {"link": "x", "pax": {"SCHILY.xattr.user.c": "3", "uid": "65534"}})],
    "long-names": [("a" * 150 + "/" + "b" * 120, R, {"data": b"long"}),
                   ("l", S, {"link": "c" * 300})],
    "nodes": [("fifo", tarfile.FIFOTYPE), ("null", tarfile.CHRTYPE), ("sda", tarfile.BLKTYPE),
              ("dir/file", R, {"data": b"upper"}), ("dir", R, {"data": b"file over dir"})],
}

out, target = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
n = 0
for name, entries in layers.items():
    for fmt_name, fmt in (("pax", tarfile.PAX_FORMAT), ("gnu", tarfile.GNU_FORMAT)):
        plain = layer(entries, fmt)
        streams = {"tar": plain}
        if target == "apply_layer":
            streams.update(gz=gzip.compress(plain), bz2=bz2.compress(plain),
                           xz=lzma.compress(plain))
        for ext, data in streams.items():
            for flags in ((0, 1, 5) if target == "apply_layer" else (0x00, 0x55)):
                path = os.path.join(out, f"seed-{name}-{fmt_name}-{ext}-{flags}")
                with open(path, "wb") as f:
                    f.write(bytes([flags]) + data)
                n += 1
print(f"{target}: {n} seed layers in {out}")
