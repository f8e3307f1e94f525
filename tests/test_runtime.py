"""The embedded runtime loader: clear errors that name the missing Debian package."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from fbaudit import runtime
from fbaudit.errors import RuntimeSetupError


@pytest.fixture
def wheel_copy(tmp_path):
    """A copy of the installed firebird-embedded runtime's libraries."""
    rt = runtime.load_client()
    if rt.embedded_root is None:
        pytest.skip("not using the firebird-embedded runtime")
    root = tmp_path / "runtime"
    (root / "plugins").mkdir(parents=True)
    shutil.copy2(rt.embedded_root / "libfbclient.so.2", root)
    for so in (rt.embedded_root / "plugins").glob("*.so"):
        shutil.copy2(so, root / "plugins")
    for so in rt.embedded_root.glob("libtomcrypt.so*"):
        shutil.copy2(so, root)
    return root


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux shared libraries")
def test_missing_libtommath_names_the_debian_package(wheel_copy, tmp_path, monkeypatch):
    libs = tmp_path / "system-libs-without-libtommath"
    libs.mkdir()
    for name in ("libncurses.so.5", "libtinfo.so.5"):        # everything else the wheels need
        real = runtime._resolve_lib(name)
        if real:
            (libs / name).symlink_to(real)
    monkeypatch.setattr(runtime, "SYSTEM_LIB_DIRS", (str(libs),))   # a machine without libtommath1
    with pytest.raises(RuntimeSetupError, match=r"libtommath\.so\.1.*apt-get install libtommath1"):
        runtime._prepare_linux_embedded(wheel_copy)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux shared libraries")
def test_old_libtommath_soname_is_linked_where_the_rpath_looks(wheel_copy):
    needs = set(runtime._needed(wheel_copy / "libfbclient.so.2"))
    runtime._prepare_linux_embedded(wheel_copy)
    if "libtommath.so.0" in needs:       # Firebird 3.0 and 4.0 wheels
        link = wheel_copy.parent / "lib" / "libtommath.so.0"
        assert link.is_symlink() and link.resolve().name.startswith("libtommath.so.1")
    else:                                # Firebird 5.0 links libtommath.so.1 directly
        assert not (wheel_copy.parent / "lib" / "libtommath.so.0").exists()


def test_the_client_loads_and_reports_its_version(target):
    assert target.major in (3, 4, 5) and target.version.startswith(str(target.major))


SIGNAL_PROBE = r'''
import ctypes, signal, sys
from fbaudit.config import DatabaseSpec
from fbaudit.db import open_database
from fbaudit.runtime import install_client_signal_handlers, load_client
libc = ctypes.CDLL(None)
class SA(ctypes.Structure):
    _fields_ = [("handler", ctypes.c_void_p), ("mask", ctypes.c_ulong * 16), ("flags", ctypes.c_int),
                ("restorer", ctypes.c_void_p)]
def current():
    sa = SA(); libc.sigaction(signal.SIGTERM, None, ctypes.byref(sa)); return sa.handler
if sys.argv[1] == "prepared":
    install_client_signal_handlers()
else:
    load_client()
signal.signal(signal.SIGTERM, lambda *a: None)
ours = current()
from pathlib import Path
spec = DatabaseSpec("main", sys.argv[2], user="SYSDBA", password_file=Path(sys.argv[3]) if sys.argv[3] else None)
open_database(spec).close()
print("kept" if current() == ours else "replaced")
'''


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signal handlers")
def test_signal_handlers_set_after_the_client_installed_its_own_stay(project):
    """The Firebird client replaces the SIGTERM handler at its first attach (then shuts down
    every attachment on SIGTERM); after install_client_signal_handlers() ours stay."""
    pw = str(project.main.password_file or "")
    out = {}
    for mode in ("plain", "prepared"):
        res = subprocess.run([sys.executable, "-c", SIGNAL_PROBE, mode, project.main.database, pw],
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        out[mode] = res.stdout.strip()
    assert out == {"plain": "replaced", "prepared": "kept"}
