"""The deploy kits: the systemd units are hardened, read the YAML files, and pass systemd-analyze
verify (pointed at the built binaries); the example settings they name load."""
import re
import shutil
import subprocess

import pytest

import support

UNITS = support.REPO / "deploy" / "systemd"


@pytest.mark.parametrize("program", ["relay-server", "relay-client"])
def test_units_are_hardened_and_read_the_settings_file(program):
    unit = (UNITS / f"{program}.service").read_text()
    for line in ("NoNewPrivileges=yes", "ProtectSystem=strict", "User=framerelay", "StateDirectory=framerelay",
                 "CapabilityBoundingSet=", "ProtectHome=yes"):
        assert re.search(rf"^{re.escape(line)}$", unit, re.M), f"{program}.service lacks {line}"
    assert re.search(rf"^ExecStart=/usr/local/bin/{program} .*--config /etc/framerelay/{program}\.yaml$", unit, re.M)


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
@pytest.mark.parametrize("program", ["relay-server", "relay-client"])
def test_units_verify(program, tmp_path):
    unit = (UNITS / f"{program}.service").read_text()
    unit = unit.replace(f"/usr/local/bin/{program}", str(support.BIN_DIR / program))
    unit = unit.replace(f"/etc/framerelay/{program}.yaml", str(support.REPO / program / f"{program}.yaml"))
    path = tmp_path / f"{program}.service"
    path.write_text(unit)
    result = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60)
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if str(path) in line or "Unknown" in line or "Invalid" in line]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr
