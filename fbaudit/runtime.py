"""Loading the Firebird client library: the embedded runtime or a system client.

firebird-driver loads one client library per process. fbaudit uses the
``firebird-embedded`` wheel's ``libfbclient`` by default: it opens database
files directly (embedded) and also reaches servers over TCP (its Remote
provider), so one process can do both.

The wheels need a few things from the system on Debian 12 (see
docs/install.md): ``libtommath1`` (all versions; FB3 and FB4 link the old
soname ``libtommath.so.0``), ``libncurses5`` (FB3). We make the old soname
resolvable by placing a symlink in the ``lib/`` folder the libraries' RPATH
(``$ORIGIN/../lib``) already searches, so no ``LD_LIBRARY_PATH`` is needed.
"""
from __future__ import annotations

import ctypes
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from .errors import RuntimeSetupError

_loaded: "ClientRuntime | None" = None


@dataclass(frozen=True)
class ClientRuntime:
    """The client library this process uses."""

    library: Path
    embedded_root: Path | None
    embedded_version: str | None


# Where Debian/Ubuntu (and most Linux distributions) keep shared libraries.
SYSTEM_LIB_DIRS: tuple[str, ...] = (
    "/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
    "/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/lib",
)
# Debian package that provides each library the wheels need.
PACKAGES = {"libtommath": "libtommath1", "libncurses.so.5": "libncurses5", "libtinfo.so.5": "libncurses5"}


def _resolve_lib(name: str) -> Path | None:
    for d in SYSTEM_LIB_DIRS:
        p = Path(d) / name
        if p.exists():
            return p
    return None


def _missing(soname: str, root: Path) -> RuntimeSetupError:
    package = next((v for k, v in PACKAGES.items() if soname.startswith(k)), None)
    fix = f"On Debian/Ubuntu run: apt-get install {package}" if package else \
        "Install the package that provides it (apt-file search " + soname + ")"
    return RuntimeSetupError(f"The Firebird embedded runtime in {root} needs the system library {soname}, "
                             f"which is not installed. {fix}")


def _needed(lib: Path) -> list[str]:
    """DT_NEEDED entries of an ELF shared library (small reader, no tools)."""
    import struct

    data = lib.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2:
        return []
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    out: list[str] = []
    for sh in sections:
        if sh[1] != 6:  # SHT_DYNAMIC
            continue
        strtab = sections[sh[6]]
        off, size = sh[4], sh[5]
        for i in range(0, size, 16):
            tag, val = struct.unpack_from("<qQ", data, off + i)
            if tag == 0:
                break
            if tag == 1:
                s = strtab[4] + val
                out.append(data[s:data.index(b"\0", s)].decode())
    return out


def _prepare_linux_embedded(root: Path) -> None:
    """Make the wheel's libraries find libtommath/libtomcrypt on Debian."""
    needs: set[str] = set()
    libs = [root / "libfbclient.so.2", *sorted((root / "plugins").glob("*.so"))]
    for lib in libs:
        if lib.exists():
            needs.update(n for n in _needed(lib) if n.startswith(("libtommath", "libtomcrypt", "libncurses", "libtinfo")))
    links: dict[str, Path] = {}
    for soname in sorted(needs):
        if (root / soname).exists() or _resolve_lib(soname):
            continue  # shipped by the wheel (libtomcrypt in 4.0/5.0) or installed
        if soname == "libtommath.so.0":
            # FB3/FB4 wheels link the old soname; Debian 12 ships libtommath.so.1,
            # which has the same ABI for what Firebird uses.
            target = _resolve_lib("libtommath.so.1")
            if target is None:
                raise _missing("libtommath.so.1", root)
            links[soname] = target
            continue
        raise _missing(soname, root)
    for soname, target in links.items():
        for libdir in (root / "lib", root.parent / "lib"):
            link = libdir / soname
            if link.exists():
                continue
            try:
                libdir.mkdir(exist_ok=True)
                link.symlink_to(target)
            except OSError as exc:
                raise RuntimeSetupError(
                    f"Cannot create {link} -> {target} ({exc}). Create it by hand, or run "
                    f"once as a user who can write to {libdir}."
                ) from exc
    # libtomcrypt shipped inside the wheel (4.0/5.0) is not linked against
    # libtommath: load libtommath globally, then libtomcrypt, before Engine13.
    if (root / "libtomcrypt.so.1").exists():
        tommath = _resolve_lib("libtommath.so.1")
        if tommath is None:
            raise _missing("libtommath.so.1", root)
        ctypes.CDLL(str(tommath), mode=ctypes.RTLD_GLOBAL)
        ctypes.CDLL(str(root / "libtomcrypt.so.1"), mode=ctypes.RTLD_GLOBAL)


