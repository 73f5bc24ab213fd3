# Packaging is tested like code: the program in tests/consumer is built against parafork three
# ways (label `consumer`). One install into a scratch prefix is shared (a ctest fixture).
set(consumer_src ${PROJECT_SOURCE_DIR}/tests/consumer)
set(consumer_bin ${PROJECT_BINARY_DIR}/consumer)
set(consumer_prefix ${consumer_bin}/prefix)

# The consumers are plain unoptimized builds with our compiler (quick to compile). A program
# that links a sanitized libparafork.a needs the sanitizer runtimes, so the link gets our
# -fsanitize= list; the add_subdirectory consumer builds its own, uninstrumented, library.
set(consumer_link_flags "")
if(PARAFORK_SANITIZE)
  set(consumer_link_flags "-fsanitize=${PARAFORK_SANITIZE}")
endif()
set(consumer_cmake_args -DCMAKE_CXX_COMPILER=${CMAKE_CXX_COMPILER} -DCMAKE_BUILD_TYPE=)

function(parafork_consumer_test name)
  add_test(NAME consumer.${name} COMMAND ${CMAKE_CTEST_COMMAND}
    --build-and-test ${consumer_src} ${consumer_bin}/${name}
    --build-generator ${CMAKE_GENERATOR}
    --build-makeprogram ${CMAKE_MAKE_PROGRAM}
    --build-options ${consumer_cmake_args} ${ARGN}
    --test-command parafork_consumer)
  set_tests_properties(consumer.${name} PROPERTIES LABELS consumer TIMEOUT 600
    ENVIRONMENT PARAFORK_JOBS=3)
endfunction()

if(PARAFORK_BUILD_FUZZERS)
  # Fuzzer-instrumented code needs libFuzzer's runtime in every program; not a user setup.
  return()
endif()

parafork_consumer_test(add_subdirectory
  -DPARAFORK_CONSUMER_MODE=subdirectory -DPARAFORK_SOURCE_DIR=${PROJECT_SOURCE_DIR})

if(PARAFORK_INSTALL)
  add_test(NAME consumer.install COMMAND ${CMAKE_COMMAND}
    -DBUILD_DIR=${PROJECT_BINARY_DIR} -DPREFIX=${consumer_prefix} -DCONFIG=$<CONFIG>
    -P ${consumer_src}/install_prefix.cmake)
  set_tests_properties(consumer.install PROPERTIES LABELS consumer TIMEOUT 120
    FIXTURES_SETUP parafork_installed)

  parafork_consumer_test(find_package "-DCMAKE_EXE_LINKER_FLAGS=${consumer_link_flags}"
    -DPARAFORK_CONSUMER_MODE=find_package -DCMAKE_PREFIX_PATH=${consumer_prefix}
    -DPARAFORK_EXPECTED_PREFIX=${consumer_prefix} -DPARAFORK_EXPECTED_VERSION=${PROJECT_VERSION})
  set_tests_properties(consumer.find_package PROPERTIES FIXTURES_REQUIRED parafork_installed)

  if(TARGET parafork_mpi)
    # The MPI component of the installed package, run on 2 ranks (segments not in /dev/shm).
    file(MAKE_DIRECTORY ${consumer_bin}/mpi_segments)
    add_test(NAME consumer.find_package_mpi COMMAND ${CMAKE_CTEST_COMMAND}
      --build-and-test ${consumer_src} ${consumer_bin}/find_package_mpi
      --build-generator ${CMAKE_GENERATOR}
      --build-makeprogram ${CMAKE_MAKE_PROGRAM}
      --build-options ${consumer_cmake_args} "-DCMAKE_EXE_LINKER_FLAGS=${consumer_link_flags}"
        -DCMAKE_PREFIX_PATH=${consumer_prefix} -DPARAFORK_EXPECTED_PREFIX=${consumer_prefix}
        -DPARAFORK_EXPECTED_VERSION=${PROJECT_VERSION} -DPARAFORK_CONSUMER_MPI=ON
      --test-command timeout -k 5 120 ${MPIEXEC_EXECUTABLE} --oversubscribe --allow-run-as-root
        -np 2 ${consumer_bin}/find_package_mpi/parafork_consumer_mpi)
    set_tests_properties(consumer.find_package_mpi PROPERTIES LABELS "consumer;mpi" TIMEOUT 600
      FIXTURES_REQUIRED parafork_installed ENVIRONMENT
      "PARAFORK_JOBS=2;OMPI_MCA_btl=self,vader,tcp;OMPI_MCA_btl_vader_single_copy_mechanism=none;OMPI_MCA_btl_vader_backing_directory=${consumer_bin}/mpi_segments")
  endif()

  find_program(PARAFORK_PKG_CONFIG pkg-config)
  add_test(NAME consumer.pkg_config COMMAND ${CMAKE_COMMAND}
    -DPREFIX=${consumer_prefix} -DCXX=${CMAKE_CXX_COMPILER} -DSOURCE=${consumer_src}/main.cpp
    -DOUT=${consumer_bin}/pkg_config/parafork_consumer -DEXPECTED_VERSION=${PROJECT_VERSION}
    "-DEXTRA_FLAGS=${consumer_link_flags}" -DPKG_CONFIG=${PARAFORK_PKG_CONFIG}
    -P ${consumer_src}/pkg_config.cmake)
  set_tests_properties(consumer.pkg_config PROPERTIES LABELS consumer TIMEOUT 600
    FIXTURES_REQUIRED parafork_installed ENVIRONMENT PARAFORK_JOBS=3)
endif()
