# CUDA: SSMKIT_CUDA=AUTO (default) builds the CUDA sources when a CUDA compiler is
# found, ON requires one, OFF never looks.
set(SSMKIT_CUDA AUTO CACHE STRING "Build the CUDA kernels: AUTO, ON or OFF")
set_property(CACHE SSMKIT_CUDA PROPERTY STRINGS AUTO ON OFF)
# Real code for Ampere (sm_80) and Hopper (sm_90), PTX of the newest for later GPUs.
set(SSMKIT_CUDA_ARCHITECTURES "80-real;90-real;90-virtual" CACHE STRING
    "CUDA architectures (CMake syntax), e.g. 80-real;90-real;90-virtual")

set(SSMKIT_WITH_CUDA OFF)
string(TOUPPER "${SSMKIT_CUDA}" _ssmkit_cuda)
if(_ssmkit_cuda STREQUAL "OFF")
  message(STATUS "ssmkit: CUDA disabled (SSMKIT_CUDA=OFF): CPU-only build")
else()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    set(CMAKE_CUDA_ARCHITECTURES "${SSMKIT_CUDA_ARCHITECTURES}")
    enable_language(CUDA)
    find_package(CUDAToolkit REQUIRED)
    set(SSMKIT_WITH_CUDA ON)
    message(STATUS "ssmkit: CUDA ${CMAKE_CUDA_COMPILER_VERSION} found at ${CMAKE_CUDA_COMPILER}: "
                   "building CUDA kernels for ${CMAKE_CUDA_ARCHITECTURES}")
  elseif(_ssmkit_cuda STREQUAL "ON")
    message(FATAL_ERROR "ssmkit: SSMKIT_CUDA=ON but no CUDA compiler was found "
                        "(set CUDACXX or put nvcc on PATH)")
  else()
    message(STATUS "ssmkit: no CUDA compiler found: CPU-only build")
  endif()
endif()

function(ssmkit_add_cuda_sources target)
  target_sources(${target} PRIVATE ${ARGN})
  set_target_properties(${target} PROPERTIES CUDA_ARCHITECTURES "${CMAKE_CUDA_ARCHITECTURES}"
                                             CUDA_STANDARD 17 CUDA_STANDARD_REQUIRED ON)
  # Static runtime: the wheel needs only the driver at run time, no libcudart.
  target_link_libraries(${target} PUBLIC CUDA::cudart_static)
  string(REPLACE ";" "," archs "${CMAKE_CUDA_ARCHITECTURES}")
  # The CUDA kernels' namespace for the code they share with the CPU's (host_device.h).
  target_compile_definitions(${target} PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:SSMKIT_ISA=cuda>)
  target_compile_definitions(${target} PUBLIC SSMKIT_WITH_CUDA=1
                             SSMKIT_CUDA_ARCHS="${archs}"
                             SSMKIT_CUDA_VERSION="${CMAKE_CUDA_COMPILER_VERSION}")
endfunction()
