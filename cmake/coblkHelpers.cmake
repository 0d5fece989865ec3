# Helpers for projects that build on coblk. Included by coblk's own build and
# by the installed package (find_package(coblk) makes them available).
include_guard(GLOBAL)

# coblk_add_plugin(<target> <source>...)
# A driver plugin: a MODULE library named <target>.so (no "lib" prefix), built
# against coblk's headers. Its coblk symbols resolve against the program that
# loads it (coblk-img, coblk-io, the conformance kit, any program linking
# coblk::coblk), so it links nothing of coblk itself.
function(coblk_add_plugin target)
  add_library(${target} MODULE ${ARGN})
  target_link_libraries(${target} PRIVATE coblk::plugin)
  set_target_properties(${target} PROPERTIES PREFIX "")
endfunction()

# coblk_add_conformance_test(<name> DRIVER <driver> [PLUGIN <target-or-file>]
#                            [ARGS <coblk-conformance arguments>...])
# Adds a CTest test that runs the conformance kit against <driver>, e.g.
#   coblk_add_conformance_test(mysparse DRIVER mysparse PLUGIN mysparse ARGS -o cluster_size=4096)
# See `coblk-conformance --help` for ARGS.
function(coblk_add_conformance_test name)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "DRIVER;PLUGIN" "ARGS")
  if(NOT arg_DRIVER)
    message(FATAL_ERROR "coblk_add_conformance_test(${name}): DRIVER is required")
  endif()
  if(TARGET coblk-conformance)
    set(kit $<TARGET_FILE:coblk-conformance>)
  elseif(TARGET coblk::coblk-conformance)
    set(kit $<TARGET_FILE:coblk::coblk-conformance>)
  else()
    message(FATAL_ERROR "coblk_add_conformance_test: coblk was built without the conformance kit")
  endif()
  set(plugin_args)
  if(arg_PLUGIN)
    if(TARGET ${arg_PLUGIN})
      set(plugin_args --plugin $<TARGET_FILE:${arg_PLUGIN}>)
    else()
      set(plugin_args --plugin ${arg_PLUGIN})
    endif()
  endif()
  # COBLK_CONFORMANCE_ARGS: extra flags for every run (coblk's sanitizer
  # build uses it for a shorter battery).
  add_test(NAME conformance.${name}
           COMMAND ${kit} ${plugin_args} --driver ${arg_DRIVER} ${arg_ARGS} ${COBLK_CONFORMANCE_ARGS})
  set_tests_properties(conformance.${name} PROPERTIES TIMEOUT 900)
endfunction()
