#!/usr/bin/env python3
"""Write a single-platform OCI image archive (an OCI image layout in a tar) from root filesystem dirs.

No registry and no container engine: each --rootfs directory becomes one uncompressed layer (tar with
sorted entries, mtime 0, owner 0:0, so the same input gives the same digests), then the image config,
the manifest and index.json are written with their sha256 digests. The archive imports with

    ctr -n k8s.io images import --no-unpack=false ARCHIVE

and is named by the index annotation `io.containerd.image.name` (the full reference given by --name).

    oci-image.py --name localhost/netshift/busybox:test --rootfs DIR --cmd '["sh"]' --out image.tar
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import stat
import tarfile
from pathlib import Path

EPOCH = "1970-01-01T00:00:00Z"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar"


def layer_tar(root: Path) -> bytes:
    """A reproducible tar of the tree under root (paths relative, no leading slash)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(dirnames + filenames):
                path = Path(dirpath) / name
                arc = str(path.relative_to(root))
                info = tar.gettarinfo(str(path), arcname=arc)
                info.mtime = 0
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                if info.isreg():
                    with open(path, "rb") as f:
                        tar.addfile(info, f)
                else:
                    if stat.S_ISDIR(info.mode):
                        info.size = 0
                    tar.addfile(info)
    return buf.getvalue()


def blob(blobs: dict[str, bytes], data: bytes) -> tuple[str, int]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return digest, len(data)


def as_json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def build(args: argparse.Namespace) -> None:
    blobs: dict[str, bytes] = {}
    layers, diff_ids, history = [], [], []
    for root in args.rootfs:
        digest, size = blob(blobs, layer_tar(Path(root)))
        layers.append({"mediaType": MT_LAYER, "digest": digest, "size": size})
        diff_ids.append(digest)  # uncompressed: the diff id is the layer digest
        history.append({"created": EPOCH, "created_by": f"netshift hack/lib/oci-image.py ({Path(root).name})"})
    default_path = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    config: dict[str, object] = {"Env": args.env or [default_path],
                                 "WorkingDir": args.workdir}
    if args.entrypoint:
        config["Entrypoint"] = json.loads(args.entrypoint)
    if args.cmd:
        config["Cmd"] = json.loads(args.cmd)
    if args.user:
        config["User"] = args.user
    labels = dict(label.split("=", 1) for label in args.label)
    if labels:
        config["Labels"] = labels
    image_config = {"created": EPOCH, "architecture": args.arch, "os": "linux", "config": config,
                    "rootfs": {"type": "layers", "diff_ids": diff_ids}, "history": history}
    cdigest, csize = blob(blobs, as_json(image_config))
    manifest = {"schemaVersion": 2, "mediaType": MT_MANIFEST,
                "config": {"mediaType": MT_CONFIG, "digest": cdigest, "size": csize}, "layers": layers}
    mdigest, msize = blob(blobs, as_json(manifest))
    tag = args.name.rsplit(":", 1)[1] if ":" in args.name.rsplit("/", 1)[-1] else "latest"
    index = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": [{
        "mediaType": MT_MANIFEST, "digest": mdigest, "size": msize,
        "platform": {"architecture": args.arch, "os": "linux"},
        "annotations": {"io.containerd.image.name": args.name, "org.opencontainers.image.ref.name": tag}}]}

    out = Path(args.out)
    tmp = out.with_name(out.name + ".tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        def add(name: str, data: bytes, mode: int = 0o644) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 0
            tar.addfile(info, io.BytesIO(data))
        add("oci-layout", as_json({"imageLayoutVersion": "1.0.0"}))
        add("index.json", as_json(index))
        for digest, data in sorted(blobs.items()):
            add("blobs/sha256/" + digest.split(":", 1)[1], data)
    tmp.replace(out)
    print(f"{args.name} {mdigest} -> {out}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", required=True, help="full image reference, e.g. localhost/netshift/pause:3.10")
    p.add_argument("--rootfs", action="append", required=True, help="a directory that becomes one layer (repeat)")
    p.add_argument("--out", required=True, help="the OCI archive to write")
    p.add_argument("--entrypoint", help="JSON list")
    p.add_argument("--cmd", help="JSON list")
    p.add_argument("--user", help="e.g. 65535:65535")
    p.add_argument("--env", action="append", help="NAME=value (repeat); default a standard PATH")
    p.add_argument("--workdir", default="/")
    p.add_argument("--label", action="append", default=[], help="key=value (repeat)")
    machine = os.uname().machine
    p.add_argument("--arch", default={"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine))
    build(p.parse_args())


if __name__ == "__main__":
    main()
