# The nbd driver's build needs, included by the top-level driver loop before
# the driver's library exists. libnbd (Debian: libnbd-dev) is the client
# library; without it the driver is left out. The nbdkit plugin that exports
# coblk images lives beside the driver (drivers/nbd/nbdkit/) and is built
# where nbdkit's plugin header (nbdkit-plugin-dev) is installed.
find_package(PkgConfig QUIET)
if(PkgConfig_FOUND)
  # GLOBAL: a project that add_subdirectory()s coblk links it from its own
  # directory.
  pkg_check_modules(coblk_libnbd QUIET IMPORTED_TARGET GLOBAL libnbd)
  pkg_check_modules(NBDKIT QUIET IMPORTED_TARGET nbdkit)
endif()
if(NOT coblk_libnbd_FOUND)
  message(STATUS "coblk: libnbd not found (apt-get install libnbd-dev)")
  set(COBLK_DRIVER_SKIP TRUE)
else()
  # By its pkg-config name: coblk.pc requires it and the installed CMake
  # package finds it again, so neither names this machine's library path.
  set(COBLK_DRIVER_PKG_MODULES libnbd)
  if(NBDKIT_FOUND)
    add_subdirectory(${CMAKE_CURRENT_LIST_DIR}/nbdkit ${CMAKE_BINARY_DIR}/drivers/nbd/nbdkit)
  else()
    message(STATUS "coblk: nbdkit-plugin-dev not found, nbdkit-coblk-plugin left out")
  endif()
endif()
