# cmake -DPREFIX=<installed parafork> -DCXX=<compiler> -DSOURCE=<main.cpp> -DOUT=<exe>
#       [-DEXTRA_FLAGS=<;-list>] [-DPKG_CONFIG=<program>] -P pkg_config.cmake
# Builds the consumer with nothing but the compiler and `pkg-config --cflags --libs parafork`,
# as a Makefile user would, then runs it.
if(NOT PKG_CONFIG)
  find_program(PKG_CONFIG pkg-config)
endif()
if(NOT PKG_CONFIG)
  message(FATAL_ERROR "pkg-config not found (scripts/install-deps installs it)")
endif()

file(GLOB_RECURSE pc_files "${PREFIX}/*/parafork.pc")
list(LENGTH pc_files n)
if(NOT n EQUAL 1)
  message(FATAL_ERROR "expected one installed parafork.pc under ${PREFIX}, found: ${pc_files}")
endif()
get_filename_component(pc_dir "${pc_files}" DIRECTORY)
set(ENV{PKG_CONFIG_PATH} "${pc_dir}")

function(pkg_query out)
  execute_process(COMMAND "${PKG_CONFIG}" ${ARGN} parafork OUTPUT_VARIABLE text
    RESULT_VARIABLE rc OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "pkg-config ${ARGN} parafork failed (${rc})")
  endif()
  set(${out} "${text}" PARENT_SCOPE)
endfunction()

pkg_query(version --modversion)
if(EXPECTED_VERSION AND NOT version STREQUAL EXPECTED_VERSION)
  message(FATAL_ERROR "pkg-config says parafork ${version}, expected ${EXPECTED_VERSION}")
endif()
pkg_query(cflags --cflags)
pkg_query(libs --libs)
pkg_query(libdir --variable=libdir)  # for the rpath a shared build needs in a private prefix
message(STATUS "parafork ${version}: cflags '${cflags}' libs '${libs}'")
file(REAL_PATH "${PREFIX}" real_prefix)
if(NOT cflags MATCHES "-I${PREFIX}" AND NOT cflags MATCHES "-I${real_prefix}")
  message(FATAL_ERROR "the cflags do not point into ${PREFIX}: ${cflags}")
endif()
# The headers need C++20: the flags pkg-config hands out must say so, the consumer adds nothing.
if(NOT cflags MATCHES "-std=c\\+\\+20")
  message(FATAL_ERROR "the cflags do not select C++20: ${cflags}")
endif()
separate_arguments(cflags UNIX_COMMAND "${cflags}")
separate_arguments(libs UNIX_COMMAND "${libs}")

get_filename_component(out_dir "${OUT}" DIRECTORY)
file(MAKE_DIRECTORY "${out_dir}")
execute_process(COMMAND "${CXX}" -Wall -Wextra -Werror ${EXTRA_FLAGS} ${cflags}
  "${SOURCE}" -o "${OUT}" ${libs} "-Wl,-rpath,${libdir}" ${EXTRA_FLAGS} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "compiling the consumer with pkg-config flags failed (${rc})")
endif()
execute_process(COMMAND "${OUT}" RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the consumer built with pkg-config failed (${rc})")
endif()
