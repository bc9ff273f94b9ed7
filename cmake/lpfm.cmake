# LAMMPS CMake preset for lpfm_insitu: what running the phase classifier inside LAMMPS needs.
#
#   cmake -C <lpfm_insitu>/cmake/lpfm.cmake [-D Python_EXECUTABLE=$(which python3)] ../lammps/cmake
#
# Options given with -D *after* -C override this file; see cmake/README.md for the full build.
# Names follow LAMMPS' own presets (lammps/cmake/presets/*.cmake). Setting a variable that a
# given LAMMPS version does not know is harmless: it only sits in CMakeCache.txt (LAMMPS turns
# packages on by looping over its own package list).

# --- packages --------------------------------------------------------------------------------

# PYTHON: the `python` command and `fix python/invoke`, through which LAMMPS calls
# lpfm_insitu on each rank every N steps (the in-situ mode). Without it only the
# Python-driven mode works. Needs BUILD_SHARED_LIBS (below) and Python headers/libpython.
set(PKG_PYTHON ON CACHE BOOL "" FORCE)

# MANYBODY: many-body potentials of the examples and demos (pair eam, eam/alloy, eam/fs,
# meam/spline, tersoff, sw).
set(PKG_MANYBODY ON CACHE BOOL "" FORCE)

# SHOCK: the shock demo (fix wall/piston; fix msst and fix nphug for steady shocks).
set(PKG_SHOCK ON CACHE BOOL "" FORCE)

# EXTRA-FIX: fixes used next to the classifier in shock/irradiation runs (fix ttm,
# fix electron/stopping, fix temp/csvr, fix viscosity). EXTRA-FIX and EXTRA-COMPUTE were
# split out of MISC/USER-MISC in the 2021 package reorganisation (present in 29Sep2021);
# older LAMMPS simply ignores these two lines, and MISC below carries those styles there.
set(PKG_EXTRA-FIX ON CACHE BOOL "" FORCE)

# EXTRA-COMPUTE: classical per-atom structure descriptors to compare the classifier with
# (compute ackland/atom, cnp/atom, entropy/atom, hexorder/atom).
set(PKG_EXTRA-COMPUTE ON CACHE BOOL "" FORCE)

# MISC: small, no external library; in LAMMPS before the 2021 reorganisation it holds
# fix ttm, fix viscosity, compute ti and others that later moved to EXTRA-FIX/-COMPUTE.
set(PKG_MISC ON CACHE BOOL "" FORCE)

# --- library, MPI, errors --------------------------------------------------------------------

# liblammps.so: the LAMMPS Python module (ctypes) loads it; a callback of fix python/invoke
# wraps the running LAMMPS with lammps(ptr=...), which only works when `lmp` and the module
# share this one library; install-python does nothing without it. Also lets `lpfm doctor`
# see (ldd) which MPI library LAMMPS is linked against.
set(BUILD_SHARED_LIBS ON CACHE BOOL "" FORCE)

# MPI: the classifier gathers ghost-atom neighbourhoods across ranks with mpi4py, which
# must share LAMMPS' MPI library (build mpi4py with that MPI's mpicc, see README.md).
set(BUILD_MPI ON CACHE BOOL "" FORCE)

# C++ exceptions: a LAMMPS error (including "fix python/invoke ... method failed" when the
# classifier callback raises) becomes a Python exception in the driving Python script
# instead of exit() of the whole process. The variable exists (default OFF) up to at least
# LAMMPS 28Mar2023; lammps/lammps PR #3736 (2023) removed it and made exceptions always on,
# so on later versions this line has no effect.
set(LAMMPS_EXCEPTIONS ON CACHE BOOL "" FORCE)

# --- Python: which interpreter LAMMPS embeds and install-python installs into ------------------
#
# LAMMPS looks Python up twice, separately: PKG_PYTHON links the embedded libpython
# (FindPython "Development" only) and the install-python target runs an interpreter
# (FindPython "Interpreter"). Left alone they can find two different Pythons: configuring
# LAMMPS 29Sep2021 here linked /usr's libpython3.11 (3.11.2) but would have installed the
# module with pyenv's python3 (3.11.7), and Development ignores Python_EXECUTABLE.
# So lpfm.cmake also registers itself as CMAKE_PROJECT_lammps_INCLUDE: the part below the
# `return()` runs inside LAMMPS' project() call, after every -D option, and points both lookups
# at one installation: Python_EXECUTABLE if given (-D Python_EXECUTABLE=/path/to/python, in any
# order with -C; PYTHON_EXECUTABLE is accepted too), else the first python3 on PATH (activate
# the conda env / venv / module first). That Python needs its headers and a shared libpython
# (distribution, conda and module Pythons have them; pyenv needs --enable-shared).
#
# Installing the LAMMPS Python module (the lammps package plus a copy of liblammps.so) into that
# Python after the build:
#   cmake --build . --target install-python   (any generator; `make install-python` with the
#                                               default Makefile generator, same target)
# LAMMPS 29Sep2021 runs python/install.py (copies into site-packages, or the user site when
# that is not writable; uses distutils, so not with Python >= 3.12); newer versions build a
# wheel and pip-install it; very old CMake builds only copied lammps.py in `make install`.
# The traditional make build (lammps/src, no CMake) has the target too: `make install-python`.
if(NOT DEFINED PROJECT_NAME)
  # read as `cmake -C` preset (before project()): register the second part and stop here
  set(CMAKE_PROJECT_lammps_INCLUDE "${CMAKE_CURRENT_LIST_FILE}" CACHE FILEPATH
      "lpfm.cmake: make LAMMPS' Python lookups agree (runs at project(lammps))")
  return()
endif()

# included by project(lammps): normal variables, visible to LAMMPS' find_package(Python) calls
if(NOT Python_EXECUTABLE AND PYTHON_EXECUTABLE)
  set(Python_EXECUTABLE "${PYTHON_EXECUTABLE}" CACHE FILEPATH "Python for LAMMPS (lpfm.cmake)")
endif()
if(NOT Python_EXECUTABLE)
  find_program(LPFM_PYTHON3 NAMES python3 python)
  if(LPFM_PYTHON3)
    set(Python_EXECUTABLE "${LPFM_PYTHON3}" CACHE FILEPATH "Python for LAMMPS (lpfm.cmake)")
  endif()
  unset(LPFM_PYTHON3 CACHE)
endif()
if(Python_EXECUTABLE AND NOT Python_ROOT_DIR)
  execute_process(COMMAND "${Python_EXECUTABLE}" -c "import sys; print(sys.base_prefix)"
                  OUTPUT_VARIABLE LPFM_PYTHON_ROOT OUTPUT_STRIP_TRAILING_WHITESPACE
                  RESULT_VARIABLE LPFM_PYTHON_RC)
  if(LPFM_PYTHON_RC EQUAL 0 AND IS_DIRECTORY "${LPFM_PYTHON_ROOT}")
    set(Python_ROOT_DIR "${LPFM_PYTHON_ROOT}")   # where Development looks first ...
    set(Python_FIND_STRATEGY LOCATION)            # ... and takes what it finds there
  endif()
  message(STATUS "lpfm.cmake: Python_EXECUTABLE=${Python_EXECUTABLE} (root ${LPFM_PYTHON_ROOT})")
endif()
