# Injected with -DCMAKE_PROJECT_INCLUDE=... by tools/setup_env.sh when interface packages
# are generated (a no-op unless the ROS 2 PyPI wheels provide the dependencies).
#
# The wheels' exported CMake targets (e.g. std_msgs::std_msgs__rosidl_generator_py) carry the
# include directories of the machine that built them (/opt/python/cp311-cp311/...), which do not
# exist here; CMake refuses to generate with them. At the end of configure, rewrite those paths on
# every imported target of the top-level directory to this interpreter's Python and NumPy include
# directories (QDBEV_PYTHON_INCLUDE_DIR / QDBEV_NUMPY_INCLUDE_DIR, passed on the command line).

function(qdbev_fix_wheel_include_dirs)
  get_property(_targets DIRECTORY "${CMAKE_SOURCE_DIR}" PROPERTY IMPORTED_TARGETS)
  set(_fixed 0)
  foreach(_t IN LISTS _targets)
    get_target_property(_dirs ${_t} INTERFACE_INCLUDE_DIRECTORIES)
    if(NOT _dirs)
      continue()
    endif()
    set(_new "")
    set(_changed FALSE)
    foreach(_d IN LISTS _dirs)
      if(_d MATCHES "^/opt/python/[^/]+/include/python")
        set(_d "${QDBEV_PYTHON_INCLUDE_DIR}")
        set(_changed TRUE)
      elseif(_d MATCHES "^/opt/python/.*/numpy/(_core|core)/include$")
        set(_d "${QDBEV_NUMPY_INCLUDE_DIR}")
        set(_changed TRUE)
      elseif(_d MATCHES "^/opt/python/" AND NOT EXISTS "${_d}")
        set(_changed TRUE)
        continue()
      endif()
      list(APPEND _new "${_d}")
    endforeach()
    if(_changed)
      list(REMOVE_DUPLICATES _new)
      set_target_properties(${_t} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_new}")
      math(EXPR _fixed "${_fixed} + 1")
    endif()
  endforeach()
  message(STATUS "qdbev: rewrote wheel include paths on ${_fixed} imported targets")
endfunction()

if(NOT QDBEV_PYTHON_INCLUDE_DIR OR NOT QDBEV_NUMPY_INCLUDE_DIR)
  message(FATAL_ERROR "qdbev: QDBEV_PYTHON_INCLUDE_DIR and QDBEV_NUMPY_INCLUDE_DIR must be set")
endif()
cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL qdbev_fix_wheel_include_dirs)
