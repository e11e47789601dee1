#!/usr/bin/env python3
"""make deb-test: the built package on a clean Debian 12 root (chroot; no systemd PID 1 there).

  python3 tools/deb/test.py ARCH WHEELHOUSE OUTDIR

1. the .deb for ARCH (built by tools/deb/build.sh when OUTDIR has none) passes lintian with 0 errors;
2. a second .deb with a newer version is built from a staged copy (the upgrade target);
3. in a fresh root extracted from .cache/deb/roots/bookworm-ARCH.tar (tools/deb/mkroot.sh makes and caches it):
   install -> conffile registered, service user created, every bundled library resolves, config-check passes;
   the conffile is modified (listen: 127.0.0.1:<free port>), then the unit's ExecStart runs as the unit's User with
   NOTIFY_SOCKET/WATCHDOG_USEC set as systemd would: READY=1, WATCHDOG=1, GET /health 200, POST a real clip 200 with
   a stored detection, SIGTERM -> STOPPING=1 and exit 0 (natively also under PR_SET_MDWE, the kernel's version of
   MemoryDenyWriteExecute=yes);
   upgrade -> the modified conffile and the stored detection survive; remove -> state and conffile kept; purge -> gone.
Skips (exit 0, with the reason) when a tool it needs is missing or it is not root. Traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache" / "deb"
CLIP = REPO.parent / "shared" / "data" / "live" / "fellway_me.mp4"
CONFFILE = "/etc/liveness-edge/liveness-edge.ini"
UNIT = "/lib/systemd/system/liveness-edge.service"
STATE = "/var/lib/liveness-edge"
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1


def log(msg: str) -> None:
    print(f"deb-test: {msg}", flush=True)


def skip(reason: str) -> None:
    print(f"deb-test: SKIPPED: {reason}", flush=True)
    sys.exit(0)


class Failure(Exception):
    pass


def check(cond, msg: str) -> None:
    if not cond:
        raise Failure(msg)
    log(f"ok: {msg}")


def run(cmd, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("check", True)
    return subprocess.run(cmd, **kw)


def debian_field(deb: Path, field: str) -> str:
    return run(["dpkg-deb", "-f", str(deb), field], capture_output=True, text=True).stdout.strip()


def version_of(deb: Path) -> str:
    return debian_field(deb, "Version")


class Root:
    """A throw-away Debian 12 root with /proc and /dev mounted."""

    def __init__(self, arch: str, qemu: str | None):
        self.arch, self.qemu = arch, qemu
        self.path = CACHE / f"run-{arch}"
        self.mounts: list[Path] = []

    def __enter__(self):
        self._umount_stale()
        shutil.rmtree(self.path, ignore_errors=True)
        self.path.mkdir(parents=True)
        run(["tar", "-C", str(self.path), "-xf", str(CACHE / "roots" / f"bookworm-{self.arch}.tar")])
        for fs, target, opts in (("proc", "proc", ["-t", "proc"]), ("/dev", "dev", ["--bind"])):
            dest = self.path / target
            run(["mount", *opts, fs, str(dest)])
            self.mounts.append(dest)
        (self.path / "etc" / "resolv.conf").write_text("")  # nothing in the root needs the network
        return self

    def _umount_stale(self):
        for target in ("dev", "proc"):
            subprocess.run(["umount", "-l", str(self.path / target)], capture_output=True)

    def __exit__(self, *exc):
        for dest in reversed(self.mounts):
            subprocess.run(["umount", "-l", str(dest)])
        if not os.environ.get("DEB_TEST_KEEP_ROOT"):
            shutil.rmtree(self.path, ignore_errors=True)

    def sh(self, script: str, check_rc=True, env=None) -> subprocess.CompletedProcess:
        e = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}
        e.update(env or {})
        p = subprocess.run(["chroot", str(self.path), "/bin/sh", "-c", script], env=e, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True)
        if check_rc and p.returncode:
            raise Failure(f"in root: {script!r} exited {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
        return p

    def file(self, path: str) -> Path:
        return self.path / path.lstrip("/")

    def install(self, deb: Path) -> None:
        shutil.copy(deb, self.file("/tmp") / deb.name)
        # dpkg, not apt: the cached root has no package lists (no network needed), and its python3 and
        # systemd-sysusers already satisfy the dependencies (dpkg would fail if not). stdin is /dev/null, so a
        # conffile prompt would fail the step too.
        self.sh(f"dpkg -i /tmp/{deb.name}")


def unit_settings(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z]+)=(.*)$", line.strip())
        if m:
            out[m.group(1)] = m.group(2)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, body: bytes | None = None, ctype: str | None = None, timeout=600):
    req = urllib.request.Request(url, data=body, method=method)
    if ctype:
        req.add_header("Content-Type", ctype)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


class Daemon:
    """The unit's ExecStart as the unit's User, with systemd's notify protocol on a socket inside the root."""

    def __init__(self, root: Root, port: int, mdwe: bool):
        self.root, self.port, self.mdwe = root, port, mdwe
        unit = unit_settings(root.file(UNIT).read_text())
        self.user, self.exec_start = unit["User"], unit["ExecStart"]
        self.watchdog_usec = 2_000_000  # the unit says WatchdogSec=30; 2 s here so WATCHDOG=1 shows up quickly
        self.sock_path = root.file("/run/deb-test.notify")
        self.messages: list[str] = []

    def __enter__(self):
        self.sock_path.unlink(missing_ok=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.sock_path))
        os.chmod(self.sock_path, 0o666)
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "NOTIFY_SOCKET": "/run/deb-test.notify",
               "WATCHDOG_USEC": str(self.watchdog_usec)}
        cmd = ["chroot", str(self.root.path), "setpriv", f"--reuid={self.user}", f"--regid={self.user}",
               "--init-groups", "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all", "--",
               *shlex.split(self.exec_start)]
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, preexec_fn=self._preexec)
        return self

    def _preexec(self):
        os.setsid()
        if self.mdwe:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
                os.write(2, b"deb-test: PR_SET_MDWE failed\n")
                os._exit(97)

    def wait_for(self, word: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(word in m.split("\n") for m in self.messages):
                return True
            if self.proc.poll() is not None:
                self._drain_socket(0.2)
                return any(word in m.split("\n") for m in self.messages)
            self._drain_socket(0.5)
        return False

    def _drain_socket(self, timeout: float):
        self.sock.settimeout(timeout)
        try:
            while True:
                self.messages.append(self.sock.recv(4096).decode())
                self.sock.settimeout(0.01)
        except (socket.timeout, BlockingIOError):
            pass

    def uid(self) -> int:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"^Uid:\s+(\d+)", status, re.M).group(1))

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=120)
        self._drain_socket(0.2)
        return rc

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.sock.close()
        self.sock_path.unlink(missing_ok=True)


