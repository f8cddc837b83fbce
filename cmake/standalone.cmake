# Settings shared by the standalone builds of the core (tests/cpp, fuzz): they
# build the src/cpu layers themselves, with the project's C++ standard, a
# debuggable optimised default and ccache when it is installed. Included
# right after project().
set(CMAKE_CXX_STANDARD 17)
set(CMAKE_CXX_STANDARD_REQUIRED ON)
if(NOT CMAKE_BUILD_TYPE)
  set(CMAKE_BUILD_TYPE RelWithDebInfo)
endif()
find_program(CCACHE_PROGRAM ccache)
if(CCACHE_PROGRAM)
  set(CMAKE_CXX_COMPILER_LAUNCHER ${CCACHE_PROGRAM})
endif()
