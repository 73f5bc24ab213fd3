# The live dashboard (docs/dashboard.md). With PARAFORK_DASHBOARD on, its server links Debian's
# cpp-httplib (by name, so the installed package passes -lcpp-httplib on to consumers with
# nothing to find), writes JSON with nlohmann-json (headers only, used by our sources alone),
# and serves a page built here from web/dashboard with uPlot from the npm registry (pinned by
# package-lock.json), inlined. Off, src/dashboard/off.cpp stands in: no server, no dependency.
set(PARAFORK_DASHBOARD_DIR ${PROJECT_SOURCE_DIR}/src/dashboard)
# The counters are the engines' in both builds; the pkg-config file lists what the library links.
target_sources(parafork PRIVATE ${PARAFORK_DASHBOARD_DIR}/region.cpp ${PARAFORK_DASHBOARD_DIR}/notes.cpp)
set(PARAFORK_PC_EXTRA_LIBS "")
if(NOT PARAFORK_DASHBOARD)
  target_sources(parafork PRIVATE ${PARAFORK_DASHBOARD_DIR}/off.cpp)
  return()
endif()

find_package(PkgConfig REQUIRED)
pkg_check_modules(PARAFORK_HTTPLIB QUIET cpp-httplib)
find_path(PARAFORK_NLOHMANN_JSON_DIR nlohmann/json.hpp)
find_program(PARAFORK_NODE node)
find_program(PARAFORK_NPM npm)
if(NOT PARAFORK_HTTPLIB_FOUND OR NOT PARAFORK_NLOHMANN_JSON_DIR OR NOT PARAFORK_NODE OR NOT PARAFORK_NPM)
  message(FATAL_ERROR "PARAFORK_DASHBOARD is on but cpp-httplib, nlohmann-json, node or npm is "
    "missing (scripts/install-deps installs them; -DPARAFORK_DASHBOARD=OFF builds without)")
endif()
target_sources(parafork PRIVATE ${PARAFORK_DASHBOARD_DIR}/hub.cpp ${PARAFORK_DASHBOARD_DIR}/server.cpp
  ${PARAFORK_DASHBOARD_DIR}/render.cpp)
set(PARAFORK_PC_EXTRA_LIBS " -lcpp-httplib")

set(PARAFORK_WEB_DIR ${PROJECT_SOURCE_DIR}/web/dashboard)
set(web_bin ${PROJECT_BINARY_DIR}/web)
# The library needs uPlot only (no dev packages): installed into the build folder, not the
# source tree, again only when the lock file changes.
add_custom_command(OUTPUT ${web_bin}/node_modules/.package-lock.json
  COMMAND ${CMAKE_COMMAND} -E make_directory ${web_bin}
  COMMAND ${CMAKE_COMMAND} -E copy ${PARAFORK_WEB_DIR}/package.json ${PARAFORK_WEB_DIR}/package-lock.json ${web_bin}
  COMMAND ${PARAFORK_NPM} ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error
  WORKING_DIRECTORY ${web_bin}
  DEPENDS ${PARAFORK_WEB_DIR}/package.json ${PARAFORK_WEB_DIR}/package-lock.json
  COMMENT "npm ci: the dashboard page's uPlot")
add_custom_command(OUTPUT ${web_bin}/dashboard_page.cpp ${web_bin}/dashboard.html
  COMMAND ${CMAKE_COMMAND} -E env PARAFORK_NODE_MODULES=${web_bin}/node_modules
          ${PARAFORK_NODE} ${PARAFORK_WEB_DIR}/build.mjs ${web_bin}/dashboard_page.cpp ${web_bin}/dashboard.html
  DEPENDS ${PARAFORK_WEB_DIR}/build.mjs ${PARAFORK_WEB_DIR}/index.html ${PARAFORK_WEB_DIR}/style.css
          ${PARAFORK_WEB_DIR}/app.js ${web_bin}/node_modules/.package-lock.json
  COMMENT "The dashboard page")
target_sources(parafork PRIVATE ${web_bin}/dashboard_page.cpp)

set_source_files_properties(${PARAFORK_DASHBOARD_DIR}/server.cpp PROPERTIES
  COMPILE_OPTIONS "${PARAFORK_HTTPLIB_CFLAGS_OTHER}"
  INCLUDE_DIRECTORIES "${PARAFORK_HTTPLIB_INCLUDE_DIRS}")
set_source_files_properties(${PARAFORK_DASHBOARD_DIR}/render.cpp PROPERTIES
  INCLUDE_DIRECTORIES "${PARAFORK_NLOHMANN_JSON_DIR}")
target_link_libraries(parafork PRIVATE cpp-httplib)