def lintian(deb: Path) -> None:
    p = run(["lintian", "--fail-on", "none", "--suppress-tags-from-file", "/dev/null", str(deb)],
            capture_output=True, text=True)
    lines = [line for line in p.stdout.splitlines() if re.match(r"^[EWIPO]: ", line)]
    errors = [line for line in lines if line.startswith("E: ")]
    warnings = [line for line in lines if line.startswith("W: ")]
    overridden = run(["lintian", "--fail-on", "none", "--show-overrides", str(deb)],
                     capture_output=True, text=True).stdout.count("\nO: ")
    for line in errors + warnings:
        log(f"lintian: {line}")
    log(f"lintian: {len(errors)} error(s), {len(warnings)} warning(s), {overridden} overridden (debian/"
        "liveness-edge.lintian-overrides; reasons in docs/install.md)")
    check(not errors, "lintian reports 0 errors")


def main() -> int:
    arch, wheelhouse, outdir = sys.argv[1], Path(sys.argv[2]), REPO / sys.argv[3]
    if os.geteuid() != 0:
        skip("needs root (debootstrap, chroot, mount)")
    missing = [t for t in ("dpkg-buildpackage", "dh", "lintian", "debootstrap", "chroot", "mount", "setpriv")
               if shutil.which(t) is None]
    if missing:
        skip(f"missing tools: {', '.join(missing)} (apt-get install debhelper lintian debootstrap)")
    host = run(["dpkg", "--print-architecture"], capture_output=True, text=True).stdout.strip()
    qemu = None
    if arch != host:
        p = subprocess.run([str(REPO / "tools/deb/qemu-interp.sh"), arch], capture_output=True, text=True)
        if p.returncode:
            skip(f"cannot run {arch} binaries here: {p.stderr.strip()}")
        qemu = p.stdout.strip()

    debs = sorted(outdir.glob(f"liveness-edge_*_{arch}.deb"))
    if not debs:
        log(f"no package in {outdir}: building it")
        run(["make", "-C", str(REPO), "deb", f"ARCH={arch}"])
        debs = sorted(outdir.glob(f"liveness-edge_*_{arch}.deb"))
    deb = debs[-1]
    version = version_of(deb)
    log(f"package {deb.name} ({deb.stat().st_size / 1e6:.1f} MB)")
    lintian(deb)

    run([str(REPO / "tools/deb/mkroot.sh"), arch, str(CACHE)], cwd=REPO)
    upgrade_dir = Path(tempfile.mkdtemp(prefix="upgrade-", dir=CACHE))
    try:
        new_version = f"{version}+upgradetest1"
        log(f"building the upgrade target {new_version}")
        run([str(REPO / "tools/deb/build.sh"), arch, str(wheelhouse), str(upgrade_dir), new_version], cwd=REPO,
            env={**os.environ, "DEB_BUILDDEB_OPTS": "-Zgzip -z1"}, stdout=subprocess.DEVNULL)
        deb2 = next(upgrade_dir.glob(f"liveness-edge_*_{arch}.deb"))
        check(version_of(deb2) == new_version, f"upgrade package is {new_version}")
        with Root(arch, qemu) as root:
            scenario(root, deb, deb2, native=qemu is None)
    finally:
        shutil.rmtree(upgrade_dir, ignore_errors=True)
    log(f"PASSED for {arch}")
    return 0


