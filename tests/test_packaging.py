"""The Debian packaging (debian/, systemd/, mk/deb.mk) agrees with itself and with the daemon's path defaults.

Fast and offline: no package build, no debootstrap (that is `make deb-test`, tools/deb/test.py).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from liveness_edge import __version__, config

ROOT = Path(__file__).resolve().parent.parent
DEBIAN = ROOT / "debian"
UNIT = ROOT / "systemd" / "liveness-edge.service"
VENV = "/usr/lib/liveness-edge/venv"


def unit_entries(path: Path = UNIT) -> dict[str, list[str]]:
    """Key -> every value it is given (systemd allows repeats), comments and section headers skipped."""
    out: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


def install_map() -> list[tuple[str, str]]:
    pairs = []
    for line in (DEBIAN / "liveness-edge.install").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            src, dest = line.split()
            pairs.append((src, "/" + dest.strip("/")))
    return pairs


REQUIRED = {
    "Type": "notify",
    "WatchdogSec": "30",
    "Restart": "on-failure",
    "User": "liveness-edge",
    "ExecStart": "/usr/bin/liveness-edge serve",
    "EnvironmentFile": "-/etc/default/liveness-edge",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "NoNewPrivileges": "yes",
    "StateDirectory": "liveness-edge",
    "CapabilityBoundingSet": "",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "MemoryMax": "600M",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "RestrictNamespaces": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
}


@pytest.mark.parametrize("key", sorted(REQUIRED))
def test_unit_has_required_directive(key):
    values = unit_entries().get(key)
    assert values is not None, f"{UNIT.name} lacks {key}="
    assert values[0] == REQUIRED[key], f"{key}={values[0]!r}, expected {REQUIRED[key]!r}"


def test_unit_syscall_filter_and_devices():
    entries = unit_entries()
    assert entries["SystemCallFilter"][0] == "@system-service"
    # PrivateDevices=yes would hide a Coral for good; the EdgeTPU drop-in opens the device ACL instead.
    assert entries.get("PrivateDevices", ["no"])[0] == "no"
    usb, pcie = (unit_entries(ROOT / "systemd" / f"edgetpu-{kind}.conf") for kind in ("usb", "pcie"))
    assert usb["DeviceAllow"] == ["char-usb_device rw"] and pcie["DeviceAllow"] == ["/dev/apex_0 rw"]
    # systemd refuses to start a unit whose SupplementaryGroups= names a missing group: the USB drop-in must not
    # name "apex", which only a PCIe Coral's setup creates.
    assert usb["SupplementaryGroups"] == ["plugdev"] and pcie["SupplementaryGroups"] == ["apex"]
    examples = (DEBIAN / "liveness-edge.examples").read_text().split()
    assert examples == ["systemd/edgetpu-usb.conf", "systemd/edgetpu-pcie.conf"]


def test_unit_timeouts_cover_drain_timeout():
    """systemd must not SIGKILL the daemon while it drains for server.drain-timeout after SIGTERM."""
    stop = float(unit_entries()["TimeoutStopSec"][0].rstrip("s"))
    drain = config.parse_config("").server.drain_timeout
    assert stop > drain


def _analyze_root(tmp_path: Path) -> Path:
    """A minimal --root for systemd-analyze: the host's unit library, the unit, a stand-in for ExecStart."""
    host_units = Path("/lib/systemd/system")
    if not (host_units / "sysinit.target").exists():
        pytest.skip("systemd-analyze needs the host's systemd unit library (/lib/systemd/system/sysinit.target)")
    root = tmp_path / "root"
    shutil.copytree(host_units, root / "lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(UNIT, root / "etc/systemd/system" / UNIT.name)
    exe = root / "usr/bin/liveness-edge"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    return root


def _systemd_analyze() -> str:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    return exe


def test_systemd_analyze_verify(tmp_path):
    exe = _systemd_analyze()
    root = _analyze_root(tmp_path)
    p = subprocess.run([exe, "verify", "--man=no", "--generators=no", f"--root={root}", UNIT.name],
                       capture_output=True, text=True, timeout=20)
    complaints = [line for line in (p.stdout + p.stderr).splitlines() if UNIT.name in line]
    assert p.returncode == 0 and not complaints, p.stdout + p.stderr


def test_systemd_analyze_security_exposure(tmp_path):
    exe = _systemd_analyze()
    p = subprocess.run([exe, "security", "--offline=yes", "--no-pager", str(UNIT)],
                       capture_output=True, text=True, timeout=20)
    if "--offline" in p.stderr and "unrecognized" in p.stderr:
        pytest.skip("this systemd-analyze has no --offline (systemd < 250)")
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", p.stdout + p.stderr)
    assert m, p.stdout + p.stderr
    assert float(m.group(1)) <= 2.5, p.stdout


def test_conffile_models_unit_installed_where_the_daemon_looks(tmp_path, monkeypatch):
    """Outside a checkout the daemon reads /etc/..., /usr/share/... and /var/lib/...: the package puts them there."""
    monkeypatch.setattr(config, "PROJECT_ROOT", tmp_path)  # as installed: no pyproject.toml, no config/, no models/
    monkeypatch.delenv(config.CONFIG_ENV, raising=False)
    installed = dict(install_map())
    assert str(config.default_config_path()) == installed["config/liveness-edge.ini"] + "/liveness-edge.ini"
    assert str(config.bundled_models_dir()) == installed["models/tflite/*"]
    state = config.default_state_dir()
    assert str(state) == "/var/lib/" + unit_entries()["StateDirectory"][0]
    assert (ROOT / "models/tflite/manifest.json").is_file()
    # The fusion coefficients must land where fusion.load_fusion looks, or an installed box silently scores with the
    # bare CNN mean instead of the calibrated fusion the checkout uses.
    from liveness_edge import fusion

    cfg = config.parse_config("", source="<installed>")
    assert installed["models/fusion.json"] + "/fusion.json" in [str(p) for p in fusion.fusion_paths(cfg)]
    assert installed["systemd/liveness-edge.service"] == "/lib/systemd/system"
    # debhelper compat 13 marks every file installed under /etc as a conffile.
    assert "debhelper-compat (= 13)" in (DEBIAN / "control").read_text()
    assert installed["config/liveness-edge.ini"].startswith("/etc/")


def test_sysusers_postinst_postrm():
    sysusers = [line.split() for line in (DEBIAN / "liveness-edge.sysusers").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    assert ["u", "liveness-edge"] == sysusers[0][:2]
    assert unit_entries()["User"][0] == "liveness-edge"
    postrm = (DEBIAN / "liveness-edge.postrm").read_text()
    purge = postrm[postrm.index('"purge"'):]
    assert f"rm -rf {config.INSTALLED_STATE_DIR}" in purge.split("fi")[0]
    for script in ("postinst", "prerm", "postrm"):
        assert "#DEBHELPER#" in (DEBIAN / f"liveness-edge.{script}").read_text()
    assert "liveness-edge.conf" in (DEBIAN / "liveness-edge.postinst").read_text()
    # debhelper 13.11 (Debian 12) runs dh_installsysusers only with this add-on (it is in the default sequence from
    # compat 14); without it the .sysusers file would not be installed.
    assert "--with installsysusers" in (DEBIAN / "rules").read_text()


def test_command_is_a_link_into_the_venv():
    links = (DEBIAN / "liveness-edge.links").read_text().split()
    assert links == [f"{VENV.lstrip('/')}/bin/liveness-edge", "usr/bin/liveness-edge"]
    assert f"VENV      := {VENV}" in (DEBIAN / "rules").read_text()
    assert (ROOT / "liveness_edge/__main__.py").is_file()  # the venv's wrapper runs `python3 -I -m liveness_edge`


def test_versions_agree():
    first = (DEBIAN / "changelog").read_text().splitlines()[0]
    upstream = re.match(r"liveness-edge \(([^)-]+)-[^)]+\)", first).group(1)
    pyproject = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    assert upstream == pyproject == __version__


def test_every_runtime_dependency_is_packaged():
    """A dependency added to pyproject.toml must also be fetched into the wheelhouse (mk/deb.mk) and pinned."""
    text = (ROOT / "pyproject.toml").read_text()
    deps = re.search(r"^dependencies = \[(.*?)^\]", text, re.M | re.S).group(1)
    names = {re.match(r'\s*"([A-Za-z0-9_.-]+)', line).group(1).lower().replace("_", "-")
             for line in deps.splitlines() if line.strip().startswith('"')}
    runtime = re.search(r"^DEB_RUNTIME := (.*)$", (ROOT / "mk/deb.mk").read_text(), re.M).group(1)
    packaged = {n.lower().replace("_", "-") for n in runtime.split()}
    assert names <= packaged, f"not in DEB_RUNTIME: {sorted(names - packaged)}"
    pinned = {line.split("==")[0].strip().lower().replace("_", "-")
              for line in (ROOT / "constraints.txt").read_text().splitlines() if "==" in line}
    assert packaged <= pinned, f"not pinned in constraints.txt: {sorted(packaged - pinned)}"
