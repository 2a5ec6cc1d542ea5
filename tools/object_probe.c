/* Prints the offsets of the objects `--async-aware` reads on 3.8-3.13 (module, dict, set, list,
 * weakref, int, type, generator and frame internals) for the CPython whose headers are on the
 * include path, one "name value" per line. Built by tools/gen_layouts.py for every installed
 * 3.8-3.13 (and by the layout test). 3.14+ describe asyncio through `.AsyncioDebug`. */
#define Py_BUILD_CORE 1
#include <Python.h>
#include <stddef.h>
#include <stdio.h>
#include <frameobject.h>
#include <internal/pycore_pystate.h>
#if PY_VERSION_HEX >= 0x03090000
#include <internal/pycore_interp.h>
#endif
#if PY_VERSION_HEX >= 0x030B0000
#include <internal/pycore_frame.h>
#include <internal/pycore_dict.h>
#include <internal/pycore_moduleobject.h>
#endif
#if PY_VERSION_HEX < 0x030B0000
#include <longintrepr.h>
#endif

#define P(name, value) printf("%s %ld\n", name, (long)(value))

int main(void) {
    P("version_hex", PY_VERSION_HEX);
    P("interp_size", sizeof(PyInterpreterState));
#if PY_VERSION_HEX >= 0x030D0000
    /* Every new code object takes its version from it (the sampler's code cache, not asyncio). */
    P("interp_code_version", offsetof(PyInterpreterState, func_state.next_version));
#endif
#if PY_VERSION_HEX >= 0x030C0000
    P("interp_modules", offsetof(PyInterpreterState, imports.modules));
#else
    P("interp_modules", offsetof(PyInterpreterState, modules));
#endif
    P("type_name", offsetof(PyTypeObject, tp_name));
    P("type_basicsize", offsetof(PyTypeObject, tp_basicsize));
    P("type_flags", offsetof(PyTypeObject, tp_flags));
    P("type_base", offsetof(PyTypeObject, tp_base));
    P("type_dictoffset", offsetof(PyTypeObject, tp_dictoffset));
    P("heaptype_cached_keys", offsetof(PyHeapTypeObject, ht_cached_keys));
#if PY_VERSION_HEX >= 0x030B0000
    P("module_dict", offsetof(PyModuleObject, md_dict));
#else
    P("module_dict", sizeof(PyObject)); /* Objects/moduleobject.c: md_dict follows the header */
#endif
    P("dict_keys", offsetof(PyDictObject, ma_keys));
    P("dict_values", offsetof(PyDictObject, ma_values));
#if PY_VERSION_HEX >= 0x030B0000
    P("keys_log2_size", offsetof(PyDictKeysObject, dk_log2_size));
    P("keys_log2_index_bytes", offsetof(PyDictKeysObject, dk_log2_index_bytes));
    P("keys_kind", offsetof(PyDictKeysObject, dk_kind));
    P("keys_nentries", offsetof(PyDictKeysObject, dk_nentries));
    P("keys_indices", offsetof(PyDictKeysObject, dk_indices));
#else
    /* Objects/dict-common.h (not installed): dk_refcnt, dk_size, dk_lookup, dk_usable,
     * dk_nentries, dk_indices, unchanged from 3.6 to 3.10. */
    P("keys_size", sizeof(Py_ssize_t));
    P("keys_nentries", 4 * sizeof(Py_ssize_t));
    P("keys_indices", 5 * sizeof(Py_ssize_t));
#endif
#if PY_VERSION_HEX >= 0x030D0000
    P("values_values", offsetof(PyDictValues, values));
#else
    P("values_values", 0);
#endif
    P("set_mask", offsetof(PySetObject, mask));
    P("set_table", offsetof(PySetObject, table));
    P("list_items", offsetof(PyListObject, ob_item));
    P("tuple_items", offsetof(PyTupleObject, ob_item));
    P("method_self", offsetof(PyMethodObject, im_self));
    P("var_size", offsetof(PyVarObject, ob_size));
    P("weakref_object", offsetof(PyWeakReference, wr_object));
#if PY_VERSION_HEX >= 0x030C0000
    P("long_tag", offsetof(PyLongObject, long_value.lv_tag));
    P("long_digits", offsetof(PyLongObject, long_value.ob_digit));
#else
    P("long_digits", offsetof(PyLongObject, ob_digit));
#endif
#if PY_VERSION_HEX >= 0x030B0000
    P("gen_iframe", offsetof(PyGenObject, gi_iframe));
    P("gen_frame_state", offsetof(PyGenObject, gi_frame_state));
    P("iframe_stacktop", offsetof(_PyInterpreterFrame, stacktop));
    P("iframe_localsplus", offsetof(_PyInterpreterFrame, localsplus));
#else
    P("gen_frame", offsetof(PyGenObject, gi_frame));
    P("frame_valuestack", offsetof(PyFrameObject, f_valuestack));
#if PY_VERSION_HEX >= 0x030A0000
    P("frame_stackdepth", offsetof(PyFrameObject, f_stackdepth));
    P("frame_state", offsetof(PyFrameObject, f_state));
#else
    P("frame_stacktop", offsetof(PyFrameObject, f_stacktop));
#endif
#endif
    return 0;
}
