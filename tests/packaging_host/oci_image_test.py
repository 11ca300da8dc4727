"""packaging/image/build-oci.sh builds an OCI image from the package with no container daemon;
the image's configuration runs /usr/bin/sliceproxy, and its root file system, unpacked with
umoci, runs `sliceproxy --version` and reads the default configuration under chroot.

  oci_image_test.py minimal   binary + shared libraries (seconds; in the suite)
  oci_image_test.py debian    debootstrap root with the package installed by dpkg (minutes,
                              needs the apt mirror; also purges the package in that fresh root
                              and checks every file is gone)"""

import json
import os
import shutil
import sys
import time

from packaging_common import DEB_DIR, WORK_DIR, fail, require_env, require_tools, run, step

ENTRYPOINT = ["/usr/bin/sliceproxy"]


def blob(layout, digest):
    algo, hexd = digest.split(":", 1)
    with open(os.path.join(layout, "blobs", algo, hexd)) as f:
        return json.load(f)


def image_config(layout, tag):
    """The image configuration of `tag`, read through index.json and the manifest, as a
    container engine reads an OCI layout."""
    with open(os.path.join(layout, "index.json")) as f:
        index = json.load(f)
    for desc in index.get("manifests", []):
        if desc.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
            manifest = blob(layout, desc["digest"])
            if not manifest.get("layers"):
                fail(f"{layout}:{tag} has no layers")
            return blob(layout, manifest["config"]["digest"]), manifest
    fail(f"{layout}/index.json has no manifest tagged {tag}: {index}")


def chroot(rootfs, *argv):
    return run(["chroot", rootfs, *argv])


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode not in ("minimal", "debian"):
        fail("usage: oci_image_test.py minimal|debian")
    require_env()
    require_tools("umoci", "chroot", "dpkg-deb", *(["debootstrap"] if mode == "debian" else []))
    deb = os.path.realpath(os.path.join(DEB_DIR, "sliceproxy-N.deb"))
    if not os.path.exists(deb):
        fail(f"{deb} is missing: packaging_deb_build did not run or failed")
    version = run(["dpkg-deb", "--field", deb, "Version"]).stdout.strip()
    out = os.path.join(WORK_DIR, f"oci-{mode}")
    shutil.rmtree(out, ignore_errors=True)

    step(f"build-oci.sh ({mode})")
    started = time.monotonic()
    cmd = ["bash", os.path.join(os.environ["SLICEPROXY_SOURCE_DIR"], "packaging/image/build-oci.sh"),
           "--deb", deb, "--out", out] + (["--minimal"] if mode == "minimal" else [])
    res = run(cmd)
    print(res.stderr)
    built = time.monotonic() - started
    ref = res.stdout.strip().splitlines()[-1]
    layout, tag = ref.rsplit(":", 1)
    if layout != os.path.join(out, "oci"):
        fail(f"build-oci.sh reported {ref}")
    if not os.path.getsize(os.path.join(out, "sliceproxy-oci.tar")):
        fail("sliceproxy-oci.tar is empty")

    step("image configuration")
    config, manifest = image_config(layout, tag)
    cfg = config.get("config", {})
    print(json.dumps({"architecture": config.get("architecture"), "os": config.get("os"),
                      "config": cfg, "layers": len(manifest["layers"])}, indent=1))
    if cfg.get("Entrypoint") != ENTRYPOINT:
        fail(f"Entrypoint {cfg.get('Entrypoint')}, want {ENTRYPOINT}")
    arch = run(["dpkg-deb", "--field", deb, "Architecture"]).stdout.strip()
    if config.get("architecture") != arch or config.get("os") != "linux":
        fail(f"image platform {config.get('os')}/{config.get('architecture')}, want linux/{arch}")
    if cfg.get("Labels", {}).get("org.opencontainers.image.version") != version:
        fail(f"image version label {cfg.get('Labels')}, want {version}")

    step("unpack with umoci and run under chroot")
    bundle = os.path.join(out, "check")
    run(["umoci", "unpack", "--image", ref, bundle])
    rootfs = os.path.join(bundle, "rootfs")
    try:
        got = chroot(rootfs, *ENTRYPOINT, "--version").stdout.strip()
        if got != f"sliceproxy {version.split('+')[0].split('~')[0]}":
            fail(f"sliceproxy --version in the image: {got!r}, package {version}")
        res = chroot(rootfs, *ENTRYPOINT, "--config", "/etc/sliceproxy/config.yaml",
                     "--write-config-to", "/tmp/effective.yaml")
        if "kubeconfig: /etc/sliceproxy/kubeconfig" not in open(
                os.path.join(rootfs, "tmp/effective.yaml")).read():
            fail(f"the image's default configuration did not load:\n{res.stderr}")
        print(f"{got}; default configuration loads")

        if mode == "debian":
            step("the fresh Debian root: package installed by dpkg, tools present")
            status = chroot(rootfs, "dpkg-query", "-W", "-f=${db:Status-Abbrev}|${Version}",
                            "sliceproxy").stdout
            if status != f"ii |{version}":
                fail(f"sliceproxy in the image's dpkg database: {status!r}")
            res = run(["chroot", rootfs, "dpkg", "--verify", "sliceproxy"], check=False)
            if res.returncode != 0 or res.stdout.strip():
                fail(f"dpkg --verify in the image: {res.stdout}{res.stderr}")
            for tool in (["nft", "--version"], ["iptables", "--version"],
                         ["conntrack", "--version"]):
                print(chroot(rootfs, *tool).stdout.strip())
            files = [l for l in chroot(rootfs, "dpkg-query", "-L", "sliceproxy").stdout.splitlines()
                     if l.startswith("/")]
            wants = "/etc/systemd/system/multi-user.target.wants/sliceproxy.service"
            if not os.path.islink(rootfs + wants):
                fail(f"{wants} missing: the postinst did not enable the unit in a fresh root")

            step("purge in the fresh root")
            chroot(rootfs, "dpkg", "--purge", "sliceproxy")
            left = [f for f in files + [wants]
                    if os.path.lexists(rootfs + f) and not os.path.isdir(rootfs + f)]
            left += [d for d in ("/etc/sliceproxy", "/var/lib/sliceproxy",
                                 "/usr/share/doc/sliceproxy") if os.path.lexists(rootfs + d)]
            if left:
                fail(f"left in the fresh root after purge: {left}")
            print(f"purged: {len(files)} paths gone")
    finally:
        shutil.rmtree(bundle, ignore_errors=True)
    print(f"oci image ({mode}) ok; build-oci.sh took {built:.0f}s")


if __name__ == "__main__":
    main()
