# PARAFORK_SANITIZE: a comma list for -fsanitize= ("address,undefined", "thread", ...), applied
# to everything this project builds (library, tests, examples, tools, fuzzers). UBSan findings
# abort instead of printing and going on, so a test cannot pass with undefined behaviour.
set(PARAFORK_SANITIZE "" CACHE STRING "Build with -fsanitize=<list> (e.g. address,undefined or thread)")

if(PARAFORK_SANITIZE)
  set(PARAFORK_SANITIZER_FLAGS -fsanitize=${PARAFORK_SANITIZE} -fno-omit-frame-pointer)
  if(PARAFORK_SANITIZE MATCHES "undefined")
    # vptr checks are left out: on a cache miss the runtime probes memory through a pipe of its
    # own, so a test that exhausts descriptors on purpose (RLIMIT_NOFILE) gets a false report.
    list(APPEND PARAFORK_SANITIZER_FLAGS -fno-sanitize-recover=undefined -fno-sanitize=vptr)
  endif()
  add_compile_options(${PARAFORK_SANITIZER_FLAGS})
  add_link_options(-fsanitize=${PARAFORK_SANITIZE})
  message(STATUS "parafork: sanitizers ${PARAFORK_SANITIZE}")
endif()

# libFuzzer targets need clang; the library gets coverage instrumentation so the fuzzers see
# into frames.cpp and friends.
if(PARAFORK_BUILD_FUZZERS)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "PARAFORK_BUILD_FUZZERS needs clang (configure with CMAKE_CXX_COMPILER=clang++)")
  endif()
  add_compile_options(-fsanitize=fuzzer-no-link)
endif()
