# Sanitizers: SSMKIT_SANITIZE="address;undefined" (a CMake list, or comma separated)
# instruments every C++ target, the CPU kernels and the binding, for CI. The CUDA
# sources are left alone (nvcc does not take -fsanitize).
#
# A sanitized extension needs the ASan runtime loaded before Python's own allocations:
# run Python with LD_PRELOAD="$(c++ -print-file-name=libasan.so) $(c++ -print-file-name=libstdc++.so)"
# (libstdc++ too, so that ASan can intercept C++ exceptions; see .ci/run).
set(SSMKIT_SANITIZE "" CACHE STRING "Sanitizers for the C++ code, e.g. address;undefined (empty: none)")

string(REPLACE ";" "," SSMKIT_SANITIZERS "${SSMKIT_SANITIZE}")
if(SSMKIT_SANITIZERS)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    message(FATAL_ERROR "ssmkit: SSMKIT_SANITIZE needs GCC or Clang, got ${CMAKE_CXX_COMPILER_ID}")
  endif()
  # -fno-sanitize-recover: every UBSan finding stops the process, so none goes unseen;
  # frame pointers and -g give readable stack traces.
  add_compile_options("$<$<COMPILE_LANGUAGE:CXX>:-fsanitize=${SSMKIT_SANITIZERS};-fno-sanitize-recover=all;-fno-omit-frame-pointer;-g>")
  add_link_options("$<$<LINK_LANGUAGE:CXX>:-fsanitize=${SSMKIT_SANITIZERS}>")
  message(STATUS "ssmkit: sanitizers ${SSMKIT_SANITIZERS} (load the ASan runtime first: LD_PRELOAD)")
else()
  message(STATUS "ssmkit: no sanitizers (SSMKIT_SANITIZE is empty)")
endif()
