"""The embedded runtime loader: clear errors that name the missing Debian package."""
from __future__ import annotations

import shutil
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
