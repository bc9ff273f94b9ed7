# Optional GPU variant: LAMMPS' KOKKOS package with the CUDA backend and OpenMP on the host.
# Use it *together with* lpfm.cmake, after it:
#
#   cmake -C <lpfm_insitu>/cmake/lpfm.cmake -C <lpfm_insitu>/cmake/lpfm-kokkos-cuda.cmake \
#         -D Kokkos_ARCH_AMPERE80=ON ../lammps/cmake
#
# Modelled on LAMMPS' presets kokkos-cuda.cmake / kokkos-openmp.cmake. KOKKOS only moves
# LAMMPS' own work (pair styles with a /kk version, neighbour lists, integration) to the GPU.
# The classifier does not need it: lpfm_insitu runs its model in torch, on the GPU whenever
# torch sees CUDA, with or without KOKKOS. fix python/invoke has no KOKKOS version, so on the
# steps it fires LAMMPS copies the atom data from the GPU to the host for the callback.
# Run with: mpirun -np N lmp -k on g <GPUs per node> -sf kk -in in.file

# KOKKOS package, and the Kokkos backends it is compiled for
set(PKG_KOKKOS ON CACHE BOOL "" FORCE)
set(Kokkos_ENABLE_SERIAL ON CACHE BOOL "" FORCE)   # as LAMMPS' presets: serial host fallback
set(Kokkos_ENABLE_CUDA   ON CACHE BOOL "" FORCE)   # device backend: NVIDIA GPUs
set(Kokkos_ENABLE_OPENMP ON CACHE BOOL "" FORCE)   # host backend: OpenMP threads

# compile LAMMPS with OpenMP (the host backend above needs it)
set(BUILD_OMP ON CACHE BOOL "" FORCE)

# GPU architecture: Kokkos compiles for exactly one, and this file does not choose it because
# it depends on your cluster. Add ONE of these to the cmake command line:
#   -D Kokkos_ARCH_VOLTA70=ON     V100
#   -D Kokkos_ARCH_AMPERE80=ON    A100 (A30)
#   -D Kokkos_ARCH_AMPERE86=ON    A40, RTX 30xx
#   -D Kokkos_ARCH_ADA89=ON       L40S, L4, RTX 40xx (recent Kokkos only)
#   -D Kokkos_ARCH_HOPPER90=ON    H100, GH200 (recent Kokkos only)
# (nvidia-smi --query-gpu=name,compute_cap --format=csv on a GPU node tells which.) Optionally
# also a host architecture, e.g. -D Kokkos_ARCH_ZEN3=ON or -D Kokkos_ARCH_SKX=ON. Without a GPU
# arch, Kokkos tries to detect the GPU of the machine you configure on, which fails or guesses
# wrong on a login node without GPUs. LAMMPS' own kokkos-cuda.cmake forces a conservative
# default (MAXWELL50/PASCAL60); with that preset you would have to switch it off again.

# Kokkos bundled with LAMMPS compiles CUDA through its nvcc_wrapper as the C++ compiler (as in
# LAMMPS' kokkos-cuda.cmake). Only on a fresh build directory, only if that wrapper exists and
# you did not choose a compiler yourself; with an external Kokkos (-D EXTERNAL_KOKKOS=ON) or
# LAMMPS' kokkos-cuda-nowrapper.cmake route nothing is set here. nvcc_wrapper calls g++ unless
# NVCC_WRAPPER_DEFAULT_COMPILER says otherwise; MPI is found by LAMMPS (find_package(MPI)),
# so use the same MPI module as for lpfm.cmake.
get_filename_component(LPFM_NVCC_WRAPPER
                       "${CMAKE_CURRENT_SOURCE_DIR}/../lib/kokkos/bin/nvcc_wrapper" ABSOLUTE)
if(NOT CMAKE_CXX_COMPILER AND NOT EXTERNAL_KOKKOS AND EXISTS "${LPFM_NVCC_WRAPPER}")
  set(CMAKE_CXX_COMPILER "${LPFM_NVCC_WRAPPER}" CACHE FILEPATH "")
endif()
unset(LPFM_NVCC_WRAPPER)

# if KSPACE is also enabled (not needed by lpfm_insitu), do its FFTs with cuFFT on the GPU
set(FFT_KOKKOS "CUFFT" CACHE STRING "")
