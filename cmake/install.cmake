# Install rules: the library, its headers, a CMake package (find_package(parafork CONFIG) ->
# parafork::parafork; COMPONENTS mpi -> parafork::mpi when it was built) and a pkg-config file. Included by the top-level CMakeLists when
# PARAFORK_INSTALL is on (the default when parafork is the top-level project).
include(CMakePackageConfigHelpers)

set(PARAFORK_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/parafork
    CACHE STRING "Where parafork-config.cmake is installed, relative to the prefix")
mark_as_advanced(PARAFORK_CMAKE_DIR)

install(TARGETS parafork EXPORT parafork-targets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
# Header by header (install(DIRECTORY) would also make folders that hold no header yet).
file(GLOB_RECURSE parafork_headers CONFIGURE_DEPENDS RELATIVE ${PROJECT_SOURCE_DIR}/include
  ${PROJECT_SOURCE_DIR}/include/parafork/*.hpp)
if(NOT TARGET parafork_mpi)
  list(FILTER parafork_headers EXCLUDE REGEX "^parafork/mpi/")  # no library behind them
endif()
foreach(header ${parafork_headers})
  get_filename_component(dir ${header} DIRECTORY)
  install(FILES ${PROJECT_SOURCE_DIR}/include/${header} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/${dir})
endforeach()

install(EXPORT parafork-targets NAMESPACE parafork:: DESTINATION ${PARAFORK_CMAKE_DIR})
# parafork::mpi is the package's optional component `mpi` (find_package(parafork COMPONENTS
# mpi)): its own export set, so a copy built without MPI installs a package that simply lacks it
# and the core package never asks its users for MPI.
if(TARGET parafork_mpi)
  install(TARGETS parafork_mpi EXPORT parafork-mpi-targets
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
    INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
  install(EXPORT parafork-mpi-targets NAMESPACE parafork:: DESTINATION ${PARAFORK_CMAKE_DIR})
endif()
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/parafork-config.cmake.in
  ${PROJECT_BINARY_DIR}/parafork-config.cmake
  INSTALL_DESTINATION ${PARAFORK_CMAKE_DIR})
# Before 1.0 a minor release may change the API, so only the same major.minor is compatible.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/parafork-config-version.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/parafork-config.cmake
  ${PROJECT_BINARY_DIR}/parafork-config-version.cmake
  DESTINATION ${PARAFORK_CMAKE_DIR})

# pkg-config: prefix is the one given at install time (cmake --install --prefix P), not at
# configure time, so a copy installed anywhere describes itself. Paths under ${prefix}.
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}" OR IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(PARAFORK_PC_LIBDIR "${CMAKE_INSTALL_FULL_LIBDIR}")
  set(PARAFORK_PC_INCLUDEDIR "${CMAKE_INSTALL_FULL_INCLUDEDIR}")
else()
  set(PARAFORK_PC_LIBDIR "\${prefix}/${CMAKE_INSTALL_LIBDIR}")
  set(PARAFORK_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()
set(PARAFORK_PC_PREFIX "@PARAFORK_PC_PREFIX@")  # kept for the install-time pass below
configure_file(${CMAKE_CURRENT_LIST_DIR}/parafork.pc.in ${PROJECT_BINARY_DIR}/parafork.pc.in @ONLY)
install(CODE "
  set(PARAFORK_PC_PREFIX \"\${CMAKE_INSTALL_PREFIX}\")
  configure_file(\"${PROJECT_BINARY_DIR}/parafork.pc.in\" \"${PROJECT_BINARY_DIR}/parafork.pc\" @ONLY)
")
install(FILES ${PROJECT_BINARY_DIR}/parafork.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
