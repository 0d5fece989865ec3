# The nbd driver's build needs, included by the top-level driver loop.
# libnbd (Debian: libnbd-dev) is the client library; the nbdkit plugin that
# exports coblk images lives beside the driver (drivers/nbd/nbdkit/).
find_package(PkgConfig REQUIRED)
pkg_check_modules(LIBNBD REQUIRED IMPORTED_TARGET libnbd)
target_link_libraries(coblk_driver_nbd PUBLIC PkgConfig::LIBNBD)
add_subdirectory(${CMAKE_CURRENT_LIST_DIR}/nbdkit ${CMAKE_BINARY_DIR}/drivers/nbd/nbdkit)
