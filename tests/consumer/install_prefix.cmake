# cmake -DBUILD_DIR=<parafork build> -DPREFIX=<dir> [-DCONFIG=<cfg>] -P install_prefix.cmake
# Installs a fresh copy of parafork into PREFIX for the consumer tests.
file(REMOVE_RECURSE "${PREFIX}")
set(config_args)
if(CONFIG)
  set(config_args --config "${CONFIG}")
endif()
execute_process(COMMAND "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${PREFIX}" ${config_args}
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cmake --install failed (${rc})")
endif()
