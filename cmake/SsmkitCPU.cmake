# CPU kernels: the family sources compiled once per instruction set, picked at run time.
#
# The sources (csrc/cpu/cauchy.cpp, vandermonde.cpp, step.cpp, engine.cpp, fft_conv.cpp, probe.cpp) are built
# into one object library per ISA with that ISA's flags and SSMKIT_ISA set to its name
# (the code lives in a namespace of that name, so the copies never collide).
# csrc/cpu/dispatch.cpp, built with baseline flags, asks the CPU what it supports and
# calls the widest copy.

find_package(OpenMP COMPONENTS CXX)
if(OpenMP_CXX_FOUND)
  message(STATUS "ssmkit: OpenMP ${OpenMP_CXX_VERSION}: CPU kernels are multithreaded")
else()
  message(STATUS "ssmkit: OpenMP not found: CPU kernels run on one thread")
endif()

if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64|i.86)$")
  set(SSMKIT_CPU_ISAS avx512 avx2 baseline)
else()
  set(SSMKIT_CPU_ISAS baseline)
endif()
message(STATUS "ssmkit: CPU ${CMAKE_SYSTEM_PROCESSOR}: kernels built for ${SSMKIT_CPU_ISAS}")

set(SSMKIT_ISA_FLAGS_avx512 -mavx512f -mavx512dq -mavx512vl -mavx2 -mfma)
set(SSMKIT_ISA_FLAGS_avx2 -mavx2 -mfma)
set(SSMKIT_ISA_FLAGS_baseline "")

function(ssmkit_add_cpu_kernels target)
  foreach(isa IN LISTS SSMKIT_CPU_ISAS)
    set(obj ${target}_${isa})
    add_library(${obj} OBJECT ${ARGN})
    target_include_directories(${obj} PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/csrc/include)
    target_compile_definitions(${obj} PRIVATE SSMKIT_ISA=${isa})
    # fp-contract=fast lets the compiler fuse a*b+c into FMA (more accurate, not less);
    # no -ffast-math: NaN and Inf must propagate as the reference does.
    target_compile_options(${obj} PRIVATE ${SSMKIT_ISA_FLAGS_${isa}} -O3 -ffp-contract=fast
                           -fno-math-errno -fno-trapping-math)
    if(OpenMP_CXX_FOUND)
      target_link_libraries(${obj} PRIVATE OpenMP::OpenMP_CXX)
    endif()
    target_sources(${target} PRIVATE $<TARGET_OBJECTS:${obj}>)
    string(TOUPPER ${isa} ISA)
    target_compile_definitions(${target} PRIVATE SSMKIT_HAVE_${ISA}=1)
  endforeach()
  if(OpenMP_CXX_FOUND)
    target_link_libraries(${target} PUBLIC OpenMP::OpenMP_CXX)
  endif()
endfunction()
