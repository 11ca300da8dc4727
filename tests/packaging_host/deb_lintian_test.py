"""lintian reports no error on the package (warnings are printed; the suite fails only on
errors)."""

import os

from packaging_common import DEB_DIR, fail, require_env, require_tools, run, step


def main():
    require_env()
    require_tools("lintian")
    deb = os.path.join(DEB_DIR, "sliceproxy-N.deb")
    if not os.path.exists(deb):
        fail(f"{deb} is missing: packaging_deb_build did not run or failed")
    step(f"lintian {os.path.realpath(deb)}")
    res = run(["lintian", "--allow-root", "--fail-on", "error", "--display-info", deb],
              check=False)
    print(res.stdout)
    tags = [l for l in res.stdout.splitlines() if l[:2] in ("E:", "W:", "I:")]
    errors = [l for l in tags if l.startswith("E:")]
    if res.returncode != 0 or errors:
        fail(f"lintian errors (exit {res.returncode}):\n" + "\n".join(errors) + res.stderr)
    print(f"lintian: {len(errors)} errors, {sum(l.startswith('W:') for l in tags)} warnings, "
          f"{sum(l.startswith('I:') for l in tags)} infos")


if __name__ == "__main__":
    main()
