/* Prints the struct offsets tachyon's sampler needs for the CPython whose headers are on the
 * include path, one "name value" per line. Built by tools/gen_layouts.py for every installed
 * Python (and by the layout test, which checks host/src/sampler/layouts.rs against it). */
#define Py_BUILD_CORE 1
#include <Python.h>
#include <stddef.h>
#include <stdio.h>
#include <frameobject.h>
#if PY_VERSION_HEX >= 0x03080000
#include <internal/pycore_pystate.h>
#elif PY_VERSION_HEX >= 0x03070000
#include <internal/pystate.h>
#endif
#if PY_VERSION_HEX >= 0x03090000
#include <internal/pycore_interp.h>
#include <internal/pycore_runtime.h>
#endif
#if PY_VERSION_HEX >= 0x030B0000
#include <internal/pycore_frame.h>
#include <internal/pycore_code.h>
#endif

#define P(name, value) printf("%s %ld\n", name, (long)(value))

#if PY_VERSION_HEX >= 0x030D0000
#error "3.13+ layouts come from the target's _Py_DebugOffsets"
#endif

int main(void) {
    P("version_hex", PY_VERSION_HEX);
#if PY_VERSION_HEX >= 0x03070000
    P("runtime_interpreters_head", offsetof(_PyRuntimeState, interpreters.head));
#endif
#if PY_VERSION_HEX >= 0x03070000 && PY_VERSION_HEX < 0x030C0000
    P("runtime_tstate_current", offsetof(_PyRuntimeState, gilstate.tstate_current));
#endif
    P("interp_next", offsetof(PyInterpreterState, next));
#if PY_VERSION_HEX >= 0x03070000
    P("interp_id", offsetof(PyInterpreterState, id));
#endif
#if PY_VERSION_HEX >= 0x030B0000
    P("interp_tstate_head", offsetof(PyInterpreterState, threads.head));
#else
    P("interp_tstate_head", offsetof(PyInterpreterState, tstate_head));
#endif
#if PY_VERSION_HEX >= 0x03090000
    P("interp_gc_collecting", offsetof(PyInterpreterState, gc.collecting));
#endif
#if PY_VERSION_HEX >= 0x030C0000
    P("interp_ceval_gil", offsetof(PyInterpreterState, ceval.gil));
    P("gil_locked", offsetof(struct _gil_runtime_state, locked));
    P("gil_last_holder", offsetof(struct _gil_runtime_state, last_holder));
#endif
    P("tstate_next", offsetof(PyThreadState, next));
    P("tstate_interp", offsetof(PyThreadState, interp));
#if PY_VERSION_HEX >= 0x030B0000
    P("tstate_frame", offsetof(PyThreadState, cframe));
    P("cframe_current_frame", offsetof(_PyCFrame, current_frame));
    P("tstate_native_thread_id", offsetof(PyThreadState, native_thread_id));
    P("tstate_datastack_chunk", offsetof(PyThreadState, datastack_chunk));
#else
    P("tstate_frame", offsetof(PyThreadState, frame));
#endif
    P("tstate_thread_id", offsetof(PyThreadState, thread_id));
#if PY_VERSION_HEX >= 0x030C0000
    P("tstate_exception", offsetof(PyThreadState, current_exception));
#else
    P("tstate_exception", offsetof(PyThreadState, curexc_type));
#endif
#if PY_VERSION_HEX < 0x03070000
    P("tstate_exc_type", offsetof(PyThreadState, exc_type));
#else
    P("tstate_exc_info", offsetof(PyThreadState, exc_info));
#if PY_VERSION_HEX >= 0x030B0000
    P("exc_info_value", offsetof(_PyErr_StackItem, exc_value));
#else
    P("exc_info_value", offsetof(_PyErr_StackItem, exc_type));
#endif
#endif
#if PY_VERSION_HEX >= 0x030B0000
    P("frame_size", sizeof(_PyInterpreterFrame));
    P("frame_code", offsetof(_PyInterpreterFrame, f_code));
    P("frame_previous", offsetof(_PyInterpreterFrame, previous));
    P("frame_instr", offsetof(_PyInterpreterFrame, prev_instr));
    P("frame_owner", offsetof(_PyInterpreterFrame, owner));
#if PY_VERSION_HEX < 0x030C0000
    P("frame_is_entry", offsetof(_PyInterpreterFrame, is_entry));
#endif
    P("code_qualname", offsetof(PyCodeObject, co_qualname));
    P("code_code_adaptive", offsetof(PyCodeObject, co_code_adaptive));
    P("code_linetable", offsetof(PyCodeObject, co_linetable));
#else
    P("frame_size", sizeof(PyFrameObject));
    P("frame_previous", offsetof(PyFrameObject, f_back));
    P("frame_code", offsetof(PyFrameObject, f_code));
    P("frame_instr", offsetof(PyFrameObject, f_lasti));
#if PY_VERSION_HEX >= 0x030A0000
    P("code_linetable", offsetof(PyCodeObject, co_linetable));
#else
    P("code_linetable", offsetof(PyCodeObject, co_lnotab));
#endif
#endif
    P("code_filename", offsetof(PyCodeObject, co_filename));
    P("code_name", offsetof(PyCodeObject, co_name));
    P("code_firstlineno", offsetof(PyCodeObject, co_firstlineno));
#if PY_MAJOR_VERSION >= 3
    P("unicode_ascii_size", sizeof(PyASCIIObject));
    P("unicode_compact_size", sizeof(PyCompactUnicodeObject));
    P("bytes_sval", offsetof(PyBytesObject, ob_sval));
#else
    P("bytes_sval", offsetof(PyStringObject, ob_sval));
#endif
    return 0;
}
