# cmake --install: public headers, libcoblk.a, the tools, the conformance kit,
# a CMake package (find_package(coblk): coblk::coblk, coblk::plugin,
# coblk::coblk-conformance) and coblk.pc.
include(CMakePackageConfigHelpers)

# The public API: the embedding API (block_backend.h, block_graph.h), the
# driver interface (block_driver.h, block_node.h, plugin.h) and what they
# include. Everything else (drivers/*, io/aio_engine.h, io/alignment.h,
# tools/*) is private and may change at any time.
set(COBLK_PUBLIC_HEADERS
  block/block_backend.h block/block_job.h block/block_driver.h block/block_graph.h block/block_node.h
  block/block_types.h block/options.h block/plugin.h
  coroutine/co_mutex.h coroutine/co_queue.h coroutine/co_rwlock.h coroutine/executor.h
  coroutine/sleep.h coroutine/spawn.h coroutine/sync_wait.h coroutine/task.h
  coroutine/when_all.h
  io/aligned_buffer.h io/event_loop.h io/io_vector.h io/thread_pool.h
  util/status.h)
foreach(h ${COBLK_PUBLIC_HEADERS})
  get_filename_component(hdir ${h} DIRECTORY)
  install(FILES ${PROJECT_SOURCE_DIR}/${h}
          DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/coblk/${hdir} COMPONENT devel)
endforeach()

if(TARGET coblk-img)
  install(TARGETS coblk-img coblk-io RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT tools)
endif()

set(COBLK_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/coblk)
install(TARGETS coblk coblk_static coblk_plugin EXPORT coblkTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT devel)
install(EXPORT coblkTargets NAMESPACE coblk:: DESTINATION ${COBLK_CMAKE_DIR} COMPONENT devel)

configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/coblkConfig.cmake.in
  ${PROJECT_BINARY_DIR}/coblkConfig.cmake INSTALL_DESTINATION ${COBLK_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/coblkConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/coblkConfig.cmake
              ${PROJECT_BINARY_DIR}/coblkConfigVersion.cmake
              ${PROJECT_SOURCE_DIR}/cmake/coblkHelpers.cmake
        DESTINATION ${COBLK_CMAKE_DIR} COMPONENT devel)

# pkg-config: the archive is linked whole (built-in driver registrations) and
# the program exports its symbols (-rdynamic) for plugins.
set(COBLK_PC_EXTRA_LIBS "")
foreach(l ${COBLK_EXTRA_LINK_LIBS})
  if(l MATCHES "^PkgConfig::")
    continue()  # in Requires (COBLK_PKG_MODULES)
  elseif(IS_ABSOLUTE "${l}")
    string(APPEND COBLK_PC_EXTRA_LIBS " ${l}")
  else()
    string(APPEND COBLK_PC_EXTRA_LIBS " -l${l}")
  endif()
endforeach()
set(CMAKE_DL_LIBS_FLAG "")
if(CMAKE_DL_LIBS)
  set(CMAKE_DL_LIBS_FLAG "-l${CMAKE_DL_LIBS}")
endif()
# A static library linked whole: its pkg-config dependencies are public
# (Requires), so that `pkg-config --libs coblk` links them.
list(JOIN COBLK_PKG_MODULES ", " COBLK_PC_REQUIRES)
configure_file(${PROJECT_SOURCE_DIR}/cmake/coblk.pc.in ${PROJECT_BINARY_DIR}/coblk.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/coblk.pc
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT devel)