def shared_root(root: Path, version: str) -> Path:
    """A copy of the embedded runtime whose firebird.conf says ServerMode = SuperClassic.

    In its default Super mode the embedded engine locks a database file for
    one process. With FBAUDIT_EMBEDDED_SHARED=1 every fbaudit process uses
    this copy, so several processes (``transfer --follow`` as a service and
    ``fbaudit history`` in a shell) can open the same files. Made once, under
    $FBAUDIT_CACHE (default ~/.cache/fbaudit); safe when processes race.
    """
    import shutil

    base = Path(os.environ.get("FBAUDIT_CACHE") or Path.home() / ".cache" / "fbaudit")
    dst = base / f"firebird-{version}-superclassic"
    if (dst / ".complete").exists():
        return dst
    base.mkdir(parents=True, exist_ok=True)
    tmp = base / f".tmp-{os.getpid()}-{dst.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(root, tmp, symlinks=True)
    with open(tmp / "firebird.conf", "a", encoding="utf-8") as fh:
        fh.write("\n# fbaudit (FBAUDIT_EMBEDDED_SHARED=1): several processes share database files\n"
                 "ServerMode = SuperClassic\n")
    (tmp / ".complete").touch()
    try:
        os.rename(tmp, dst)
    except OSError:              # another process made it first
        shutil.rmtree(tmp, ignore_errors=True)
    return dst


_lock = threading.Lock()


def load_client(client_library: str | None = None) -> ClientRuntime:
    """Load the client library once per process (thread-safe) and return what was loaded.

    The library is loaded here, under a lock: firebird-driver publishes its API
    object before it is complete, so two threads connecting first at the same
    time could otherwise see a half-initialised API
    ("'NoneType' object has no attribute 'get_xpb_builder'", measured).
    """
    with _lock:
        runtime = _load_client(client_library)
        from firebird.driver.fbapi import get_api
        get_api()
        return runtime


def _load_client(client_library: str | None = None) -> ClientRuntime:
    """Load the client library once per process and return what was loaded.

    ``client_library``: an explicit path (for a system client); default the
    ``firebird-embedded`` runtime.
    """
    global _loaded
    from firebird.driver import driver_config

    if _loaded is not None:
        if client_library and Path(client_library) != _loaded.library:
            raise RuntimeSetupError(
                f"This process already uses the Firebird client {_loaded.library}; "
                f"cannot switch to {client_library} (one client library per process)."
            )
        return _loaded
    client_library = client_library or os.environ.get("FBAUDIT_CLIENT_LIBRARY") or None
    if client_library:
        lib = Path(client_library)
        if not lib.exists():
            raise RuntimeSetupError(f"Firebird client library not found: {lib}")
        driver_config.fb_client_library.value = str(lib)
        _loaded = ClientRuntime(lib, None, None)
        return _loaded
    try:
        from firebird.embedded.provider import FirebirdProvider
    except ImportError as exc:
        raise RuntimeSetupError(
            "No Firebird client library: install the embedded runtime "
            "(pip install firebird-embedded) or set client_library in the config "
            "(or FBAUDIT_CLIENT_LIBRARY) to a Firebird client (fbclient.dll / libfbclient.so.2)."
        ) from exc
    provider = FirebirdProvider()
    root = provider.root
    lib = provider.client_library
    if os.environ.get("FBAUDIT_EMBEDDED_SHARED", "").lower() in ("1", "yes", "true", "on"):
        shared = shared_root(root, provider.firebird_version)
        lib, root = shared / Path(lib).relative_to(root), shared
    # The embedded engine reads firebird.conf from $FIREBIRD; without this it
    # may read a system-wide server's configuration and fail to create files.
    os.environ["FIREBIRD"] = str(root)
    if sys.platform.startswith("linux"):
        _prepare_linux_embedded(root)
    driver_config.fb_client_library.value = str(lib)
    _loaded = ClientRuntime(lib, root, provider.firebird_version)
    return _loaded


def install_client_signal_handlers(client_library: str | None = None) -> None:
    """Let the Firebird client install its own SIGINT/SIGTERM handlers now.

    The client installs them at its first attach, replacing any handler the
    program set before (and calling it afterwards): on SIGTERM it then shuts
    down every attachment of the process while fbaudit is still finishing a
    batch ("connection shutdown", then a crash at exit; measured with the 3.0
    client over TCP). A failed attach to a path that cannot exist triggers that
    installation, so handlers set after this call stay in place.
    """
    load_client(client_library)
    from firebird.driver import connect
    try:
        connect(str(Path("/nonexistent-fbaudit-dir") / "none.fdb"), user="SYSDBA", password="-").close()
    except Exception:
        pass
