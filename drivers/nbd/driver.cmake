# The nbd driver's build needs, included by the top-level driver loop before
# the driver's library exists. libnbd (Debian: libnbd-dev) is the client
# library; without it the driver is left out. The nbdkit plugin that exports
# coblk images lives beside the driver (drivers/nbd/nbdkit/) and is built
# where nbdkit's plugin header (nbdkit-plugin-dev) is installed.
find_package(PkgConfig QUIET)
if(PkgConfig_FOUND)
  pkg_check_modules(LIBNBD QUIET libnbd)
  pkg_check_modules(NBDKIT QUIET IMPORTED_TARGET nbdkit)
endif()
if(NOT LIBNBD_FOUND)
  message(STATUS "coblk: libnbd not found (apt-get install libnbd-dev)")
  set(COBLK_DRIVER_SKIP TRUE)
else()
  # Full paths, so the installed package and coblk.pc name them too.
  set(COBLK_DRIVER_LIBS ${LIBNBD_LINK_LIBRARIES})
  if(NBDKIT_FOUND)
    add_subdirectory(${CMAKE_CURRENT_LIST_DIR}/nbdkit ${CMAKE_BINARY_DIR}/drivers/nbd/nbdkit)
  else()
    message(STATUS "coblk: nbdkit-plugin-dev not found, nbdkit-coblk-plugin left out")
  endif()
endif()
