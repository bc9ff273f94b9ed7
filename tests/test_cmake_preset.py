"""The LAMMPS CMake presets in cmake/.

Fast checks (always run) read the `set(...)` lines of both presets and cmake/README.md. Two slow
checks configure Debian's LAMMPS source with cmake/lpfm.cmake (configure only, never a build):
as shipped, and a mirror of it without EXTRA-FIX/EXTRA-COMPUTE/LAMMPS_EXCEPTIONS (what older
or newer LAMMPS versions look like). They download about 100 MB from Debian's archive once and
run only with LPFM_TEST_CMAKE=1:

    LPFM_TEST_CMAKE=1 python -m pytest tests/test_cmake_preset.py -m slow -s

The slow check needs root and apt (Debian/Ubuntu): it adds a deb-src entry in
/etc/apt/sources.list.d/lpfm-deb-src.sources (copied from debian.sources), runs apt-get update,
installs dpkg-dev / MPI / Python headers if missing, and unpacks the source into
~/.cache/lpfm_insitu/lammps-src (LPFM_CACHE_DIR overrides ~/.cache/lpfm_insitu), where later
runs find it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PRESET = REPO / "cmake" / "lpfm.cmake"
KOKKOS_PRESET = REPO / "cmake" / "lpfm-kokkos-cuda.cmake"

CACHE_DIR = Path(os.environ.get("LPFM_CACHE_DIR") or Path.home() / ".cache" / "lpfm_insitu") \
    / "lammps-src"
DEBIAN_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
DEB_SRC_FILE = Path("/etc/apt/sources.list.d/lpfm-deb-src.sources")
UNPACKED_MARKER = ".lpfm-unpacked"

# what lpfm.cmake must turn on, and what lpfm-kokkos-cuda.cmake must add
REQUIRED = {
    "PKG_PYTHON": "ON", "PKG_MANYBODY": "ON", "PKG_SHOCK": "ON", "PKG_EXTRA-FIX": "ON",
    "PKG_EXTRA-COMPUTE": "ON", "PKG_MISC": "ON", "BUILD_SHARED_LIBS": "ON", "BUILD_MPI": "ON",
    "LAMMPS_EXCEPTIONS": "ON",
}
REQUIRED_KOKKOS = {
    "PKG_KOKKOS": "ON", "Kokkos_ENABLE_CUDA": "ON", "Kokkos_ENABLE_OPENMP": "ON", "BUILD_OMP": "ON",
}
# what the configured CMakeCache.txt must show
REQUIRED_IN_CACHE = ("PKG_PYTHON", "PKG_MANYBODY", "PKG_SHOCK", "BUILD_SHARED_LIBS", "BUILD_MPI")

_SET_LINE = re.compile(r"^\s*set\(\s*([A-Za-z_][A-Za-z0-9_\-]*)\s+(\S+)(.*)\)\s*(#.*)?$")


def preset_settings(path: Path) -> dict[str, str]:
    """Variable -> value of every one-line `set(NAME VALUE ...)` of a preset (comments skipped)."""
    settings = {}
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue
        match = _SET_LINE.match(line)
        if match:
            settings[match.group(1)] = match.group(2).strip('"')
    return settings


# ---------------------------------------------------------------------------------------------
# fast: plain text
# ---------------------------------------------------------------------------------------------

def test_main_preset_sets_what_the_package_needs():
    settings = preset_settings(PRESET)
    missing = {k: v for k, v in REQUIRED.items() if settings.get(k, "").upper() != v}
    assert not missing, f"{PRESET.name} does not set {missing}"
    # every setting is a cache entry forced over a stale build directory's value
    text = PRESET.read_text()
    for name in REQUIRED:
        assert re.search(rf"^\s*set\({re.escape(name)}\s+ON\s+CACHE\s+BOOL\s+\"[^\"]*\"\s+FORCE\)",
                         text, re.M), f"{name} is not 'set(... ON CACHE BOOL \"\" FORCE)'"


def test_kokkos_preset_adds_cuda_with_openmp_host():
    settings = preset_settings(KOKKOS_PRESET)
    missing = {k: v for k, v in REQUIRED_KOKKOS.items() if settings.get(k, "").upper() != v}
    assert not missing, f"{KOKKOS_PRESET.name} does not set {missing}"
    text = KOKKOS_PRESET.read_text()
    assert "Kokkos_ARCH_" in text, "the GPU architecture (Kokkos_ARCH_...) is not explained"
    # the GPU variant adds to lpfm.cmake; it must not switch off anything lpfm.cmake needs
    for name in REQUIRED:
        assert settings.get(name, "ON").upper() == "ON", f"{KOKKOS_PRESET.name} turns {name} off"


def test_readme_gives_the_commands():
    text = (REPO / "cmake" / "README.md").read_text()
    for needle in ("cmake -C", "install-python", "lpfm doctor", "--no-binary mpi4py", "Python_EXECUTABLE"):
        assert needle in text, f"cmake/README.md does not mention {needle!r}"


# ---------------------------------------------------------------------------------------------
# slow: configure Debian's LAMMPS source
# ---------------------------------------------------------------------------------------------

def _run(cmd, **kwargs):
    """Run a command at the lowest CPU priority; fail the test with its output on error."""
    cmd = ["nice", "-n", "19", *map(str, cmd)] if shutil.which("nice") else list(map(str, cmd))
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, **kwargs)
    if result.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed (exit {result.returncode}):\n"
                    f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def _deb_src_stanzas(sources_text: str) -> list[str]:
    """deb-src copies of the deb stanzas of a deb822 .sources file (URIs, Suites, Components, Signed-By)."""
    stanzas = []
    for block in re.split(r"\n\s*\n", sources_text):
        fields = {}
        for line in block.splitlines():
            if line.startswith("#") or ":" not in line or line[0].isspace():
                continue
            key, value = line.split(":", 1)
            fields[key.strip()] = value.strip()
        if "deb" not in fields.get("Types", "").split() or "URIs" not in fields:
            continue
        lines = ["Types: deb-src"] + [f"{key}: {fields[key]}" for key in
                                      ("URIs", "Suites", "Components", "Signed-By") if key in fields]
        stanzas.append("\n".join(lines))
    return stanzas


def test_deb_src_stanzas_copy_debian_sources():
    text = ("Types: deb\n# http://snapshot.debian.org/archive/debian/20250520T000000Z\n"
            "URIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\n"
            "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
            "Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n"
            "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n")
    stanzas = _deb_src_stanzas(text)
    assert len(stanzas) == 2
    assert stanzas[0] == ("Types: deb-src\nURIs: http://deb.debian.org/debian\n"
                          "Suites: bookworm bookworm-updates\nComponents: main\n"
                          "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg")


def _has_lammps_source_package() -> bool:
    out = subprocess.run(["apt-cache", "showsrc", "lammps"], capture_output=True, text=True)
    return out.returncode == 0 and "Package: lammps" in out.stdout


def _ensure_deb_src():
    if _has_lammps_source_package():
        return
    if not DEB_SRC_FILE.exists():
        if not DEBIAN_SOURCES.exists():
            pytest.skip(f"no deb-src for lammps and no {DEBIAN_SOURCES} to copy one from")
        stanzas = _deb_src_stanzas(DEBIAN_SOURCES.read_text())
        if not stanzas:
            pytest.skip(f"{DEBIAN_SOURCES} has no deb stanza to copy")
        DEB_SRC_FILE.write_text("# added by lpfm_insitu tests/test_cmake_preset.py: source packages\n"
                                + "\n\n".join(stanzas) + "\n")
    _run(["apt-get", "update"], timeout=900)
    if not _has_lammps_source_package():
        pytest.fail(f"apt-cache showsrc lammps finds nothing after adding {DEB_SRC_FILE}")


def _apt_install(*packages):
    _run(["apt-get", "install", "-y", "--no-install-recommends", *packages], timeout=1800)


def _python_headers_present() -> bool:
    return (Path(sysconfig.get_paths()["include"]) / "Python.h").exists()


def _ensure_tools():
    """What `apt-get source` and a LAMMPS configure with MPI and PYTHON need."""
    needed = []
    if not shutil.which("dpkg-source"):
        needed.append("dpkg-dev")
    if not shutil.which("cmake"):
        needed.append("cmake")
    if not shutil.which("g++"):
        needed.append("g++")
    if not shutil.which("mpicxx"):
        needed.append("mpi-default-dev")
    if not _python_headers_present():
        if not sys.base_prefix.startswith("/usr"):
            pytest.skip(f"no Python.h for {sys.executable} (not Debian's Python, apt cannot add it)")
        needed.append(f"python3.{sys.version_info.minor}-dev")
    if needed:
        _run(["apt-get", "update"], timeout=900)
        _apt_install(*needed)


def _unpacked_source() -> Path | None:
    marker = CACHE_DIR / UNPACKED_MARKER
    if marker.exists():
        src = CACHE_DIR / marker.read_text().strip()
        if (src / "cmake" / "CMakeLists.txt").exists():
            return src
    return None


def lammps_version(src: Path) -> str:
    """The LAMMPS_VERSION string of a source tree ("7 Jan 2022"), or "unknown"."""
    version_h = src / "src" / "version.h"
    match = re.search(r'LAMMPS_VERSION\s+"([^"]+)"', version_h.read_text()) if version_h.exists() else None
    return match.group(1) if match else "unknown"


@pytest.fixture(scope="module")
def lammps_source() -> Path:
    if os.environ.get("LPFM_TEST_CMAKE") != "1":
        pytest.skip("configuring LAMMPS downloads ~100 MB of Debian source: "
                    "set LPFM_TEST_CMAKE=1 to run this test")
    src = _unpacked_source()
    if src is None:
        if not shutil.which("apt-get"):
            pytest.skip("no apt-get: the LAMMPS source is fetched with 'apt-get source lammps'")
        if os.geteuid() != 0:
            pytest.skip("needs root to add a deb-src entry and apt-get update")
        _ensure_deb_src()
    _ensure_tools()
    if src is None:
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        for old in CACHE_DIR.glob("lammps-*"):  # a partial unpack of an interrupted run
            if old.is_dir():
                shutil.rmtree(old)
        _run(["apt-get", "source", "lammps"], cwd=CACHE_DIR, timeout=3600)
        candidates = [d for d in CACHE_DIR.glob("lammps-*") if (d / "cmake" / "CMakeLists.txt").exists()]
        assert len(candidates) == 1, f"expected one unpacked lammps-* in {CACHE_DIR}, found {candidates}"
        (CACHE_DIR / UNPACKED_MARKER).write_text(candidates[0].name + "\n")
        src = candidates[0]
    return src


def _cmake_text(src: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted((src / "cmake").rglob("*"))
                     if p.is_file() and "presets" not in p.parts
                     and (p.suffix == ".cmake" or p.name == "CMakeLists.txt"))


def _options_unknown_to(src: Path, settings: dict[str, str]) -> list[str]:
    """Preset variables this source's CMake never reads (they only sit in the cache)."""
    cmake_text = _cmake_text(src)
    unknown = []
    for name in settings:
        if name.startswith("PKG_"):
            if not (src / "src" / name[4:]).is_dir():
                unknown.append(name)
        elif name.startswith("LAMMPS_") and not re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])",
                                                          cmake_text):
            unknown.append(name)
    return unknown


