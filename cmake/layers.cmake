# The C++ layers of src/cpu, shared by the Python module (CMakeLists.txt) and
# the C++ unit tests (tests/cpp). The includer sets SPEAD2GPU_SOURCE_DIR.
find_package(Threads REQUIRED)

# Sanitizer builds (tools/sanitize.sh; docs/sanitizers.md): every C++ object
# of the includer's targets is compiled and linked with -fsanitize=<list>.
# "address,undefined" or "thread"; empty (the default) for none. CUDA
# sources are left alone (the sanitizer script builds without CUDA).
set(SPEAD2GPU_SANITIZE "" CACHE STRING "Compile the C++ with -fsanitize=<this> (address,undefined or thread)")
if(SPEAD2GPU_SANITIZE)
  set(_san_flags -fsanitize=${SPEAD2GPU_SANITIZE} -fno-omit-frame-pointer -g)
  if(SPEAD2GPU_SANITIZE MATCHES "undefined")
    # Undefined behaviour is an error, not a message a long test run scrolls past.
    # The vptr check is off: GCC's reports every call through a base class's
    # member pointer on a class with two bases (pybind11's .def(&Derived::f)
    # does that), valid C++; docs/sanitizers.md has the three-line proof.
    list(APPEND _san_flags -fno-sanitize-recover=undefined -fno-sanitize=vptr)
  endif()
  add_compile_options("$<$<COMPILE_LANGUAGE:CXX>:${_san_flags}>")
  add_link_options(-fsanitize=${SPEAD2GPU_SANITIZE})
  message(STATUS "spead2gpu: sanitizers ${SPEAD2GPU_SANITIZE}")
endif()

# pcap/pcapng replay (add_udp_pcap_file_reader) needs libpcap; without it the
# package still builds and the reader raises at run time.
option(SPEAD2GPU_PCAP "Use libpcap for pcap file replay when it is found" ON)
set(SPEAD2GPU_HAVE_PCAP OFF)
if(SPEAD2GPU_PCAP)
  find_path(PCAP_INCLUDE_DIR pcap.h)
  find_library(PCAP_LIBRARY pcap)
  if(PCAP_INCLUDE_DIR AND PCAP_LIBRARY)
    set(SPEAD2GPU_HAVE_PCAP ON)
  endif()
endif()
message(STATUS "spead2gpu: libpcap support ${SPEAD2GPU_HAVE_PCAP}")

# ---------------------------------------------------------------------------
# Layers. One static library per folder; each library sees only its own
# headers and those of the layers it names (through a per-layer include root
# of symlinks in the build tree), so an include of a layer above fails to
# compile. Includes are always qualified ("recv/chunk/chunk.h").
#
#   common ─► recv_packet ─► recv_heap ─► recv_stream ─┬─► recv_ring
#                                                      ├─► recv_chunk ─► gpu
#                                                      └─► recv_reader
#   common ─► send_heap ─► send_writer ─► send_stream
#   bindings (the Python module) ─► everything
# ---------------------------------------------------------------------------
set(SPEAD2GPU_LAYER_ROOT ${CMAKE_CURRENT_BINARY_DIR}/layers)

# spead2gpu_layer(<target> <folder under src> <include prefix> [DEPS layers...] [SOURCES extra...])
function(spead2gpu_layer target folder prefix)
  cmake_parse_arguments(L "" "" "DEPS;SOURCES" ${ARGN})
  set(root ${SPEAD2GPU_LAYER_ROOT}/${target})
  get_filename_component(parent ${root}/${prefix} DIRECTORY)
  file(MAKE_DIRECTORY ${parent})
  if(NOT EXISTS ${root}/${prefix})
    file(CREATE_LINK ${SPEAD2GPU_SOURCE_DIR}/src/${folder} ${root}/${prefix} SYMBOLIC)
  endif()
  file(GLOB sources CONFIGURE_DEPENDS ${SPEAD2GPU_SOURCE_DIR}/src/${folder}/*.cpp)
  add_library(${target} STATIC ${sources} ${L_SOURCES})
  target_include_directories(${target} PUBLIC ${root})
  target_link_libraries(${target} PUBLIC ${L_DEPS})
  target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wno-unused-parameter>)
  if(SPEAD2GPU_HAVE_CUDA)
    target_compile_definitions(${target} PUBLIC SPEAD2GPU_HAVE_CUDA=1)
  endif()
endfunction()

spead2gpu_layer(spead2gpu_common    cpu/common      common)
target_link_libraries(spead2gpu_common PUBLIC Threads::Threads ${CMAKE_DL_LIBS})
spead2gpu_layer(spead2gpu_recv_packet cpu/recv/packet recv/packet DEPS spead2gpu_common)
spead2gpu_layer(spead2gpu_recv_heap   cpu/recv/heap   recv/heap   DEPS spead2gpu_recv_packet)
spead2gpu_layer(spead2gpu_recv_stream cpu/recv/stream recv/stream DEPS spead2gpu_recv_heap)
spead2gpu_layer(spead2gpu_recv_ring   cpu/recv/ring   recv/ring   DEPS spead2gpu_recv_stream)
spead2gpu_layer(spead2gpu_recv_chunk  cpu/recv/chunk  recv/chunk  DEPS spead2gpu_recv_stream)
spead2gpu_layer(spead2gpu_recv_reader cpu/recv/reader recv/reader DEPS spead2gpu_recv_stream)
if(SPEAD2GPU_HAVE_PCAP)
  target_compile_definitions(spead2gpu_recv_reader PRIVATE SPEAD2GPU_HAVE_PCAP=1)
  target_include_directories(spead2gpu_recv_reader PRIVATE ${PCAP_INCLUDE_DIR})
  target_link_libraries(spead2gpu_recv_reader PUBLIC ${PCAP_LIBRARY})
endif()
spead2gpu_layer(spead2gpu_send_heap   cpu/send/heap   send/heap   DEPS spead2gpu_common)
spead2gpu_layer(spead2gpu_send_writer cpu/send/writer send/writer DEPS spead2gpu_send_heap)
spead2gpu_layer(spead2gpu_send_stream cpu/send/stream send/stream DEPS spead2gpu_send_writer)