def scenario(root: Root, deb: Path, deb2: Path, native: bool) -> None:
    slow = 1 if native else 10  # qemu user emulation is roughly this much slower
    root.install(deb)
    st = root.sh("dpkg-query -W -f='${Status} ${Version}\\n${Conffiles}\\n' liveness-edge").stdout
    check("install ok installed" in st, f"installed: {st.splitlines()[0]}")
    check(CONFFILE in st, f"{CONFFILE} is a registered conffile")
    check(root.file(CONFFILE).is_file(), f"{CONFFILE} in place")
    check(root.sh("id -u liveness-edge", check_rc=False).returncode == 0, "system user liveness-edge exists")
    check(root.sh("getent passwd liveness-edge | cut -d: -f7").stdout.strip() in ("/usr/sbin/nologin", "/sbin/nologin"),
          "liveness-edge has no login shell")
    check(root.sh(f"stat -c %U {STATE}").stdout.strip() == "liveness-edge", f"{STATE} belongs to liveness-edge")
    check(root.sh("readlink -f /usr/bin/liveness-edge").stdout.strip() == "/usr/lib/liveness-edge/venv/bin/liveness-edge",
          "/usr/bin/liveness-edge -> the venv's console script")
    check(root.file("/usr/share/liveness-edge/models/manifest.json").is_file(), "models + manifest.json installed")
    missing = root.sh("find /usr/lib/liveness-edge/venv -name '*.so*' -type f -exec ldd {} + 2>&1 "
                      "| grep 'not found' | sort -u", check_rc=False).stdout.strip()
    check(not missing, "every bundled shared library resolves" + (f": {missing}" if missing else ""))
    # ... and every system library they resolve to comes from a package the .deb depends on (Policy 3.5: required
    # priority is not Essential; the minimal root here would hide a missing zlib1g).
    system_libs = root.sh("find /usr/lib/liveness-edge/venv -name '*.so*' -type f -exec ldd {} + 2>/dev/null "
                          "| awk '$2 == \"=>\" && $3 ~ /^\\// {print $3}' | grep -v '^/usr/lib/liveness-edge/' "
                          "| sort -u", check_rc=False).stdout.split()
    # dpkg knows a library by the path its package ships (/lib/... or /usr/lib/... on a merged-/usr root).
    owner_of = ('for f in "$@"; do dpkg -S "$f" 2>/dev/null || dpkg -S "${f#/usr}" 2>/dev/null '
                '|| dpkg -S "$(realpath "$f")" 2>/dev/null || echo "?: $f"; done')
    listed = root.sh(f"set -- {' '.join(map(shlex.quote, system_libs))}; {owner_of}").stdout.splitlines()
    owners = {line.split(":")[0] for line in listed}
    depends = {re.split(r"[\s(:]", alt.strip())[0] for dep in debian_field(deb, "Depends").split(",")
               for alt in dep.split("|")}
    unowned = [line for line in listed if line.startswith("?")]
    check(owners <= depends, f"the system libraries' packages ({', '.join(sorted(owners))}) are in Depends"
          + (f"; missing: {', '.join(sorted(owners - depends))} {unowned}" if owners - depends else ""))
    out = root.sh("runuser -u liveness-edge -- liveness-edge version").stdout.strip()
    check(out.startswith("liveness-edge "), f"`liveness-edge version`: {out}")
    out = root.sh("runuser -u liveness-edge -- liveness-edge config-check").stdout.strip()
    check(out.startswith(f"{CONFFILE}: OK") and "/usr/share/liveness-edge/models" in out and STATE in out,
          f"`liveness-edge config-check` as the service user: {out}")

    port = free_port()
    conf = root.file(CONFFILE)
    text = conf.read_text()
    check(re.search(r"^listen: :18301", text, re.M), "the shipped config listens on :18301")
    conf.write_text("# modified by deb-test\n" + re.sub(r"^listen: :18301", f"listen: 127.0.0.1:{port}", text,
                                                      flags=re.M))
    base = f"http://127.0.0.1:{port}"
    detection_id = None
    with Daemon(root, port, mdwe=native) as d:
        check(d.wait_for("READY=1", 240 * slow), "READY=1 sent once the models are loaded")
        check(d.uid() == int(root.sh("id -u liveness-edge").stdout), "the daemon runs as liveness-edge")
        status, body = http("GET", f"{base}/health")
        check(status == 200 and json.loads(body)["status"] == "ok", f"GET /health: {status}")
        # The demo page's files are package data inside the wheel: a build that left them out would not start.
        pages = [http("GET", f"{base}{path}") for path in ("/", "/demo/demo.js", "/demo/demo.css")]
        check(all(status == 200 for status, _ in pages) and b"/demo/demo.js?v=" in pages[0][1],
              f"GET / and its assets (the demo page): {[status for status, _ in pages]}")
        if CLIP.is_file():
            t0 = time.monotonic()
            status, body = http("POST", f"{base}/v1/liveness?return_detection=true", CLIP.read_bytes(), "video/mp4")
            answer = json.loads(body)
            check(status == 200, f"POST {CLIP.name}: {status} alive={answer.get('alive')} "
                                 f"average_liveness={answer.get('average_liveness')} in {time.monotonic() - t0:.1f}s")
            detection_id = answer["best_face"]["detection_id"]
        else:
            log(f"SKIPPED the real-clip step: {CLIP} is absent (../shared is not beside this checkout)")
        check(d.wait_for("WATCHDOG=1", 5 * slow), "WATCHDOG=1 at half of WATCHDOG_USEC")
        rc = d.stop()
        check(rc == 0 and d.wait_for("STOPPING=1", 1), f"SIGTERM: STOPPING=1 and exit {rc}")
    if native:
        log("ok: the daemon ran under PR_SET_MDWE (MemoryDenyWriteExecute=yes holds for numpy, PyAV, OpenCV, LiteRT)")
    check(any(root.file(STATE).iterdir()), f"detection cache written under {STATE}")

    root.install(deb2)
    st = root.sh("dpkg-query -W -f='${Version}' liveness-edge").stdout
    check(st == version_of(deb2), f"upgraded to {st}")
    check(conf.read_text().startswith("# modified by deb-test"), "upgrade kept the modified conffile")
    check(not list(root.path.glob("etc/liveness-edge/*.dpkg-*")), "no .dpkg-new/.dpkg-dist left beside it")
    with Daemon(root, port, mdwe=native) as d:
        check(d.wait_for("READY=1", 240 * slow), "READY=1 after the upgrade")
        if detection_id:
            status, body = http("GET", f"{base}/v1/detections/{detection_id}")
            check(status == 200 and json.loads(body)["id"] == detection_id,
                  f"GET /v1/detections/{detection_id} after the upgrade: {status}")
        check(d.stop() == 0, "stopped cleanly")

    root.sh("dpkg --remove liveness-edge")
    st = root.sh("dpkg-query -W -f='${Status}' liveness-edge").stdout
    check(st.endswith("config-files"), f"removed: {st}")
    check(not root.file("/usr/bin/liveness-edge").exists() and not root.file("/usr/lib/liveness-edge").exists(),
          "remove took /usr/bin/liveness-edge and the venv (incl. byte-code) away")
    check(root.file(CONFFILE).is_file() and any(root.file(STATE).iterdir()),
          f"remove kept {CONFFILE} and the state in {STATE}")
    root.sh("dpkg --purge liveness-edge")
    check(not root.file(STATE).exists(), f"purge deleted {STATE}")
    check(not root.file("/etc/liveness-edge").exists(), "purge deleted /etc/liveness-edge")
    check(root.sh("dpkg-query -W liveness-edge", check_rc=False).returncode != 0, "the package is gone")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Failure as exc:
        print(f"deb-test: FAILED: {exc}", file=sys.stderr)
        sys.exit(1)