def _cache_value(cache_text: str, name: str) -> str | None:
    match = re.search(rf"^{re.escape(name)}:[A-Z]+=(.*)$", cache_text, re.M)
    return match.group(1) if match else None


def _configure(src: Path, build: Path):
    """cmake -C lpfm.cmake on src (configure only); returns (stdout, seconds). Fails on error."""
    start = time.monotonic()
    result = subprocess.run(
        ["nice", "-n", "19", "cmake", "-C", str(PRESET),
         f"-DPython_EXECUTABLE={sys.executable}",  # the Python LAMMPS embeds (here: the test's)
         "-S", str(src / "cmake"), "-B", str(build)],
        capture_output=True, text=True, timeout=1800)
    elapsed = time.monotonic() - start
    assert result.returncode == 0, (f"configure of {src} failed after {elapsed:.0f} s:\n"
                                    f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result.stdout, elapsed


def _enabled_packages(stdout: str) -> list[str]:
    """The package list of LAMMPS' configure summary ("-- Enabled packages: A;B;C")."""
    match = re.search(r"Enabled packages:[ \t]*(.*)", stdout)
    assert match, "no 'Enabled packages:' line in the configure output"
    return [p for p in re.split(r"[;\s]+", match.group(1)) if p]


@pytest.mark.slow
def test_preset_configures_debian_lammps_source(lammps_source, tmp_path):
    stdout, elapsed = _configure(lammps_source, tmp_path / "build")
    cache = (tmp_path / "build" / "CMakeCache.txt").read_text()
    for name in REQUIRED_IN_CACHE:  # e.g. the line PKG_PYTHON:BOOL=ON
        assert re.search(rf"^{re.escape(name)}:BOOL=ON$", cache, re.M), \
            f"no {name}:BOOL=ON in CMakeCache.txt (found {name}={_cache_value(cache, name)})"
    enabled = _enabled_packages(stdout)
    for pkg in ("PYTHON", "MANYBODY", "SHOCK", "EXTRA-FIX", "EXTRA-COMPUTE", "MISC"):
        assert pkg in enabled, f"{pkg} not in the enabled packages {enabled}"
    # the libpython LAMMPS links and the interpreter install-python runs are one Python: ours
    found = re.findall(r"Found Python: (\S+) \(found version \"([^\"]+)\"\) found components: (.*)", stdout)
    ours = "%d.%d.%d" % sys.version_info[:3]
    assert found and all(version == ours for _, version, _ in found), \
        f"LAMMPS found Pythons {found}, expected {ours} ({sys.executable}) for all"
    include_dir = _cache_value(cache, "_Python_INCLUDE_DIR") or ""
    assert include_dir.startswith(sys.base_prefix), \
        f"LAMMPS links the Python headers {include_dir}, not those under {sys.base_prefix}"
    unknown = _options_unknown_to(lammps_source, preset_settings(PRESET))
    print(f"\nLAMMPS source {lammps_source.name} (LAMMPS_VERSION {lammps_version(lammps_source)!r}): "
          f"configured in {elapsed:.0f} s; enabled packages {';'.join(enabled)}; "
          f"Python {found}; preset variables this version does not know: {unknown or 'none'}")


def _mirror_without(src: Path, dst: Path, packages: tuple[str, ...], variables: tuple[str, ...]):
    """A copy of a LAMMPS tree (symlinks, plus a real cmake/) that lacks some packages and CMake
    variables -- what an older (no EXTRA-FIX/EXTRA-COMPUTE) or newer (no LAMMPS_EXCEPTIONS)
    LAMMPS looks like to the preset."""
    dst.mkdir()
    for entry in src.iterdir():
        if entry.name not in ("cmake", "src"):
            (dst / entry.name).symlink_to(entry)
    shutil.copytree(src / "cmake", dst / "cmake", symlinks=True)
    (dst / "src").mkdir()
    for entry in (src / "src").iterdir():
        if entry.name not in packages:
            (dst / "src" / entry.name).symlink_to(entry)
    for path in (dst / "cmake").rglob("*"):
        if not path.is_file() or "presets" in path.parts or \
                not (path.suffix == ".cmake" or path.name == "CMakeLists.txt"):
            continue
        text = original = path.read_text(errors="replace")
        for pkg in packages:  # one name a line in the STANDARD_PACKAGES list
            text = re.sub(rf"^[ \t]*{re.escape(pkg)}[ \t]*\n", "", text, flags=re.M)
        for var in variables:
            text = re.sub(rf"(?<![\w-]){re.escape(var)}(?![\w-])", f"LPFM_REMOVED_{var}", text)
        if text != original:
            path.write_text(text)


@pytest.mark.slow
def test_preset_is_harmless_where_packages_or_options_do_not_exist(lammps_source, tmp_path):
    """EXTRA-FIX/EXTRA-COMPUTE (absent before the 2021 reorganisation) and LAMMPS_EXCEPTIONS
    (removed in 2023) unknown to the source: the configure must still succeed with the rest on."""
    gone_packages, gone_variables = ("EXTRA-FIX", "EXTRA-COMPUTE"), ("LAMMPS_EXCEPTIONS",)
    mirror = tmp_path / "lammps"
    _mirror_without(lammps_source, mirror, gone_packages, gone_variables)
    assert sorted(_options_unknown_to(mirror, preset_settings(PRESET))) == \
        sorted(["PKG_EXTRA-FIX", "PKG_EXTRA-COMPUTE", "LAMMPS_EXCEPTIONS"])
    stdout, elapsed = _configure(mirror, tmp_path / "build")
    enabled = _enabled_packages(stdout)
    assert not set(gone_packages) & set(enabled), enabled
    for pkg in ("PYTHON", "MANYBODY", "SHOCK", "MISC"):
        assert pkg in enabled, f"{pkg} not in the enabled packages {enabled}"
    assert "-DLAMMPS_EXCEPTIONS" not in stdout and "LAMMPS_EXCEPTIONS;" not in stdout
    print(f"\nwithout {gone_packages + gone_variables}: configured in {elapsed:.0f} s, "
          f"enabled packages {';'.join(enabled)}")
