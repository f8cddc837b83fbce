# Which GPUs a build covers and which drivers it needs, from the CUDA
# toolkit's version (docs/building.md explains the choice).

# The version ("12.4") of the nvcc at <compiler>, or "" when it does not say.
function(spead2gpu_nvcc_version compiler out)
  execute_process(COMMAND ${compiler} --version OUTPUT_VARIABLE text ERROR_QUIET RESULT_VARIABLE rc)
  set(version "")
  if(rc EQUAL 0 AND text MATCHES "release ([0-9]+\\.[0-9]+)")
    set(version ${CMAKE_MATCH_1})
  endif()
  set(${out} ${version} PARENT_SCOPE)
endfunction()

# Default CMAKE_CUDA_ARCHITECTURES: machine code (SASS) for every data-centre
# and workstation generation from Ampere on that the toolkit can target, plus
# PTX for the lowest (compute_80), which the driver JIT-compiles for any newer
# GPU without SASS here. Run before enable_language(CUDA), which needs valid
# architectures, so the version is asked of nvcc directly.
#   sm_80  A100, A30             sm_90  H100, H200, GH200
#   sm_86  A10, A40, RTX A6000   sm_100 B200, GB200 (its SASS also runs on sm_103: B300)
#   sm_89  L4, L40S, RTX 6000 Ada  sm_120 RTX PRO 6000 Blackwell, RTX 50xx
function(spead2gpu_default_cuda_architectures compiler out)
  spead2gpu_nvcc_version(${compiler} version)
  set(sass 80)
  if(version STREQUAL "")
    message(WARNING "spead2gpu: cannot tell the version of ${compiler}; building for sm_80 + compute_80 only")
  else()
    if(version VERSION_GREATER_EQUAL 11.1)
      list(APPEND sass 86)
    endif()
    if(version VERSION_GREATER_EQUAL 11.8)
      list(APPEND sass 89 90)
    endif()
    if(version VERSION_GREATER_EQUAL 12.8)
      list(APPEND sass 100 120)
    endif()
  endif()
  list(TRANSFORM sass APPEND -real)
  list(APPEND sass 80-virtual)
  set(${out} ${sass} PARENT_SCOPE)
endfunction()

# A line for the configure log: the drivers a build with CUDA <version> runs on.
# The runtime (linked statically) needs the major release's minimum driver
# (CUDA minor-version compatibility); JIT-compiling the PTX needs a driver at
# least as new as the toolkit itself (the driver branch it was released with).
function(spead2gpu_cuda_driver_note version out)
  string(REGEX MATCH "^[0-9]+\\.[0-9]+" minor "${version}")
  # Toolkit release -> driver branch it shipped with (Linux).
  set(branches 11.0:450 11.1:455 11.2:460 11.3:465 11.4:470 11.5:495 11.6:510 11.7:515 11.8:520
               12.0:525 12.1:530 12.2:535 12.3:545 12.4:550 12.5:555 12.6:560 12.8:570 12.9:575
               13.0:580)
  set(jit "")
  foreach(pair IN LISTS branches)
    string(REPLACE ":" ";" pair "${pair}")
    list(GET pair 0 release)
    list(GET pair 1 branch)
    if(minor VERSION_GREATER_EQUAL release)
      set(jit ${branch})
    endif()
  endforeach()
  if(version VERSION_GREATER_EQUAL 13)
    set(runtime 580)
  elseif(version VERSION_GREATER_EQUAL 12)
    set(runtime 525)
  else()
    set(runtime 450)
  endif()
  set(${out} "needs an NVIDIA driver >= ${runtime} (>= ${jit} where a GPU has no SASS here and uses the PTX)"
      PARENT_SCOPE)
endfunction()
