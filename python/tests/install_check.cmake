# cmake --install's python component into a fresh prefix, then the package is imported from
# there (not from the build tree) and runs a map. -DBUILD= -DPREFIX= -DPY= -DSUBDIR=
file(REMOVE_RECURSE ${PREFIX})
execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD} --prefix ${PREFIX} --component python
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cmake --install failed: ${rc}")
endif()
execute_process(
  COMMAND ${CMAKE_COMMAND} -E env PYTHONPATH=${PREFIX}/${SUBDIR} PYTHONDONTWRITEBYTECODE=1
          ${PY} -c "import parafork as pf, sys; assert pf.__file__.startswith(sys.argv[1]), pf.__file__; k = 2; assert pf.map(lambda x: x * k, range(5)) == [0, 2, 4, 6, 8]; print('installed', pf.__file__)" ${PREFIX}
  WORKING_DIRECTORY ${PREFIX} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the installed package does not work: ${rc}")
endif()
file(REMOVE_RECURSE ${PREFIX})
